package docker

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// Labels every container of a pod carries: all state is read back from
// them.
const (
	LabelUID       = "interlink.io/pod-uid"
	LabelNamespace = "interlink.io/pod-namespace"
	LabelName      = "interlink.io/pod-name"
	LabelContainer = "interlink.io/container"
	LabelRole      = "interlink.io/role" // pause, init or app
	LabelIndex     = "interlink.io/index"
)

// Roles of a pod's containers.
const (
	rolePause = "pause"
	roleInit  = "init"
	roleApp   = "app"
)

const resourceNvidiaGPU corev1.ResourceName = "nvidia.com/gpu"

// spec is one container to create.
type spec struct {
	name   string // the pod's container name
	role   string
	index  int
	image  string
	policy corev1.PullPolicy
	create container.Config
	host   container.HostConfig
	// fromImage, when set, asks for the image's user (imageUsers).
	fromImage *fromImage
}

// containerName is the Docker name of a pod's container: unique per pod.
func containerName(uid, name string) string { return "il_" + uid + "_" + name }

// podSpecs turns a pod into its containers (init containers first, in
// order) and the data files to write under dataDir (the pod's data
// directory on the Docker host). Every problem is an api.Invalid error.
func (d *Docker) podSpecs(data *api.RetrievedPodData, dataDir string) ([]spec, []poddata.File, error) {
	p := &data.Pod
	vols, files, err := poddata.Volumes(data, poddata.Options{ExportPodData: d.cfg.ExportPodData, AllowedHostPaths: d.cfg.AllowedHostPaths, ContainerModes: true})
	if err != nil {
		return nil, nil, err
	}
	var specs []spec
	errs := d.podSecurity(p)
	add := func(c *corev1.Container, role string, i int) {
		s, fs, err := d.containerSpec(p, c, role, i, vols, dataDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
			return
		}
		specs = append(specs, s)
		files = append(files, fs...)
	}
	for i := range p.Spec.InitContainers {
		add(&p.Spec.InitContainers[i], roleInit, i)
	}
	for i := range p.Spec.Containers {
		add(&p.Spec.Containers[i], roleApp, i)
	}
	if len(errs) > 0 {
		return nil, nil, api.Invalid("pod %s/%s: %w", p.Namespace, p.Name, api.JoinErrors(errs))
	}
	return specs, files, nil
}

func labels(p *corev1.Pod, name, role string, index int) map[string]string {
	return map[string]string{
		LabelUID: string(p.UID), LabelNamespace: p.Namespace, LabelName: p.Name,
		LabelContainer: name, LabelRole: role, LabelIndex: strconv.Itoa(index),
	}
}

func (d *Docker) containerSpec(p *corev1.Pod, c *corev1.Container, role string, index int, vols map[string]poddata.Volume, dataDir string) (spec, []poddata.File, error) {
	if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
		return spec{}, nil, fmt.Errorf("name %q: %s", c.Name, strings.Join(msgs, "; "))
	}
	if c.Image == "" {
		return spec{}, nil, fmt.Errorf("no image")
	}
	if c.Stdin || c.TTY {
		return spec{}, nil, fmt.Errorf("stdin and tty are not supported")
	}
	s := spec{name: c.Name, role: role, index: index, image: c.Image, policy: c.ImagePullPolicy}
	s.create = container.Config{
		Image:      c.Image,
		Entrypoint: c.Command,
		Cmd:        c.Args,
		WorkingDir: c.WorkingDir,
		Labels:     labels(p, c.Name, role, index),
	}
	for _, e := range c.Env {
		if msgs := validation.IsEnvVarName(e.Name); len(msgs) > 0 {
			return spec{}, nil, fmt.Errorf("env name %q: %s", e.Name, strings.Join(msgs, "; "))
		}
		s.create.Env = append(s.create.Env, e.Name+"="+e.Value)
	}
	if errs := d.containerSecurity(p, c, &s); len(errs) > 0 {
		return spec{}, nil, api.JoinErrors(errs)
	}
	var files []poddata.File
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			if d.cfg.ExportPodData {
				return spec{}, nil, fmt.Errorf("volume mount %q names no volume", m.Name)
			}
			continue
		}
		if m.SubPath != "" && (v.EmptyDir || v.HostPath != "") {
			// A container could replace the subPath by a symlink before
			// Docker (as root) binds it: the host would be exposed.
			return spec{}, nil, fmt.Errorf("volume mount %q: subPath on an emptyDir or hostPath volume is refused by the Docker sidecar", m.Name)
		}
		dir, hostPath, mkdir, err := poddata.Mount(v, m)
		if err != nil {
			return spec{}, nil, err
		}
		files = append(files, mkdir...)
		source := hostPath
		if source == "" {
			source = filepath.Join(dataDir, filepath.FromSlash(dir))
		}
		s.host.Mounts = append(s.host.Mounts, mount.Mount{Type: mount.TypeBind, Source: source,
			Target: path.Clean(m.MountPath), ReadOnly: v.ReadOnly || m.ReadOnly})
	}
	limit := func(n corev1.ResourceName) (q int64, milli int64, ok bool) {
		v, ok := c.Resources.Limits[n]
		if !ok {
			return 0, 0, false
		}
		return v.Value(), v.MilliValue(), true
	}
	if _, m, ok := limit(corev1.ResourceCPU); ok {
		s.host.NanoCPUs = m * 1_000_000
	}
	if v, _, ok := limit(corev1.ResourceMemory); ok {
		s.host.Memory = v
	}
	if g, _, ok := limit(resourceNvidiaGPU); ok && g > 0 {
		s.host.DeviceRequests = []container.DeviceRequest{{Driver: d.cfg.GPUDriver, Count: int(g), Capabilities: [][]string{{"gpu"}}}}
	}
	if role == roleApp {
		switch p.Spec.RestartPolicy {
		case corev1.RestartPolicyAlways, "":
			s.host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyAlways}
		case corev1.RestartPolicyOnFailure:
			s.host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure}
		}
	}
	return s, files, nil
}
