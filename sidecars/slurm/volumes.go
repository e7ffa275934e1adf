package slurm

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/seed-3f807049/interlink/functions/api"
)

// file is one file of pod data, its path relative to the data directory.
type file struct {
	path string
	data []byte
	mode fs.FileMode
	dir  bool // an empty directory (emptyDir)
}

// Modes of pod data files. Secrets and projected volumes (which carry
// service-account tokens) are never readable by others.
const (
	modeConfigMap fs.FileMode = 0o644
	modeSecret    fs.FileMode = 0o600
)

// volume is a pod volume as the job sees it: host is a data path (see
// dataRef) or an allowed host path.
type volume struct {
	host     string
	readOnly bool
	emptyDir string // the data-relative directory of an emptyDir
}

// podVolumes returns the pod's volumes by name and the files to write.
func podVolumes(cfg *Config, data *api.RetrievedPodData) (map[string]volume, []file, error) {
	cms, secrets, projected := map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}, map[string]*corev1.ConfigMap{}
	for i := range data.Containers {
		c := &data.Containers[i]
		for j := range c.ConfigMaps {
			cms[c.ConfigMaps[j].Name] = &c.ConfigMaps[j]
		}
		for j := range c.Secrets {
			secrets[c.Secrets[j].Name] = &c.Secrets[j]
		}
		for j := range c.ProjectedVolumeMaps {
			projected[c.ProjectedVolumeMaps[j].Name] = &c.ProjectedVolumeMaps[j]
		}
	}
	vols := map[string]volume{}
	var files []file
	var errs []error
	for _, v := range data.Pod.Spec.Volumes {
		if msgs := validation.IsDNS1123Label(v.Name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("volume name %q: %s", v.Name, strings.Join(msgs, "; ")))
			continue
		}
		dir := path.Join("volumes", v.Name)
		var fs []file
		var err error
		switch {
		case v.HostPath != nil:
			p := filepath.Clean(v.HostPath.Path)
			if !allowedHostPath(cfg.AllowedHostPaths, p) || strings.ContainsAny(p, ":,") {
				errs = append(errs, fmt.Errorf("volume %s: hostPath %q is not under AllowedHostPaths", v.Name, v.HostPath.Path))
				continue
			}
			vols[v.Name] = volume{host: p}
			continue
		case !cfg.ExportPodData:
			// The original's ExportPodData=false: no pod data is delivered.
			continue
		case v.EmptyDir != nil:
			fs = []file{{path: dir, dir: true}}
		case v.ConfigMap != nil:
			cm := cms[v.ConfigMap.Name]
			if cm == nil {
				if optional(v.ConfigMap.Optional) {
					fs = []file{{path: dir, dir: true}}
					break
				}
				errs = append(errs, fmt.Errorf("volume %s: configmap %q was not sent with the pod", v.Name, v.ConfigMap.Name))
				continue
			}
			fs, err = keyFiles(dir, stringData(cm.Data, cm.BinaryData), v.ConfigMap.Items, v.ConfigMap.DefaultMode, false, optional(v.ConfigMap.Optional))
		case v.Secret != nil:
			s := secrets[v.Secret.SecretName]
			if s == nil {
				if optional(v.Secret.Optional) {
					fs = []file{{path: dir, dir: true}}
					break
				}
				errs = append(errs, fmt.Errorf("volume %s: secret %q was not sent with the pod", v.Name, v.Secret.SecretName))
				continue
			}
			fs, err = keyFiles(dir, secretData(s), v.Secret.Items, v.Secret.DefaultMode, true, optional(v.Secret.Optional))
		case v.Projected != nil || v.DownwardAPI != nil:
			pv := projected[v.Name]
			if pv == nil {
				errs = append(errs, fmt.Errorf("volume %s: its projected files were not sent with the pod", v.Name))
				continue
			}
			fs, err = keyFiles(dir, stringData(pv.Data, pv.BinaryData), nil, nil, true, false)
		default:
			errs = append(errs, fmt.Errorf("volume %s: this volume type is not supported by the SLURM sidecar", v.Name))
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.Name, err))
			continue
		}
		vol := volume{host: dataRef(dir), readOnly: true}
		if v.EmptyDir != nil {
			vol.readOnly, vol.emptyDir = false, dir
		}
		vols[v.Name] = vol
		files = append(files, fs...)
	}
	if len(errs) > 0 {
		return nil, nil, api.Invalid("pod %s/%s: %w", data.Pod.Namespace, data.Pod.Name, api.JoinErrors(errs))
	}
	return vols, files, nil
}

func optional(b *bool) bool { return b != nil && *b }

func allowedHostPath(allowed []string, p string) bool {
	return slices.ContainsFunc(allowed, func(a string) bool {
		rel, err := filepath.Rel(filepath.Clean(a), p)
		return err == nil && filepath.IsLocal(rel) || rel == "."
	})
}

func stringData(s map[string]string, b map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(s)+len(b))
	for k, v := range s {
		out[k] = []byte(v)
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func secretData(s *corev1.Secret) map[string][]byte {
	out := stringData(s.StringData, nil)
	for k, v := range s.Data {
		out[k] = v
	}
	return out
}

// keyFiles lays out a ConfigMap, Secret or projected volume: every key (or
// the listed items) as a file under dir. A key or item path that is not a
// local path (../../x, /etc/passwd) is an error.
func keyFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, secret, opt bool) ([]file, error) {
	modeOf := func(m *int32) fs.FileMode {
		mode := modeConfigMap
		if secret {
			mode = modeSecret
		}
		if m != nil {
			mode = fs.FileMode(*m & 0o777) //nolint:gosec // masked to 9 bits
		}
		if secret {
			mode &^= 0o077 // secrets are never group- or world-readable
		}
		return mode
	}
	mode := modeOf(defaultMode)
	out := []file{{path: dir, dir: true}}
	add := func(key, p string, m fs.FileMode) error {
		if !filepath.IsLocal(p) || strings.ContainsRune(p, 0) {
			return fmt.Errorf("path %q of key %q leaves the volume", p, key)
		}
		out = append(out, file{path: path.Join(dir, filepath.ToSlash(p)), data: data[key], mode: m})
		return nil
	}
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := add(k, k, mode); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	for _, it := range items {
		if _, ok := data[it.Key]; !ok {
			if opt {
				continue
			}
			return nil, fmt.Errorf("key %q not found", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = modeOf(it.Mode)
		}
		if err := add(it.Key, it.Path, m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkMountPath checks a container-side path of a bind mount.
func checkMountPath(p string) error {
	switch {
	case !path.IsAbs(p):
		return fmt.Errorf("mount path %q is not absolute", p)
	case strings.ContainsAny(p, ":,\n\x00"):
		return fmt.Errorf("mount path %q must not contain ':', ',' or a newline", p)
	}
	return nil
}
