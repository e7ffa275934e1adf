package vk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// Interlink is what the provider needs of interLink; functions/client is one.
type Interlink interface {
	Create(ctx context.Context, req *api.PodCreateRequests) (api.CreateStruct, error)
	Delete(ctx context.Context, pod *corev1.Pod) error
	Status(ctx context.Context, pods []*corev1.Pod) ([]api.PodStatus, error)
	Logs(ctx context.Context, sidecar string, req *api.LogStruct) (io.ReadCloser, error)
	Ping(ctx context.Context) (api.PingResponse, error)
	Exec(ctx context.Context, sidecar string, req *api.ExecRequest, out io.Writer) (int, error)
}

// missingPolls is how many status polls in a row may miss a pod before it is
// declared lost (its sidecar no longer knows its job).
const missingPolls = 5

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
}

// Provider implements virtual-kubelet's nodeutil.Provider and
// node.PodNotifier on top of interLink.
type Provider struct {
	il       Interlink
	client   kubernetes.Interface
	data     *dataSource
	nodeName string
	hostIP   string
	// podNet is PodCIDR.Subnet (nil: none), where pod-ip annotations must lie.
	podNet   *net.IPNet
	interval time.Duration
	log      *slog.Logger
	started  time.Time
	metrics  *vkMetrics // nil in unit tests
	// lastPoll is when the node's pods' status was last read (unix nanos).
	lastPoll atomic.Int64

	// retries receives pods whose submission backoff ended (nil: only the
	// sweep at each status interval retries).
	retries chan types.UID
	// podLister reads the informer's pods (nil in unit tests).
	podLister corev1listers.PodLister

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

func key(ns, name string) string { return ns + "/" + name }

// CreatePod submits a pod. A pod that already has a job ID (a VK restart)
// is tracked again without a new submission; interLink's create is
// idempotent by pod UID anyway. CreatePod never returns an error for a
// transient failure (the pod controller would fail a pod with restartPolicy
// Never): the pod stays Pending and its submission is retried with backoff.
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	if jid := pod.Annotations[api.AnnotationJobID]; jid != "" {
		p.track(pod.DeepCopy(), jid)
		p.log.Info("pod recovered from its job ID annotation", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID, "job_id", jid)
		return nil
	}
	p.track(pod.DeepCopy(), "")
	if reason, msg := p.unsendable(pod); reason != "" {
		p.log.Warn("pod failed: "+msg, "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID)
		p.fail(pod, reason, msg)
		return nil
	}
	p.submit(ctx, pod.UID)
	return nil
}

// unsendable says why a pod cannot be sent to interLink at all, if so.
func (p *Provider) unsendable(pod *corev1.Pod) (reason, msg string) {
	if _, err := annotatedPodIP(pod, p.podNet); err != nil {
		return ReasonPodIPNotAllowed, err.Error()
	}
	if _, ok := pod.Annotations[AnnotationPodVPN]; ok {
		return ReasonPodVPNNotSupported, "annotation " + AnnotationPodVPN + ": this virtual node allocates no pod-vpn addresses; remove it (" + AnnotationPodIP + " sets a fixed pod IP)"
	}
	if len(pod.Spec.Containers) > 0 && len(offloaded(pod).Spec.Containers) == 0 {
		return ReasonNothingToOffload, "annotation " + AnnotationDisableOffloadContainers + " names every container: nothing is left to send to interLink, and this virtual node cannot run containers in the cluster"
	}
	return "", ""
}

// submitBackoff bounds the wait between submission attempts of one pod.
const (
	submitBackoffFirst   = time.Second
	submitBackoffLongest = 30 * time.Second
)

// submit gathers a tracked pod's data and creates it in interLink. A
// permanent failure fails the pod with a reason; a transient one schedules
// another attempt.
func (p *Provider) submit(ctx context.Context, uid types.UID) {
	p.mu.Lock()
	t, ok := p.pods[uid]
	if !ok || t.jobID != "" || t.submitting {
		p.mu.Unlock()
		return
	}
	t.submitting = true
	pod := t.pod.DeepCopy()
	p.mu.Unlock()
	log := p.log.With("pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID)
	// One trace per submission: its context reaches interLink and the
	// sidecar as traceparent.
	ctx, span := tracing.Tracer("interlink-vk").Start(ctx, "CreatePod",
		trace.WithAttributes(attribute.String("k8s.namespace.name", pod.Namespace), attribute.String("k8s.pod.name", pod.Name)))
	defer span.End()
	defer func() {
		p.mu.Lock()
		t.submitting = false
		p.mu.Unlock()
	}()

	req, err := p.data.request(ctx, pod)
	var missing *errMissingData
	if errors.As(err, &missing) {
		log.Warn("pod failed: its data is missing", "err", err)
		p.fail(pod, "CreateContainerConfigError", err.Error())
		return
	}
	var res api.CreateStruct
	if err == nil {
		start := time.Now()
		res, err = p.il.Create(ctx, req)
		if err == nil {
			log.Info("pod submitted", "job_id", res.PodJID, "duration_seconds", time.Since(start).Seconds())
		} else if api.ReasonOf(err) == api.ReasonInvalid {
			log.Warn("pod refused by interLink", "err", err)
			p.fail(pod, "ProviderFailed", err.Error())
			return
		}
	}
	if err != nil {
		p.retryLater(t, pod, err)
		log.Warn("pod submission failed; retrying", "err", err, "retry_in_seconds", time.Until(t.nextTry).Seconds())
		return
	}
	if res.PodJID == "" {
		// A plugin that gives no job ID: the pod UID stands for it.
		res.PodJID = string(pod.UID)
	}
	p.mu.Lock()
	if p.pods[pod.UID] != t {
		// Deleted while the create was in flight: end the job just made.
		p.mu.Unlock()
		if err := p.il.Delete(ctx, offloaded(pod)); err != nil && !api.IsNotFound(err) {
			log.Warn("pod deleted during its submission; deleting its job failed", "job_id", res.PodJID, "err", err)
		}
		return
	}
	// The job ID annotation reaches the API server with the pod's next
	// status write (the pod controller writes the whole pod we push to
	// pods/status, whose metadata a status update may change): no write of
	// its own. Until then a restarted VK submits the pod again, and
	// interLink's create, idempotent by pod UID, returns the same job.
	t.jobID = res.PodJID
	cp := *t.pod // shares the spec; the annotations are copied
	p.shareSpecLocked(&cp)
	cp.Annotations = make(map[string]string, len(t.pod.Annotations)+1)
	for k, v := range t.pod.Annotations {
		cp.Annotations[k] = v
	}
	cp.Annotations[api.AnnotationJobID] = res.PodJID
	t.pod = &cp
	p.mu.Unlock()
}

// retryLater schedules another submission and shows why the pod waits.
func (p *Provider) retryLater(t *tracked, pod *corev1.Pod, err error) {
	p.mu.Lock()
	if p.pods[pod.UID] != t {
		p.mu.Unlock()
		return // deleted meanwhile
	}
	t.tries++
	// Jittered (between half and all of the backoff), so that pods that
	// failed together do not all come back at the same moment.
	wait := min(submitBackoffFirst<<min(t.tries-1, 5), submitBackoffLongest)
	wait = wait/2 + rand.N(wait/2+1) //nolint:gosec // jitter, not security
	t.nextTry = time.Now().Add(wait)
	// Each pod's retry fires on its own timer, so the jitter spreads pods
	// that failed together (a sweep at each status interval would bunch
	// them into waves again).
	uid := pod.UID
	time.AfterFunc(wait, func() {
		select {
		case p.retries <- uid:
		default: // full: the sweep takes it
		}
	})
	cp := t.pod.DeepCopy()
	cp.Status.Phase = corev1.PodPending
	if api.ReasonOf(err) == api.ReasonImageNotFound {
		// As a kubelet shows a failed pull: the containers wait with
		// ErrImagePull, then ImagePullBackOff while the pull is retried.
		reason := "ErrImagePull"
		if t.tries > 1 {
			reason = "ImagePullBackOff"
		}
		cp.Status.Reason, cp.Status.Message = "", ""
		cp.Status.InitContainerStatuses = waitingStatuses(cp.Spec.InitContainers, reason, err.Error())
		cp.Status.ContainerStatuses = waitingStatuses(cp.Spec.Containers, reason, err.Error())
	} else {
		cp.Status.Reason, cp.Status.Message = "SubmissionRetry", "waiting for interLink: "+err.Error()
	}
	t.pod = cp
	p.mu.Unlock()
	p.pushIfTracked(cp)
}

// waitingStatuses are the statuses of containers waiting for reason.
func waitingStatuses(cs []corev1.Container, reason, msg string) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}})
	}
	return out
}

// retrySubmits is the sweep: it starts the submissions whose retry is
// overdue by more than a second (their timer's wake-up was dropped).
func (p *Provider) retrySubmits(ctx context.Context) {
	now := time.Now().Add(-time.Second)
	var due []types.UID
	p.mu.Lock()
	for uid, t := range p.pods {
		if p.dueLocked(t, now) {
			due = append(due, uid)
		}
	}
	p.mu.Unlock()
	for _, uid := range due {
		go p.submit(ctx, uid)
	}
}

// dueLocked tells whether t waits for a retry due at now. p.mu is held.
func (p *Provider) dueLocked(t *tracked, now time.Time) bool {
	return t.jobID == "" && !t.submitting && t.tries > 0 && !now.Before(t.nextTry) && t.pod.Status.Phase == corev1.PodPending
}

// retryDue submits the pods whose backoff timers fired, until ctx ends.
func (p *Provider) retryDue(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case uid := <-p.retries:
			p.mu.Lock()
			t, ok := p.pods[uid]
			due := ok && p.dueLocked(t, time.Now())
			p.mu.Unlock()
			if due {
				go p.submit(ctx, uid)
			}
		}
	}
}

func (p *Provider) track(pod *corev1.Pod, jobID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.pods[pod.UID]; ok && jobID == "" {
		t.pod = pod // known already: keep its submission state
		return
	}
	p.pods[pod.UID] = &tracked{pod: pod, jobID: jobID}
	p.byName[key(pod.Namespace, pod.Name)] = pod.UID
}

// fail records a pod that cannot run, with a reason shown in its status.
func (p *Provider) fail(pod *corev1.Pod, reason, msg string) {
	cp := pod.DeepCopy()
	now := metav1.Now()
	cp.Status.Phase, cp.Status.Reason, cp.Status.Message = corev1.PodFailed, reason, msg
	if cp.Status.StartTime == nil {
		cp.Status.StartTime = &now
	}
	cp.Status.HostIP = p.hostIP
	cp.Status.ContainerStatuses = nil
	for _, c := range cp.Spec.Containers {
		cp.Status.ContainerStatuses = append(cp.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}})
	}
	p.mu.Lock()
	t, ok := p.pods[pod.UID]
	if ok {
		t.pod, t.usage = cp, nil
	}
	p.mu.Unlock()
	if ok { // a pod deleted meanwhile stays deleted
		p.pushIfTracked(cp)
	}
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

// UpdatePod accepts the changes Kubernetes allows on a running pod; none of
// them reach the remote side.
func (p *Provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	_, known := p.pods[pod.UID]
	oldUID, named := p.byName[key(pod.Namespace, pod.Name)]
	var old *corev1.Pod
	if !known && named {
		old = p.pods[oldUID].pod.DeepCopy()
	}
	p.mu.Unlock()
	if old != nil {
		// A new pod under a known name (force-deleted and recreated before
		// the delete reached us): end the old pod's job, then create the new.
		if err := p.DeletePod(ctx, old); err != nil {
			return err
		}
		return p.CreatePod(ctx, pod)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.pods[pod.UID]; ok {
		st := t.pod.Status
		t.pod = pod.DeepCopy()
		t.pod.Status = st
		if t.jobID != "" {
			if t.pod.Annotations == nil {
				t.pod.Annotations = map[string]string{}
			}
			t.pod.Annotations[api.AnnotationJobID] = t.jobID
			p.shareSpecLocked(t.pod)
		}
	}
	return nil
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

// DeletePod deletes the pod's job; an error makes the pod controller retry,
// so no job is left running without its pod. A job the sidecar does not know
// is already gone.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	t, known := p.pods[pod.UID]
	var last corev1.PodStatus
	failedBeforeSubmit := false
	if known {
		last = *t.pod.Status.DeepCopy()
		// Failed before any create could have made a job: a create that
		// failed transiently (a timeout) may have made one, so a pod
		// that was retried (tries > 0) is deleted remotely all the same.
		failedBeforeSubmit = t.jobID == "" && !t.submitting && t.tries == 0 && last.Phase == corev1.PodFailed
	}
	p.mu.Unlock()
	if !failedBeforeSubmit {
		// interLink knows the pod without the containers kept out of it.
		if err := p.il.Delete(ctx, offloaded(pod)); err != nil && !api.IsNotFound(err) {
			return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	p.log.Info("pod deleted", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID)
	final := pod.DeepCopy()
	if known {
		final.Status = last
	}
	final.Status = terminate(final.Status, "Deleted", metav1.Now())
	p.mu.Lock()
	delete(p.pods, pod.UID)
	if p.byName[key(pod.Namespace, pod.Name)] == pod.UID {
		delete(p.byName, key(pod.Namespace, pod.Name))
	}
	p.mu.Unlock()
	p.push(final)
	return nil
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

// RunStatus reads the status of every running pod in one call each
// interval, until ctx ends.
func (p *Provider) RunStatus(ctx context.Context) error {
	if p.retries != nil {
		go p.retryDue(ctx)
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.retrySubmits(ctx)
			p.syncStatus(ctx)
		}
	}
}

// statusStreamer is implemented by clients (functions/client) that hand
// each status over as it is decoded, so that a poll of 10,000 pods never
// holds all their statuses at once.
type statusStreamer interface {
	StatusEach(ctx context.Context, pods []*corev1.Pod, fn func(*api.PodStatus)) error
}

// syncStatus polls once. A failed call leaves every pod's last status (but
// for the statuses a streamed reply gave before it failed).
func (p *Provider) syncStatus(ctx context.Context) {
	p.mu.Lock()
	pods := make([]*corev1.Pod, 0, len(p.pods))
	for _, t := range p.pods {
		ph := t.pod.Status.Phase
		if t.jobID != "" && ph != corev1.PodSucceeded && ph != corev1.PodFailed {
			// As sent to /create: without the containers kept out.
			pods = append(pods, offloaded(t.pod))
		}
	}
	p.mu.Unlock()
	if len(pods) == 0 {
		p.lastPoll.Store(time.Now().UnixNano()) // nothing to be stale
		return
	}
	// seen tells, for each pod asked about, whether the reply had it.
	seen := make(map[types.UID]bool, len(pods))
	for _, pod := range pods {
		seen[pod.UID] = false
	}
	now := metav1.Now()
	var changed []*corev1.Pod
	apply := func(st *api.PodStatus) {
		uid := types.UID(st.PodUID)
		if was, asked := seen[uid]; !asked || was {
			return
		}
		seen[uid] = true
		p.mu.Lock()
		defer p.mu.Unlock()
		t, ok := p.pods[uid]
		if !ok || st.Error != nil {
			return // deleted meanwhile, or its sidecar failed: keep the last status
		}
		t.missing = 0
		next := podStatus(t.pod, st, p.hostIP, now)
		p.setUsageLocked(t, st.Usage, &next)
		if ip, err := annotatedPodIP(t.pod, p.podNet); err != nil {
			p.log.Warn("pod IP annotation ignored", "pod", t.pod.Name, "namespace", t.pod.Namespace, "err", err)
		} else if ip != "" {
			// The original's pod-ip annotation: the pod's address.
			next.PodIP, next.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		}
		if equality.Semantic.DeepEqual(next, t.pod.Status) {
			return
		}
		if next.Phase == corev1.PodRunning && t.pod.Status.Phase != corev1.PodRunning && p.metrics != nil {
			p.metrics.createToRunning.Observe(now.Sub(t.pod.CreationTimestamp.Time).Seconds())
		}
		// Tracked pods are never changed in place: the new one shares its
		// metadata and spec with the last.
		cp := *t.pod
		cp.Status = next
		t.pod = &cp
		changed = append(changed, &cp)
	}
	pollStart := time.Now()
	var err error
	if ss, ok := p.il.(statusStreamer); ok {
		err = ss.StatusEach(ctx, pods, apply)
	} else {
		var sts []api.PodStatus
		if sts, err = p.il.Status(ctx, pods); err == nil {
			for i := range sts {
				apply(&sts[i])
			}
		}
	}
	if p.metrics != nil {
		p.metrics.pollDuration.Observe(time.Since(pollStart).Seconds())
		if err != nil {
			p.metrics.pollErrors.Inc()
		}
	}
	if err != nil {
		p.log.Warn("status poll failed; pods keep their last status", "pods", len(pods), "err", err)
	} else {
		p.lastPoll.Store(time.Now().UnixNano())
		// Only a whole reply tells which pods the sidecar no longer knows.
		p.mu.Lock()
		for _, pod := range pods {
			t, ok := p.pods[pod.UID]
			if seen[pod.UID] || !ok {
				continue
			}
			t.missing++
			if t.missing < missingPolls {
				continue
			}
			cp := t.pod.DeepCopy()
			cp.Status = terminate(cp.Status, "JobLost", now)
			cp.Status.Reason, cp.Status.Message = "JobLost", fmt.Sprintf("the sidecar has no job %s for this pod", t.jobID)
			t.pod, t.usage = cp, nil
			changed = append(changed, cp)
			p.log.Warn("pod's job lost by its sidecar", "pod", pod.Name, "namespace", pod.Namespace, "job_id", t.jobID)
		}
		p.mu.Unlock()
	}
	for _, pod := range changed {
		p.pushIfTracked(pod)
	}
}

// GetContainerLogs streams logs from the pod's sidecar through interLink.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	pod, err := p.GetPod(ctx, namespace, podName)
	if err != nil {
		return nil, err
	}
	req := &api.LogStruct{Namespace: namespace, PodName: podName, PodUID: string(pod.UID), ContainerName: containerName,
		Opts: api.ContainerLogOpts{Tail: opts.Tail, LimitBytes: opts.LimitBytes, Timestamps: opts.Timestamps, Follow: opts.Follow,
			Previous: opts.Previous, SinceSeconds: opts.SinceSeconds, SinceTime: opts.SinceTime}}
	rc, err := p.il.Logs(ctx, pod.Annotations[api.AnnotationSidecar], req)
	if api.IsNotFound(err) {
		return nil, errdefs.AsNotFound(err)
	}
	if api.ReasonOf(err) == api.ReasonInvalid {
		return nil, errdefs.AsInvalidInput(err)
	}
	return rc, err
}

var errNoExec = errdefs.InvalidInput("this virtual node's sidecars do not offer attach or port-forward")

// RunInContainer runs a command through the pod's sidecar (kubectl exec).
// Standard input and terminals are not supported yet; a non-zero exit code
// reaches kubectl as the command's exit code.
func (p *Provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach vkapi.AttachIO) error {
	if attach.Stdin() != nil {
		return errdefs.InvalidInput("exec with standard input (-i) is not supported by this virtual node yet; run the command without -i/-t")
	}
	pod, err := p.GetPod(ctx, namespace, podName)
	if err != nil {
		return err
	}
	out := io.Writer(io.Discard)
	if w := attach.Stdout(); w != nil {
		out = w
	} else if w := attach.Stderr(); w != nil {
		out = w
	}
	req := &api.ExecRequest{Namespace: namespace, PodName: podName, PodUID: string(pod.UID), ContainerName: containerName, Command: cmd}
	code, err := p.il.Exec(ctx, pod.Annotations[api.AnnotationSidecar], req, out)
	switch {
	case api.IsNotFound(err):
		return errdefs.AsNotFound(err)
	case api.ReasonOf(err) == api.ReasonInvalid || api.ReasonOf(err) == api.ReasonNotImplemented:
		return errdefs.AsInvalidInput(err)
	case err != nil:
		return err
	case code != 0:
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// AttachToContainer is not offered by the sidecars yet.
func (p *Provider) AttachToContainer(context.Context, string, string, string, vkapi.AttachIO) error {
	return errNoExec
}

// PortForward is not offered by the sidecars yet.
func (p *Provider) PortForward(context.Context, string, string, int32, io.ReadWriteCloser) error {
	return errNoExec
}
