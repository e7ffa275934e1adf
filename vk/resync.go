package vk

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Resync: a status the pod controller was handed but never wrote.
//
// virtual-kubelet's pod controller writes each status it is pushed through
// a queue that forgets an item after 20 failed writes, skips a status equal
// to the last one it was handed (so pushing it again does nothing), and
// drops one for a pod it does not know yet. A pod whose write was lost
// would keep its old state in the API server for good while the provider,
// having pushed, sees nothing to do. Each poll compares the API server's
// view (the informer) with the provider's; a difference older than
// statusResyncAfter is written by the provider itself, once per version of
// the pod in the API server, at most maxResyncsPerPoll pods a poll.

// statusResyncAfter is how long the API server may show a pod in another
// state than the provider's before the provider writes its status itself.
// The pod controller writes a status within a second when the API server
// keeps up; this leaves its queue and retries ample time in a burst.
const statusResyncAfter = 60 * time.Second

// maxResyncsPerPoll bounds the writes of one resync, so that a long lag of
// the pod controller's queue (thousands of pods) costs the API server
// little more.
const maxResyncsPerPoll = 32

// resync writes the status of each tracked pod whose state in the informer
// has differed from the provider's for p.resyncAfter (at now).
func (p *Provider) resync(ctx context.Context, now time.Time) {
	if p.podLister == nil {
		return
	}
	var again []*corev1.Pod
	p.mu.Lock()
	for uid, t := range p.pods {
		ip, err := p.podLister.Pods(t.pod.Namespace).Get(t.pod.Name)
		if err != nil || ip.UID != uid || ip.DeletionTimestamp != nil || sameState(&ip.Status, &t.pod.Status) {
			t.driftSince = time.Time{}
			continue
		}
		if t.driftSince.IsZero() {
			t.driftSince = now
		}
		if now.Sub(t.driftSince) < p.resyncAfter || (t.resent && t.resentAt == ip.ResourceVersion) || len(again) == maxResyncsPerPoll {
			continue
		}
		// The API server's metadata (a label set since is kept) with the
		// job ID annotation, which rides on status writes, and the
		// provider's status; pods/status ignores the spec.
		cp := &corev1.Pod{TypeMeta: ip.TypeMeta, ObjectMeta: ip.ObjectMeta, Status: t.pod.Status}
		if t.jobID != "" && ip.Annotations[api.AnnotationJobID] != t.jobID {
			cp.Annotations = withJobID(ip.Annotations, t.jobID)
		}
		t.resent, t.resentAt = true, ip.ResourceVersion
		again = append(again, cp)
		p.log.Warn("pod's status in the API server lags the provider's; writing it",
			"pod", cp.Name, "namespace", cp.Namespace, "uid", uid, "api_phase", ip.Status.Phase, "phase", cp.Status.Phase,
			"lag_seconds", now.Sub(t.driftSince).Seconds())
	}
	p.mu.Unlock()
	for _, pod := range again {
		p.metrics.resends.Inc()
		if _, err := p.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			// A conflict means the pod changed: the next poll compares again.
			p.metrics.writeErrors.Inc()
			p.log.Warn("writing a lagging pod status failed", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID, "err", err)
		}
	}
}

// sameState tells whether two statuses of a pod agree on what a reader
// acts on: phase, reason, IP, and each container's state, readiness and
// restarts. Times are left out: the API server keeps them to the second.
func sameState(a, b *corev1.PodStatus) bool {
	return a.Phase == b.Phase && a.Reason == b.Reason && a.PodIP == b.PodIP &&
		sameContainers(a.InitContainerStatuses, b.InitContainerStatuses) &&
		sameContainers(a.ContainerStatuses, b.ContainerStatuses)
}

func sameContainers(a, b []corev1.ContainerStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Name != y.Name || x.Ready != y.Ready || x.RestartCount != y.RestartCount || stateOf(x.State) != stateOf(y.State) {
			return false
		}
		if x.State.Terminated != nil && x.State.Terminated.ExitCode != y.State.Terminated.ExitCode {
			return false
		}
	}
	return true
}

// stateOf names a container state's kind, with a waiting container's
// reason.
func stateOf(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Terminated != nil:
		return "terminated"
	case s.Waiting != nil:
		return "waiting:" + s.Waiting.Reason
	default:
		return ""
	}
}
