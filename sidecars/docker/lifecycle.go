package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/mount"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// LabelLifecycle holds, as JSON, what the sidecar needs of a container
// while it runs: its probes, hooks, ports, termination message settings
// and its pod's grace period. Like every state of the sidecar it is read
// back from the container, so that a restarted sidecar resumes probing.
const LabelLifecycle = "interlink.io/lifecycle"

// maxLifecycleLabel bounds the JSON of LabelLifecycle: a pod whose probes
// and hooks take more is refused.
const maxLifecycleLabel = 16 << 10

// terminationDir holds, in each pod's data directory, one file per
// container bound at its terminationMessagePath: Docker mounts a fresh
// tmpfs on /dev at each start, where the default path would be lost with
// the run (the kubelet binds a file there too).
const terminationDir = "termination-log"

// lifecycle is the JSON of LabelLifecycle.
type lifecycle struct {
	Startup   *corev1.Probe                   `json:"startup,omitempty"`
	Liveness  *corev1.Probe                   `json:"liveness,omitempty"`
	Readiness *corev1.Probe                   `json:"readiness,omitempty"`
	Lifecycle *corev1.Lifecycle               `json:"lifecycle,omitempty"`
	Ports     []corev1.ContainerPort          `json:"ports,omitempty"`
	Path      string                          `json:"path,omitempty"` // terminationMessagePath
	Policy    corev1.TerminationMessagePolicy `json:"policy,omitempty"`
	// Grace is the pod's terminationGracePeriodSeconds (nil: the default).
	Grace *int64 `json:"grace,omitempty"`
}

// container is the lifecycle as a Container, for package probe.
func (l *lifecycle) container(name string) *corev1.Container {
	return &corev1.Container{Name: name, StartupProbe: l.Startup, LivenessProbe: l.Liveness, ReadinessProbe: l.Readiness,
		Lifecycle: l.Lifecycle, Ports: l.Ports, TerminationMessagePath: l.Path, TerminationMessagePolicy: l.Policy}
}

// gated tells whether the container is started and ready only once the
// sidecar says so: it has a startup or readiness probe or a postStart hook.
// Other containers are started and ready while they run.
func (l *lifecycle) gated() bool {
	return l.Startup != nil || l.Readiness != nil || l.postStart() != nil
}

func (l *lifecycle) postStart() *corev1.LifecycleHandler {
	if l.Lifecycle == nil {
		return nil
	}
	return l.Lifecycle.PostStart
}

func (l *lifecycle) preStop() *corev1.LifecycleHandler {
	if l.Lifecycle == nil {
		return nil
	}
	return l.Lifecycle.PreStop
}

// killGrace is the grace period, in seconds, of a run the sidecar stops
// because its kind of probe failed (kind "" for the postStart hook): the
// probe's terminationGracePeriodSeconds when set, as the kubelet gives,
// else the pod's.
func (l *lifecycle) killGrace(kind probe.Kind) int64 {
	var p *corev1.Probe
	switch kind {
	case probe.Startup:
		p = l.Startup
	case probe.Liveness:
		p = l.Liveness
	}
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return *p.TerminationGracePeriodSeconds
	}
	return podGrace(l.Grace)
}

// podGrace is a pod's terminationGracePeriodSeconds (g), or the default.
// stopRun bounds it.
func podGrace(g *int64) int64 {
	if g == nil {
		return int64(DefaultGracePeriod / time.Second)
	}
	return *g
}

// messagePath is the container's terminationMessagePath.
func (l *lifecycle) messagePath() string {
	if l.Path == "" {
		return probe.DefaultMessagePath
	}
	return l.Path
}

// lifecycleOf reads a container's LabelLifecycle; a container without one
// (or with one that does not parse) has no probes or hooks and the default
// termination message settings.
func lifecycleOf(labels map[string]string) lifecycle {
	var l lifecycle
	if v := labels[LabelLifecycle]; v != "" && len(v) <= maxLifecycleLabel {
		if json.Unmarshal([]byte(v), &l) != nil {
			return lifecycle{}
		}
	}
	return l
}

// setLifecycle checks a container's probes, hooks and termination message
// settings and records them in s's labels. Init containers may have none
// (as the API server says); handlers that name a host are refused: the
// sidecar would connect to it from the Docker host, not from the pod.
func (d *Sidecar) setLifecycle(p *corev1.Pod, c *corev1.Container, s *spec) error {
	if err := probe.Validate(c); err != nil {
		// It names the container: the caller does too.
		return errors.New(strings.TrimPrefix(err.Error(), "container "+c.Name+": "))
	}
	hasAny := probe.Has(c) || c.Lifecycle != nil && (c.Lifecycle.PostStart != nil || c.Lifecycle.PreStop != nil)
	if s.role == roleInit && hasAny {
		return errors.New("init containers may not have probes or lifecycle hooks")
	}
	l := lifecycle{Startup: c.StartupProbe, Liveness: c.LivenessProbe, Readiness: c.ReadinessProbe, Ports: c.Ports,
		Path: c.TerminationMessagePath, Policy: c.TerminationMessagePolicy, Grace: p.Spec.TerminationGracePeriodSeconds}
	if c.Lifecycle != nil && (c.Lifecycle.PostStart != nil || c.Lifecycle.PreStop != nil) {
		l.Lifecycle = &corev1.Lifecycle{PostStart: c.Lifecycle.PostStart, PreStop: c.Lifecycle.PreStop}
	}
	if err := d.checkHandlers(p, c, &l); err != nil {
		return err
	}
	switch l.Policy {
	case "", corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError:
	default:
		return fmt.Errorf("terminationMessagePolicy %q is not File or FallbackToLogsOnError", l.Policy)
	}
	mp := l.messagePath()
	if err := poddata.CheckMountPath(mp); err != nil || path.Clean(mp) != mp || mp == "/" {
		return fmt.Errorf("terminationMessagePath %q is not a clean absolute path", mp)
	}
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == mp {
			return fmt.Errorf("terminationMessagePath %q is the mount path of volume %q", mp, m.Name)
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if len(b) > maxLifecycleLabel {
		return fmt.Errorf("probes and hooks take %d bytes of JSON, more than the sidecar keeps (%d)", len(b), maxLifecycleLabel)
	}
	s.create.Labels[LabelLifecycle] = string(b)
	return nil
}

// checkHandlers refuses what the sidecar cannot probe: a handler naming a
// host of its own, and network handlers in a pod without a network the
// sidecar reaches (NetworkMode none).
func (d *Sidecar) checkHandlers(p *corev1.Pod, c *corev1.Container, l *lifecycle) error {
	type named struct {
		field string
		a     probe.Action
	}
	var all []named
	for _, pr := range []struct {
		f string
		p *corev1.Probe
	}{{"startupProbe", l.Startup}, {"livenessProbe", l.Liveness}, {"readinessProbe", l.Readiness}} {
		if pr.p != nil {
			all = append(all, named{pr.f, probe.ForProbe(pr.p)})
		}
	}
	if h := l.postStart(); h != nil {
		all = append(all, named{"lifecycle.postStart", probe.ForHook(h)})
	}
	if h := l.preStop(); h != nil {
		all = append(all, named{"lifecycle.preStop", probe.ForHook(h)})
	}
	noNet := !p.Spec.HostNetwork && d.cfg.NetworkMode == "none"
	for _, n := range all {
		a := n.a
		if a.HTTPGet != nil && a.HTTPGet.Host != "" || a.TCPSocket != nil && a.TCPSocket.Host != "" {
			return fmt.Errorf("%s: host %q: the Docker sidecar probes the pod's own address only", n.field, hostField(a))
		}
		if noNet && (a.HTTPGet != nil || a.TCPSocket != nil || a.GRPC != nil) {
			return fmt.Errorf("%s: httpGet, tcpSocket and grpc need a pod network the sidecar reaches; this sidecar's NetworkMode is none", n.field)
		}
	}
	return nil
}

func hostField(a probe.Action) string {
	if a.HTTPGet != nil {
		return a.HTTPGet.Host
	}
	return a.TCPSocket.Host
}

// terminationMounts binds a fresh, empty file of the pod's data (under
// dataDir on the Docker host) at each container's terminationMessagePath,
// and returns the files to write: mode 0666, as the kubelet makes it, so
// that the container writes it whatever user it runs as. Their directory
// is 0700, like the pod's data directory: the bind mount reaches the file
// without it, other users of the Docker host do not.
func terminationMounts(specs []spec, dataDir string) []poddata.File {
	files := []poddata.File{{Path: terminationDir, Dir: true, Mode: 0o700}}
	for i := range specs {
		s := &specs[i]
		l := lifecycleOf(s.create.Labels)
		rel := path.Join(terminationDir, s.name)
		files = append(files, poddata.File{Path: rel, Mode: 0o666})
		s.host.Mounts = append(s.host.Mounts, mount.Mount{Type: mount.TypeBind,
			Source: filepath.Join(dataDir, filepath.FromSlash(rel)), Target: l.messagePath()})
	}
	return files
}
