package vk

import (
	"context"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// The Provider and the state it keeps of its pods. Its jobs are in their
// own files: submission (submit.go), status polling (poll.go), how a pod's
// status is computed (status.go), logs and exec (exec.go), usage
// (usage.go).

// Interlink is what the provider needs of interLink; functions/client is one.
type Interlink interface {
	Create(ctx context.Context, req *api.PodCreateRequests) (api.CreateResult, error)
	Delete(ctx context.Context, pod *corev1.Pod) error
	Status(ctx context.Context, pods []*corev1.Pod) ([]api.PodStatus, error)
	Logs(ctx context.Context, sidecar string, req *api.LogRequest) (io.ReadCloser, error)
	Ping(ctx context.Context) (api.PingResponse, error)
	Exec(ctx context.Context, sidecar string, req *api.ExecRequest, out io.Writer) (int, error)
}

// tracked is what the provider knows of one pod.
type tracked struct {
	pod     *corev1.Pod // as last given to us, with the status we computed
	jobID   string
	missing int
	// Submission state of a pod not yet created in interLink.
	submitting bool
	tries      int
	nextTry    time.Time
	// usage is what the pod's running containers used at the last poll
	// that said (nil: nothing known); cpuSeen is how much of each
	// container's CPU the node's counter has counted (usage.go).
	usage   *api.PodUsage
	cpuSeen map[string]cpuMark
	// rawHash is the hash of the JSON of the status last applied (0:
	// none), to pod as it was then (hashedPod): the same JSON for the same
	// pod is not applied again.
	rawHash   uint64
	hashedPod *corev1.Pod
	// driftSince is when the API server was first seen showing another
	// state than pod's (zero: it agrees); resentAt is the API server's
	// version of the pod when the provider last wrote its status itself
	// (if resent; resync.go).
	driftSince time.Time
	resent     bool
	resentAt   string
}

// Provider implements virtual-kubelet's nodeutil.Provider and
// node.PodNotifier on top of interLink.
type Provider struct {
	providerConfig
	started time.Time
	metrics *vkMetrics
	// lastPoll is when the node's pods' status was last read (unix nanos).
	lastPoll atomic.Int64

	// retries receives pods whose submission backoff ended (when it is
	// full, the sweep at each status interval retries them).
	retries chan types.UID
	// inflight owns the goroutines of retried submissions (and of
	// retryDue): RunStatus waits for them.
	inflight sync.WaitGroup
	// rawSeed hashes statuses' JSON; lastRaw maps the hashes of the last
	// streamed poll's statuses to their pods (syncStatus alone uses it).
	rawSeed maphash.Seed
	lastRaw map[uint64]types.UID
	// streamSlots holds a token per open stream (its capacity is the
	// node's cap, StreamMaxConcurrent).
	streamSlots   chan struct{}
	streamMetrics *streamMetrics

	// resyncAfter is statusResyncAfter (tests shorten it).
	resyncAfter time.Duration

	pushMu sync.Mutex // serializes pushes to the pod controller
	mu     sync.Mutex
	pods   map[types.UID]*tracked
	byName map[string]types.UID
	notify func(*corev1.Pod)
	// nodeCPU is the node's cumulative CPU (core-ns): the sum of what its
	// pods' containers used, counted as sampled, so that it never goes down
	// (usage.go). nodeCPUTime is the latest sample counted (zero: none).
	nodeCPU     uint64
	nodeCPUTime time.Time
}

var _ nodeutil.Provider = (*Provider)(nil)

// providerConfig is what a Provider is built from.
type providerConfig struct {
	il       Interlink
	client   kubernetes.Interface
	data     *dataSource
	nodeName string
	hostIP   string
	// podNet is PodCIDR.Subnet (nil: none), where pod-ip annotations must lie.
	podNet   *net.IPNet
	interval time.Duration // between status polls
	log      *slog.Logger
	// podLister reads the informer's pods (nil: submitted pods keep their
	// own spec).
	podLister corev1listers.PodLister
	// maxStreams caps the node's open streams (0: DefaultStreamMaxConcurrent).
	maxStreams int
	// exposeServices: pods annotated for service endpoints reach Services
	// through the node (vk/services), and get no status.podIP.
	exposeServices bool
}

// retryQueue is how many pods whose submission backoff ended may wait for
// retryDue; beyond it, the sweep at each status interval takes them.
const retryQueue = 4096

// newProvider builds a Provider that records its figures in m.
func newProvider(cfg providerConfig, m *vkMetrics) *Provider {
	if cfg.maxStreams <= 0 {
		cfg.maxStreams = DefaultStreamMaxConcurrent
	}
	return &Provider{providerConfig: cfg, started: time.Now(), metrics: m, resyncAfter: statusResyncAfter, retries: make(chan types.UID, retryQueue), rawSeed: maphash.MakeSeed(),
		streamSlots: make(chan struct{}, cfg.maxStreams), streamMetrics: m.streams,
		pods: map[types.UID]*tracked{}, byName: map[string]types.UID{}}
}

func key(ns, name string) string { return ns + "/" + name }

func (p *Provider) track(pod *corev1.Pod, jobID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.pods[pod.UID]; ok && jobID == "" {
		t.pod = pod // known already: keep its submission state
		return
	}
	if jobID != "" {
		// Submitted already: the spec with its resolved environment is
		// not needed again.
		p.shareSpecLocked(pod)
	}
	p.pods[pod.UID] = &tracked{pod: pod, jobID: jobID}
	p.byName[key(pod.Namespace, pod.Name)] = pod.UID
}

// push hands a status to the pod controller. Pushes are serialized, so a
// status read before a pod was deleted never lands after its final one.
// It is not copied first: pods the provider tracks are never changed in
// place (every change makes a new one), and the controller copies what it
// is given.
func (p *Provider) push(pod *corev1.Pod) {
	p.pushMu.Lock()
	defer p.pushMu.Unlock()
	p.mu.Lock()
	cb := p.notify
	p.mu.Unlock()
	if cb != nil {
		cb(statusOnly(pod))
	}
}

// statusOnly is the pod as the pod controller needs it: it copies the pod
// it is given, keeps it, and writes its metadata and status to pods/status,
// where the API server ignores the spec. Without the spec its copy is a
// fraction of the pod's size.
func statusOnly(pod *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: pod.ObjectMeta, Status: pod.Status}
	return out
}

// pushIfTracked pushes pod's status unless the pod was deleted meanwhile.
func (p *Provider) pushIfTracked(pod *corev1.Pod) {
	p.pushMu.Lock()
	defer p.pushMu.Unlock()
	p.mu.Lock()
	_, ok := p.pods[pod.UID]
	cb := p.notify
	p.mu.Unlock()
	if ok && cb != nil {
		cb(statusOnly(pod)) // see push
	}
}

// shareSpecLocked gives a submitted pod the informer's spec in place of its
// own copy, which also holds the resolved environment (service links
// included) that only the submission needed: at 10,000 pods, tens of MB.
// pod must be the provider's own, not yet shared; p.mu is held.
func (p *Provider) shareSpecLocked(pod *corev1.Pod) {
	if p.podLister == nil {
		return
	}
	if ip, err := p.podLister.Pods(pod.Namespace).Get(pod.Name); err == nil && ip.UID == pod.UID {
		pod.Spec = ip.Spec
	}
}

// GetPod returns the pod as the provider knows it.
func (p *Provider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.pods[p.byName[key(namespace, name)]]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not known to this node", namespace, name)
	}
	return t.pod.DeepCopy(), nil
}

// GetPodStatus returns the pod's last computed status.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod the provider knows.
func (p *Provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(p.pods))
	for _, t := range p.pods {
		out = append(out, t.pod.DeepCopy())
	}
	return out, nil
}

// NotifyPods implements node.PodNotifier: status changes are pushed.
func (p *Provider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = cb
}
