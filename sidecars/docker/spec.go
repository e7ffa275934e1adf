package docker

import (
	"cmp"
	"fmt"
	"path"
	"path/filepath"
	"slices"
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
	// LabelTTY marks a container made with tty: true, whose output Docker
	// keeps as it came, not multiplexed.
	LabelTTY = "interlink.io/tty"
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
	// emptyDirs are the container's mounts of emptyDir volumes.
	emptyDirs []emptyDirMount
}

// emptyDirMount is a container's mount of an emptyDir volume.
type emptyDirMount struct {
	volume  string // the volume's directory, relative to the pod's data
	subPath string // cleaned; "" for the whole volume
	target  string
	ro      bool
}

// containerName is the Docker name of a pod's container: unique per pod.
func containerName(uid, name string) string { return "il_" + uid + "_" + name }

// podSpecs turns a pod into its containers (init containers first, in
// order) and the data files to write under dataDir (the pod's data
// directory on the Docker host). Every problem is an api.Invalid error.
func (d *Sidecar) podSpecs(data *api.RetrievedPodData, dataDir string) ([]spec, []poddata.File, error) {
	p := &data.Pod
	vols, files, err := poddata.Volumes(data, poddata.Options{ExportPodData: d.cfg.ExportPodData, AllowedHostPaths: d.cfg.AllowedHostPaths, ContainerModes: true})
	if err != nil {
		return nil, nil, err
	}
	var specs []spec
	errs := d.podSecurity(p)
	add := func(c *corev1.Container, role string, i int) {
		s, fs, err := d.containerSpec(p, c, role, i, vols, dataDir)
		if err == nil {
			err = d.setLifecycle(p, c, &s)
		}
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
	files = append(files, pinSubPaths(specs, dataDir)...)
	return specs, files, nil
}

// pinSubPaths makes the subPaths of the pod's emptyDirs safe to bind, and
// returns the directories to create for them (mode 0777, as the kubelet
// gives them the mode of the volume). Docker binds a subPath by its path
// on the host at every start of its container: a container of the pod
// that mounts the volume above it could have replaced a directory on that
// path by a symlink (to / on the host, say) in the meantime. So every
// directory on the path of a subPath is bound again onto itself in each
// container that sees it through a writable or read-only mount of the
// volume above it: a mount point, which no process in the container can
// rename or remove (EBUSY). The directories are made before any container
// of the pod exists.
func pinSubPaths(specs []spec, dataDir string) []poddata.File {
	pins := map[string][]string{} // volume directory -> directories to pin, parents first
	seen := map[string]bool{}
	for _, s := range specs {
		for _, m := range s.emptyDirs {
			if m.subPath == "" {
				continue
			}
			parts := strings.Split(m.subPath, "/")
			for i := range parts {
				p := strings.Join(parts[:i+1], "/")
				if k := m.volume + "\x00" + p; !seen[k] {
					seen[k] = true
					pins[m.volume] = append(pins[m.volume], p)
				}
			}
		}
	}
	var files []poddata.File
	for vol, ps := range pins {
		slices.SortFunc(ps, func(a, b string) int { return cmp.Compare(strings.Count(a, "/"), strings.Count(b, "/")) })
		pins[vol] = ps
		for _, p := range ps {
			files = append(files, poddata.File{Path: path.Join(vol, p), Dir: true, Mode: 0o777})
		}
	}
	slices.SortFunc(files, func(a, b poddata.File) int { return cmp.Compare(a.Path, b.Path) })
	for i := range specs {
		s := &specs[i]
		own := slices.Clone(s.host.Mounts) // the pod's mounts, without the pins
		for _, m := range s.emptyDirs {
			for _, p := range pins[m.volume] {
				rel := p
				if m.subPath != "" {
					var ok bool
					if rel, ok = strings.CutPrefix(p, m.subPath+"/"); !ok {
						continue
					}
				}
				target := path.Join(m.target, rel)
				if shadowed(own, m.target, target) {
					continue
				}
				s.host.Mounts = append(s.host.Mounts, mount.Mount{Type: mount.TypeBind,
					Source: filepath.Join(dataDir, filepath.FromSlash(m.volume), filepath.FromSlash(p)), Target: target, ReadOnly: m.ro})
			}
		}
	}
	return files
}

// shadowed tells whether target, below the mount at parent, is at or below
// another mount of the container deeper than parent: it is a mount point
// there already, or hidden.
func shadowed(mounts []mount.Mount, parent, target string) bool {
	for _, mt := range mounts {
		if len(mt.Target) > len(parent) && (target == mt.Target || strings.HasPrefix(target, mt.Target+"/")) {
			return true
		}
	}
	return false
}

func labels(p *corev1.Pod, name, role string, index int) map[string]string {
	return map[string]string{
		LabelUID: string(p.UID), LabelNamespace: p.Namespace, LabelName: p.Name,
		LabelContainer: name, LabelRole: role, LabelIndex: strconv.Itoa(index),
	}
}

func (d *Sidecar) containerSpec(p *corev1.Pod, c *corev1.Container, role string, index int, vols map[string]poddata.Volume, dataDir string) (spec, []poddata.File, error) {
	if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
		return spec{}, nil, fmt.Errorf("name %q: %s", c.Name, strings.Join(msgs, "; "))
	}
	if c.Image == "" {
		return spec{}, nil, fmt.Errorf("no image")
	}
	if c.RestartPolicy != nil {
		// A sidecar container: it runs beside the others, which start once
		// it has; the VK waits for every init container to end.
		return spec{}, nil, fmt.Errorf("restartPolicy %q (a sidecar container) is not supported by the Docker sidecar", *c.RestartPolicy)
	}
	env, err := poddata.Env(c)
	if err != nil {
		return spec{}, nil, err
	}
	s := spec{name: c.Name, role: role, index: index, image: c.Image, policy: c.ImagePullPolicy}
	// As Kubernetes defines them, Docker's way: a command replaces the
	// image's ENTRYPOINT and drops its CMD; args alone replace its CMD;
	// the image's ENV and WORKDIR hold unless the pod sets them.
	s.create = container.Config{
		Image:      c.Image,
		Entrypoint: poddata.ExpandAll(c.Command, env),
		Cmd:        poddata.ExpandAll(c.Args, env),
		Env:        dockerEnv(env),
		WorkingDir: c.WorkingDir,
		Labels:     labels(p, c.Name, role, index),
		// kubectl attach reaches these (stream.go).
		OpenStdin: c.Stdin,
		StdinOnce: c.StdinOnce,
		Tty:       c.TTY,
	}
	if c.TTY {
		s.create.Labels[LabelTTY] = "true"
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
		if m.SubPath != "" && v.HostPath != "" {
			// Anyone who can write there could replace the subPath by a
			// symlink before Docker (as root) binds it.
			return spec{}, nil, fmt.Errorf("volume mount %q: subPath on a hostPath volume is refused by the Docker sidecar", m.Name)
		}
		dir, hostPath, _, err := poddata.Mount(v, m)
		if err != nil {
			return spec{}, nil, err
		}
		source := hostPath
		if source == "" {
			source = filepath.Join(dataDir, filepath.FromSlash(dir))
		}
		target, ro := path.Clean(m.MountPath), v.ReadOnly || m.ReadOnly
		s.host.Mounts = append(s.host.Mounts, mount.Mount{Type: mount.TypeBind, Source: source, Target: target, ReadOnly: ro})
		if v.EmptyDir {
			// Its subPath directories are made, and pinned, by pinSubPaths.
			sub := path.Clean(m.SubPath)
			if m.SubPath == "" || sub == "." {
				sub = ""
			}
			s.emptyDirs = append(s.emptyDirs, emptyDirMount{volume: v.Dir, subPath: sub, target: target, ro: ro})
		}
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
		// No swap beyond the limit, as the kubelet runs containers: over
		// it, the container is OOM-killed (Docker's default would let it
		// swap as much again).
		s.host.Memory, s.host.MemorySwap = v, v
	}
	if g, _, ok := limit(resourceNvidiaGPU); ok && g > 0 {
		s.host.DeviceRequests = []container.DeviceRequest{{Driver: d.cfg.GPUDriver, Count: int(g), Capabilities: [][]string{{"gpu"}}}}
	}
	// Docker restarts what exits as the pod's restartPolicy says; init
	// containers are run again until they succeed unless it is Never.
	switch {
	case p.Spec.RestartPolicy == corev1.RestartPolicyNever:
	case role == roleInit || p.Spec.RestartPolicy == corev1.RestartPolicyOnFailure:
		s.host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure}
	default: // Always, the default
		s.host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyAlways}
	}
	return s, files, nil
}
