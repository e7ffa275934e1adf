package vk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// Submission: what the pod controller's create, update and delete of a pod
// become in interLink, and the retries of a submission that failed.

// CreatePod submits a pod. A pod that already has a job ID (a VK restart)
// is tracked again without a new submission; interLink's create is
// idempotent by pod UID anyway. CreatePod never returns an error for a
// transient failure (the pod controller would fail a pod with restartPolicy
// Never): the pod stays Pending and its submission is retried with backoff.
//
// The pod is the provider's to keep: the pod controller hands over a copy
// of its own (as it does to UpdatePod).
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	if jid := pod.Annotations[api.AnnotationJobID]; jid != "" {
		p.track(pod, jid)
		p.log.Info("pod recovered from its job ID annotation", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID, "job_id", jid)
		return nil
	}
	p.track(pod, "")
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
	var res api.CreateResult
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
	p.recordJob(ctx, t, pod, res.PodJID, log)
}

// recordJob gives the tracked pod t the job ID interLink just gave it, or
// deletes the job when the pod was deleted while the create was in flight.
func (p *Provider) recordJob(ctx context.Context, t *tracked, pod *corev1.Pod, jobID string, log *slog.Logger) {
	p.mu.Lock()
	if p.pods[pod.UID] != t {
		// Deleted while the create was in flight: end the job just made.
		p.mu.Unlock()
		if err := p.il.Delete(ctx, offloaded(pod)); err != nil && !api.IsNotFound(err) {
			log.Warn("pod deleted during its submission; deleting its job failed", "job_id", jobID, "err", err)
		}
		return
	}
	// The job ID annotation reaches the API server with the pod's next
	// status write (the pod controller writes the whole pod we push to
	// pods/status, whose metadata a status update may change): no write of
	// its own. Until then a restarted VK submits the pod again, and
	// interLink's create, idempotent by pod UID, returns the same job.
	t.jobID = jobID
	cp := *t.pod // shares the spec; the annotations are copied
	p.shareSpecLocked(&cp)
	cp.Annotations = withJobID(t.pod.Annotations, jobID)
	t.pod = &cp
	p.mu.Unlock()
}

// withJobID is a copy of a pod's annotations with its job ID: the
// annotation that reaches the API server with the pod's status writes.
func withJobID(annotations map[string]string, jobID string) map[string]string {
	out := make(map[string]string, len(annotations)+1)
	maps.Copy(out, annotations)
	out[api.AnnotationJobID] = jobID
	return out
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
	cp.Status = retryStatus(cp, err, t.tries)
	t.pod = cp
	p.mu.Unlock()
	p.pushIfTracked(cp)
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
		p.inflight.Go(func() { p.submit(ctx, uid) })
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
				p.inflight.Go(func() { p.submit(ctx, uid) })
			}
		}
	}
}

// fail records a pod that cannot run, with a reason shown in its status.
func (p *Provider) fail(pod *corev1.Pod, reason, msg string) {
	cp := pod.DeepCopy()
	cp.Status = failedStatus(cp, p.hostIP, reason, msg, metav1.Now())
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
		// The pod controller's copy is ours to keep (see CreatePod).
		st := t.pod.Status
		t.pod = pod
		t.pod.Status = st
		if t.jobID != "" {
			t.pod.Annotations = withJobID(t.pod.Annotations, t.jobID)
			p.shareSpecLocked(t.pod)
		}
	}
	return nil
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
