// Package prober is the job side of a SLURM pod's probes and lifecycle
// hooks, and of its resource usage. The sidecar writes a Spec into the
// pod's directory; the job starts interlink-prober beside its containers,
// which runs each container's postStart hook and probes (package probe)
// from the moment the job records the container's start, writes what they
// find to containers/NAME.probe for the sidecar's status, stops a container
// whose liveness or startup probe fails, and on a pod's deletion runs the
// preStop hooks before the containers are stopped. It samples the CPU and
// memory of every running container into UsageFile (usage.go).
package prober

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// SpecFile is the Spec's name in the pod's directory.
const SpecFile = "probes.json"

// PIDPlaceholder stands, as a whole word of Spec.Exec, for the pid of the
// container's process.
const PIDPlaceholder = "{{pid}}"

// Spec is what the prober of one job does.
type Spec struct {
	// Containers are the pod's containers that have probes or hooks.
	Containers []Container `json:"containers,omitempty"`
	// GracePeriodSeconds is the pod's terminationGracePeriodSeconds: how
	// long preStop hooks and the stop signal have before SIGKILL.
	GracePeriodSeconds int64 `json:"gracePeriodSeconds"`
	// Sampled are the containers whose usage the prober samples: all the
	// pod's, init containers too.
	Sampled []Sampled `json:"sampled,omitempty"`
	// UsageInterval is how often they are sampled (0: UsageInterval).
	UsageInterval time.Duration `json:"usageInterval,omitempty"`
}

// Sampled is a container whose usage the prober samples.
type Sampled struct {
	// Name is the container's name (containers/NAME.pid).
	Name string `json:"name"`
	// PIDOf, when set, is the argv (PIDPlaceholder replaced by the run's
	// pid) that prints the pid of the container's first process, when the
	// container's processes do not descend from the run's (Podman: podman
	// container inspect --format {{.State.Pid}} NAME, conmon's child). It
	// is asked once per run, once the container runs.
	PIDOf []string `json:"pidOf,omitempty"`
	// Inside, when set, is a path in the container's root (the helper the
	// job runs in it) that tells the container's first process from the
	// runtime's own (Apptainer's starter, a FUSE mount): the tree measured
	// is rooted at the first process, at or below the run's, that is in
	// another mount namespace and whose root holds it.
	Inside string `json:"inside,omitempty"`
}

// Container is one container's probes and hooks.
type Container struct {
	// Name is the container's name: the job writes containers/NAME.pid,
	// the prober containers/NAME.probe.
	Name string `json:"name"`
	// Probes and Lifecycle are the container's, as in its spec; Ports its
	// declared ports (for named ports).
	StartupProbe   *corev1.Probe          `json:"startupProbe,omitempty"`
	LivenessProbe  *corev1.Probe          `json:"livenessProbe,omitempty"`
	ReadinessProbe *corev1.Probe          `json:"readinessProbe,omitempty"`
	Lifecycle      *corev1.Lifecycle      `json:"lifecycle,omitempty"`
	Ports          []corev1.ContainerPort `json:"ports,omitempty"`
	// Host is where httpGet, tcpSocket and grpc connect when the handler
	// names no host (127.0.0.1: the runtimes here share the node's network).
	Host string `json:"host"`
	// Exec runs a command inside the running container: the argv, from the
	// sidecar's config, to which the command's words are appended; a word
	// equal to PIDPlaceholder is replaced by the container's pid (Podman:
	// podman exec NAME). When Nsenter is set instead, the prober enters the
	// namespaces of the container's process (the first process, the
	// recorded pid or a descendant, in a mount namespace other than the
	// prober's) with that program, at the container's root and working
	// directory, and runs Inner + the command there. Both empty: exec
	// handlers fail (the runtime cannot).
	Exec    []string `json:"exec,omitempty"`
	Nsenter string   `json:"nsenter,omitempty"`
	// Running, with Exec, is the argv (PIDPlaceholder replaced) that
	// prints "true" once the container runs and Exec can enter it
	// (podman container inspect --format {{.State.Running}} NAME): hooks
	// and probes wait for it.
	Running []string `json:"running,omitempty"`
	// ExecStdin and ExecTTY, when set, replace Exec for a kubectl exec
	// with standard input (-i), and with a terminal too (-it): podman exec
	// -i NAME, podman exec -i -t NAME.
	ExecStdin []string `json:"execStdin,omitempty"`
	ExecTTY   []string `json:"execTTY,omitempty"`
	// Inner are the words run inside the container before the command: the
	// env helper, so that the command sees the container's env
	// (/.interlink/envexec /.interlink/env --).
	Inner []string `json:"inner,omitempty"`
}

// State is what the prober writes to containers/NAME.probe (JSON, replaced
// atomically) for the current run of a container.
type State struct {
	// PID is the run's pid, as containers/NAME.pid gave it.
	PID int `json:"pid"`
	// Started: the postStart hook is done and the startup probe (if any)
	// has passed.
	Started bool `json:"started"`
	// Ready: the readiness probe passes (or there is none, once started).
	Ready bool `json:"ready"`
	// Since is when Ready last changed (RFC 3339, UTC).
	Since string `json:"since,omitempty"`
	// Killed says why the prober stopped the run: "Liveness probe failed:
	// …", "Startup probe failed: …" or "FailedPostStartHook: …" (the kubelet's event reasons).
	Killed string `json:"killed,omitempty"`
}
