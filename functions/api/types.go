package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodCreateRequests is the body of a VK -> interLink create.
type PodCreateRequests struct {
	Pod        corev1.Pod         `json:"pod"`
	ConfigMaps []corev1.ConfigMap `json:"configmaps"`
	Secrets    []corev1.Secret    `json:"secrets"`
	// ProjectedVolumeMaps holds one ConfigMap per projected or downwardAPI
	// volume, keyed by file path.
	ProjectedVolumeMaps []corev1.ConfigMap `json:"projectedvolumesmaps"`
	JobScriptURL        string             `json:"jobscriptURL"`
}

// RetrievedContainer is the data one container needs, as sent to a sidecar.
type RetrievedContainer struct {
	Name                string             `json:"name"`
	ConfigMaps          []corev1.ConfigMap `json:"configMaps"`
	ProjectedVolumeMaps []corev1.ConfigMap `json:"projectedvolumemaps"`
	Secrets             []corev1.Secret    `json:"secrets"`
	// EmptyDirs is deprecated and always empty.
	EmptyDirs []string `json:"emptyDirs"`
}

// RetrievedPodData is the body of an interLink -> sidecar create.
type RetrievedPodData struct {
	Pod corev1.Pod `json:"pod"`
	// Containers lists init containers first, then containers.
	Containers []RetrievedContainer `json:"container"`
	// JobConfig is passed through unchanged.
	JobConfig json.RawMessage `json:"jobConfig,omitempty"`
	JobScript string          `json:"jobScript,omitempty"`
}

// CreateResult is the reply to a create (the original's CreateStruct).
type CreateResult struct {
	PodUID string `json:"PodUID"`
	PodJID string `json:"PodJID"`
}

// PodStatus is the status of one pod as a sidecar reports it.
type PodStatus struct {
	PodName        string                   `json:"name"`
	PodUID         string                   `json:"UID"`
	PodNamespace   string                   `json:"namespace"`
	JobID          string                   `json:"JID"`
	Containers     []corev1.ContainerStatus `json:"containers"`
	InitContainers []corev1.ContainerStatus `json:"initContainers"`

	// PodIP is an extension: the pod's address on the remote side, if any.
	PodIP string `json:"podIP,omitempty"`
	// Error is an extension, sent only to peers that declared HeaderAPIVersion:
	// the status of this pod could not be read (its sidecar failed). The
	// receiver keeps the pod's last known status.
	Error *Status `json:"error,omitempty"`
	// Usage is an extension: what the pod's running containers use at the
	// remote side. A sidecar that measures nothing (an original plugin)
	// sends none; none is ever invented.
	Usage *PodUsage `json:"usage,omitempty"`
}

// PodUsage is what a pod's running containers used, as sampled at Time.
type PodUsage struct {
	// Time is when the sample was taken.
	Time time.Time `json:"time"`
	// Containers lists the running containers the sample covers: a
	// container left out has no figures (not zero ones).
	Containers []ContainerUsage `json:"containers"`
}

// ContainerUsage is one container's usage, in the kubelet's stats units
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1).
type ContainerUsage struct {
	Name string `json:"name"`
	// StartTime is when the container's current run started.
	StartTime time.Time `json:"startTime"`
	// CPUCoreNanoSeconds is the CPU time the run used, all cores
	// together: cumulative.
	CPUCoreNanoSeconds uint64 `json:"cpuCoreNanoSeconds"`
	// CPUNanoCores is the rate of use over the sampler's last interval;
	// nil until two samples were taken.
	CPUNanoCores *uint64 `json:"cpuNanoCores,omitempty"`
	// MemoryWorkingSetBytes is the memory the run uses that the kernel
	// cannot reclaim at once, as the kubelet counts it (usage less
	// inactive file pages; the resident set where there is no cgroup).
	MemoryWorkingSetBytes uint64 `json:"memoryWorkingSetBytes"`
}

// ContainerLogOpts are the options of a log request.
type ContainerLogOpts struct {
	Tail         int       `json:"Tail"`
	LimitBytes   int       `json:"Bytes"`
	Timestamps   bool      `json:"Timestamps"`
	Follow       bool      `json:"Follow"`
	Previous     bool      `json:"Previous"`
	SinceSeconds int       `json:"SinceSeconds"`
	SinceTime    time.Time `json:"SinceTime"`
}

// LogRequest is the body of a log request (the original's LogStruct).
type LogRequest struct {
	Namespace     string           `json:"Namespace"`
	PodUID        string           `json:"PodUID"`
	PodName       string           `json:"PodName"`
	ContainerName string           `json:"ContainerName"`
	Opts          ContainerLogOpts `json:"Opts"`
}

// ExecRequest is the body of an /exec call: run Command in a container and
// stream its output (stdout and stderr together) back, with the exit code in
// the TrailerExitCode trailer. Standard input and terminals are not part of
// this version.
type ExecRequest struct {
	Namespace     string   `json:"namespace"`
	PodUID        string   `json:"podUID"`
	PodName       string   `json:"podName"`
	ContainerName string   `json:"containerName"`
	Command       []string `json:"command"`
}

// Accelerator is a count of one accelerator resource.
type Accelerator struct {
	ResourceType string `json:"resourceType"`
	Available    Count  `json:"available"`
}

// Count is a non-negative count sent as a JSON number, and read from a
// number or from a string holding one: the original interLink sends an
// accelerator's available count as a string since its 0.6.1, as a number
// before.
type Count int

// UnmarshalJSON reads a number, a string holding a whole number (a
// Kubernetes quantity such as "8"), or null (0).
func (c *Count) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		*c = 0
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*c = 0
			return nil
		}
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return fmt.Errorf("count %q: %w", s, err)
		}
		n, ok := q.AsInt64()
		if !ok || n < 0 || n > math.MaxInt32 {
			return fmt.Errorf("count %q is not a whole number from 0 to %d", s, math.MaxInt32)
		}
		*c = Count(n)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("count %s: %w", s, err)
	}
	if n < 0 || n > math.MaxInt32 {
		return fmt.Errorf("count %d is not from 0 to %d", n, math.MaxInt32)
	}
	*c = Count(n)
	return nil
}

// Resources are the capacity a sidecar offers, as Kubernetes quantities.
type Resources struct {
	CPU          string        `json:"cpu,omitempty"`
	Memory       string        `json:"memory,omitempty"`
	Pods         string        `json:"pods,omitempty"`
	Accelerators []Accelerator `json:"accelerators,omitempty"`
}

// Taint is a node taint requested by a sidecar.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Effect string `json:"effect"`
}

// PingResponse is a sidecar's reply to a ping (an empty /status) and
// interLink's reply to /pinglink.
type PingResponse struct {
	Status    string     `json:"status,omitempty"`
	Resources *Resources `json:"resources,omitempty"`
	// Taints, when present (even empty), replace the node's non-system taints.
	Taints *[]Taint `json:"taints,omitempty"`

	// Sidecars is an extension of interLink's /pinglink reply: the health of
	// each sidecar behind it.
	Sidecars []SidecarHealth `json:"sidecars,omitempty"`

	// Problem is why a reply that was a JSON object gave no resources (it
	// did not decode; DecodeReply), or nil. It is never sent.
	Problem error `json:"-"`
}

// MaxPingReply caps what is read of a ping reply.
const MaxPingReply = 1 << 20

// DecodeReply reads a ping reply as the original interLink does: a 2xx
// reply is healthy whatever its body (an original Docker plugin answers
// null, older SLURM plugins null, [] or the text of sinfo -s), and the
// node's resources, taints and health are read only from a JSON object.
// An object that does not decode leaves them unread: Problem says why.
// Only a reply that cannot be read (a broken connection, one larger than
// MaxPingReply) is an error. DoJSON decodes a PingResponse with it.
func (p *PingResponse) DecodeReply(body io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(body, MaxPingReply+1))
	if err != nil {
		return Unavailable("read ping reply: %w", err)
	}
	if len(b) > MaxPingReply {
		return Unavailable("ping reply larger than %d bytes", MaxPingReply)
	}
	*p = PingResponse{}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	type plain PingResponse // without this method
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		p.Problem = fmt.Errorf("ping reply %.200q: %w", b, err)
		return nil
	}
	*p = PingResponse(v)
	return nil
}

// SidecarHealth is the health of one sidecar in an aggregated ping.
type SidecarHealth struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

// Ping status values.
const (
	PingOK       = "ok"
	PingDegraded = "degraded"
	PingDown     = "down"
)

// lastApplied is kubectl's copy of the whole object, the largest annotation
// a pod usually carries.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// TrimForStatus returns what a sidecar's status reads of a pod: its
// metadata (without managed fields and kubectl's last-applied copy), each
// container's name and image, the restart policy and node name. A /status
// batch of trimmed pods is several times smaller than one of full pods;
// it is sent only to an interLink that set HeaderTrimmedStatus. The result
// shares p's labels and annotations: encode it, do not change it.
func TrimForStatus(p *corev1.Pod) *corev1.Pod {
	// A shallow copy: the result shares p's maps and is only to be encoded.
	out := &corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: p.ObjectMeta}
	out.ManagedFields = nil
	if _, ok := p.Annotations[lastApplied]; ok {
		out.Annotations = make(map[string]string, len(p.Annotations)-1)
		for k, v := range p.Annotations {
			if k != lastApplied {
				out.Annotations[k] = v
			}
		}
	}
	out.Spec.RestartPolicy, out.Spec.NodeName = p.Spec.RestartPolicy, p.Spec.NodeName
	out.Spec.InitContainers = nameAndImage(p.Spec.InitContainers)
	out.Spec.Containers = nameAndImage(p.Spec.Containers)
	out.Status.Phase = p.Status.Phase
	return out
}

// StatusPod is what TrimForStatus keeps of a pod, as a small struct of its
// own: it encodes to the same JSON as the trimmed v1.Pod without building
// one (a v1.Pod is over a kilobyte even when nearly empty).
type StatusPod struct {
	Kind       string             `json:"kind,omitempty"`
	APIVersion string             `json:"apiVersion,omitempty"`
	Metadata   *metav1.ObjectMeta `json:"metadata"`
	Spec       statusPodSpec      `json:"spec"`
	Status     statusPodPhaseOnly `json:"status"`
}

type statusPodSpec struct {
	InitContainers []nameImage          `json:"initContainers,omitempty"`
	Containers     []nameImage          `json:"containers"`
	RestartPolicy  corev1.RestartPolicy `json:"restartPolicy,omitempty"`
	NodeName       string               `json:"nodeName,omitempty"`
}

type statusPodPhaseOnly struct {
	Phase corev1.PodPhase `json:"phase,omitempty"`
}

type nameImage struct {
	Name      string   `json:"name"`
	Image     string   `json:"image,omitempty"`
	Resources struct{} `json:"resources"` // as a v1.Container writes it
}

// StatusPodOf returns what a sidecar's status reads of p (see
// TrimForStatus). It shares p's metadata unless p has managed fields or
// kubectl's last-applied copy, which it leaves out.
func StatusPodOf(p *corev1.Pod) *StatusPod {
	out := &StatusPod{Kind: p.Kind, APIVersion: p.APIVersion, Metadata: &p.ObjectMeta}
	if _, ok := p.Annotations[lastApplied]; ok || len(p.ManagedFields) > 0 {
		out.Metadata = &TrimForStatus(p).ObjectMeta
	}
	out.Spec.RestartPolicy, out.Spec.NodeName = p.Spec.RestartPolicy, p.Spec.NodeName
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, nameImage{Name: c.Name, Image: c.Image})
	}
	out.Spec.Containers = make([]nameImage, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		out.Spec.Containers[i] = nameImage{Name: c.Name, Image: c.Image}
	}
	out.Status.Phase = p.Status.Phase
	return out
}

func nameAndImage(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i := range cs {
		out[i] = corev1.Container{Name: cs[i].Name, Image: cs[i].Image}
	}
	return out
}
