package poddata

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/seed-3f807049/interlink/functions/api"
)

// File is one file of pod data, its path relative to the pod's data
// directory.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
	Dir  bool // a directory (a volume, an emptyDir)
}

// Modes of pod data files. Secrets and projected volumes (which carry
// service-account tokens) are never readable by others.
const (
	ModeConfigMap fs.FileMode = 0o644
	ModeSecret    fs.FileMode = 0o600
)

// Volume is a pod volume as a sidecar binds it: a directory of the pod's
// data, or an allowed host path.
type Volume struct {
	Dir      string // relative to the pod's data directory; empty for a host path
	HostPath string // an absolute host path under Options.AllowedHostPaths
	ReadOnly bool
	EmptyDir bool
}

// Options say what a sidecar accepts.
type Options struct {
	// ExportPodData false delivers no pod data (the original's key).
	ExportPodData bool
	// AllowedHostPaths are the directories hostPath volumes may bind.
	AllowedHostPaths []string
	// ContainerModes gives files the modes Kubernetes gives them (Secrets
	// and projected files 0644 unless the pod says otherwise, emptyDirs
	// 0777), for containers that run as any user (Docker). The pod's
	// directory (0700) still keeps them from the host's other users.
	// Without it, Secrets and projected files are never group- or
	// world-readable (containers run as the sidecar's user: SLURM).
	ContainerModes bool
}

// Volumes returns the pod's volumes by name and the files to write. Every
// problem is an api.Invalid error naming the volume.
func Volumes(data *api.RetrievedPodData, o Options) (map[string]Volume, []File, error) {
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
	vols := map[string]Volume{}
	var files []File
	var errs []error
	mounted := mountedVolumes(&data.Pod.Spec)
	for _, v := range data.Pod.Spec.Volumes {
		if msgs := validation.IsDNS1123Label(v.Name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("volume name %q: %s", v.Name, strings.Join(msgs, "; ")))
			continue
		}
		if !mounted[v.Name] && v.HostPath == nil {
			// Declared but mounted by no container: nothing to deliver
			// (the VK sends the data of mounted volumes only).
			continue
		}
		dir := path.Join("volumes", v.Name)
		var fs []File
		var err error
		switch {
		case v.HostPath != nil:
			p := filepath.Clean(v.HostPath.Path)
			if !AllowedHostPath(o.AllowedHostPaths, p) || strings.ContainsAny(p, ":,") {
				errs = append(errs, fmt.Errorf("volume %s: hostPath %q is not under AllowedHostPaths", v.Name, v.HostPath.Path))
				continue
			}
			vols[v.Name] = Volume{HostPath: p}
			continue
		case !o.ExportPodData:
			// The original's ExportPodData=false: no pod data is delivered.
			continue
		case v.EmptyDir != nil:
			fs = []File{{Path: dir, Dir: true}}
			if o.ContainerModes {
				fs[0].Mode = 0o777
			}
		case v.ConfigMap != nil:
			cm := cms[v.ConfigMap.Name]
			if cm == nil {
				if optional(v.ConfigMap.Optional) {
					fs = []File{{Path: dir, Dir: true}}
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
					fs = []File{{Path: dir, Dir: true}}
					break
				}
				errs = append(errs, fmt.Errorf("volume %s: secret %q was not sent with the pod", v.Name, v.Secret.SecretName))
				continue
			}
			fs, err = keyFiles(dir, secretData(s), v.Secret.Items, v.Secret.DefaultMode, !o.ContainerModes, optional(v.Secret.Optional))
		case v.Projected != nil || v.DownwardAPI != nil:
			pv := projected[v.Name]
			if pv == nil {
				errs = append(errs, fmt.Errorf("volume %s: its projected files were not sent with the pod", v.Name))
				continue
			}
			fs, err = keyFiles(dir, stringData(pv.Data, pv.BinaryData), nil, nil, !o.ContainerModes, false)
		default:
			errs = append(errs, fmt.Errorf("volume %s: this volume type is not supported by the sidecar", v.Name))
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.Name, err))
			continue
		}
		vol := Volume{Dir: dir, ReadOnly: v.EmptyDir == nil, EmptyDir: v.EmptyDir != nil}
		vols[v.Name] = vol
		files = append(files, fs...)
	}
	if len(errs) > 0 {
		return nil, nil, api.Invalid("pod %s/%s: %w", data.Pod.Namespace, data.Pod.Name, api.JoinErrors(errs))
	}
	return vols, files, nil
}

func optional(b *bool) bool { return b != nil && *b }

// mountedVolumes are the names of the volumes some container mounts.
func mountedVolumes(spec *corev1.PodSpec) map[string]bool {
	out := map[string]bool{}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			for _, m := range cs[i].VolumeMounts {
				out[m.Name] = true
			}
		}
	}
	return out
}

// AllowedHostPath tells whether the absolute path p lies under one of the
// allowed directories, both as written and, where p exists on this host,
// once its symlinks are resolved (a symlink under an allowed directory
// must not lead out of it).
func AllowedHostPath(allowed []string, p string) bool {
	if !filepath.IsAbs(p) {
		return false
	}
	under := func(p string) bool {
		return slices.ContainsFunc(allowed, func(a string) bool {
			for _, root := range []string{filepath.Clean(a), resolved(a)} {
				if rel, err := filepath.Rel(root, p); err == nil && (filepath.IsLocal(rel) || rel == ".") {
					return true
				}
			}
			return false
		})
	}
	if !under(filepath.Clean(p)) {
		return false
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return under(r)
	}
	return true
}

// HostPathRoot splits p, a host path AllowedHostPath accepted, into the
// allowed directory that holds it and the path below (slash-separated, "."
// for the directory itself).
func HostPathRoot(allowed []string, p string) (root, rel string) {
	p = filepath.Clean(p)
	best := ""
	for _, a := range allowed {
		a = filepath.Clean(a)
		if r, err := filepath.Rel(a, p); err == nil && (filepath.IsLocal(r) || r == ".") && len(a) > len(best) {
			best = a
		}
	}
	if best == "" {
		return p, "."
	}
	r, _ := filepath.Rel(best, p)
	return best, filepath.ToSlash(r)
}

// resolved is p with its symlinks resolved, or p when it does not exist.
func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
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
// A private volume's files are never group- or world-readable.
func keyFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, private, opt bool) ([]File, error) {
	modeOf := func(m *int32) fs.FileMode {
		mode := ModeConfigMap
		if private {
			mode = ModeSecret
		}
		if m != nil {
			mode = fs.FileMode(*m & 0o777) //nolint:gosec // masked to 9 bits
		}
		if private {
			mode &^= 0o077
		}
		return mode
	}
	mode := modeOf(defaultMode)
	out := []File{{Path: dir, Dir: true}}
	add := func(key, p string, m fs.FileMode) error {
		if !filepath.IsLocal(p) || strings.ContainsRune(p, 0) {
			return fmt.Errorf("path %q of key %q leaves the volume", p, key)
		}
		out = append(out, File{Path: path.Join(dir, filepath.ToSlash(p)), Data: data[key], Mode: m})
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

// CheckMountPath checks a container-side path of a bind mount.
func CheckMountPath(p string) error {
	switch {
	case !path.IsAbs(p):
		return fmt.Errorf("mount path %q is not absolute", p)
	case strings.ContainsAny(p, ":,\n\x00"):
		return fmt.Errorf("mount path %q must not contain ':', ',' or a newline", p)
	}
	return nil
}

// Mount resolves a container's mount of v: the data-relative directory (or
// host path) to bind, with its subPath, and the directory to create when
// the subPath is inside an emptyDir (Kubernetes creates those).
func Mount(v Volume, m corev1.VolumeMount) (dir, hostPath string, mkdir []File, err error) {
	if err := CheckMountPath(m.MountPath); err != nil {
		return "", "", nil, err
	}
	dir, hostPath = v.Dir, v.HostPath
	if m.SubPath == "" {
		return dir, hostPath, nil, nil
	}
	if !IsLocal(m.SubPath) || strings.ContainsAny(m.SubPath, ":,\n") {
		return "", "", nil, fmt.Errorf("subPath %q leaves its volume", m.SubPath)
	}
	if hostPath != "" {
		return "", path.Join(hostPath, m.SubPath), nil, nil
	}
	dir = path.Join(dir, m.SubPath)
	if v.EmptyDir {
		mkdir = []File{{Path: dir, Dir: true}}
	}
	return dir, "", mkdir, nil
}

// IsLocal tells whether the slash-separated path p stays below its base.
func IsLocal(p string) bool {
	c := path.Clean(p)
	return p != "" && !path.IsAbs(c) && c != ".." && !strings.HasPrefix(c, "../") && !strings.ContainsRune(p, 0)
}

// Dir is a sidecar's data directory: every pod path is opened through it,
// so that even a symlink cannot lead outside.
type Dir struct {
	*os.Root
	umask fs.FileMode
}

// OpenDir creates (mode 0700) and opens the directory at p.
func OpenDir(p string) (*Dir, error) {
	if err := os.MkdirAll(p, 0o700); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(p)
	if err != nil {
		return nil, err
	}
	m := syscall.Umask(0)
	syscall.Umask(m)
	return &Dir{Root: r, umask: fs.FileMode(m)}, nil //nolint:gosec // a umask is 9 bits
}

// Write writes files under base (relative to d), creating base with mode
// 0700 first. Directories get 0755 (or their Mode), files their mode
// whatever the umask.
func (d *Dir) Write(base string, files []File) error {
	if err := d.MkdirAll(base, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		p := path.Join(base, f.Path)
		if f.Dir {
			if err := d.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if f.Mode != 0 {
				if err := d.Chmod(p, f.Mode); err != nil {
					return err
				}
			}
			continue
		}
		if err := d.MkdirAll(path.Dir(p), 0o755); err != nil {
			return err
		}
		if err := d.WriteFile(p, f.Data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes one file with exactly mode.
func (d *Dir) WriteFile(name string, data []byte, mode fs.FileMode) error {
	f, err := d.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && mode&d.umask != 0 {
		err = d.Chmod(name, mode) // the umask took bits the file needs
	}
	return err
}

var uidPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

// DirName is the name of a pod's directory: NAMESPACE-UID, the UID checked
// to be one (an api.Invalid error otherwise).
func DirName(p *corev1.Pod) (string, error) {
	if !uidPattern.MatchString(string(p.UID)) {
		return "", api.Invalid("pod %s/%s: uid %q is not a UUID", p.Namespace, p.Name, p.UID)
	}
	return p.Namespace + "-" + string(p.UID), nil
}
