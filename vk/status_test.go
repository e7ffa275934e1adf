package vk

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// statusPod is a pod with an init container and two containers, with the
// status given.
func statusPod(st corev1.PodStatus) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers: []corev1.Container{{Name: "a", Image: "img-a"}, {Name: "b", Image: "img-b"}}},
		Status: st}
}

var minuteAgo = metav1.NewTime(now.Add(-time.Minute))

// runningStatus is a Running pod whose container a runs, b waits.
func runningStatus() corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "10.0.0.1", StartTime: &minuteAgo,
		InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: minuteAgo, FinishedAt: minuteAgo}}}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "a", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: minuteAgo}}},
			{Name: "b", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}}
}

func waiting(name, image, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Image: image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
}

func TestFailedStatus(t *testing.T) {
	nowCopy := now
	cases := []struct {
		name string
		pod  *corev1.Pod
		want corev1.PodStatus
	}{
		{"new pod: started now, on this node", statusPod(corev1.PodStatus{Phase: corev1.PodPending}),
			corev1.PodStatus{Phase: corev1.PodFailed, Reason: "ProviderFailed", Message: "refused", StartTime: &nowCopy, HostIP: "10.0.0.9",
				ContainerStatuses: []corev1.ContainerStatus{waiting("a", "img-a", "ProviderFailed", "refused"), waiting("b", "img-b", "ProviderFailed", "refused")}}},
		{"a start time, init statuses and conditions are kept; container statuses replaced", statusPod(runningStatus()),
			func() corev1.PodStatus {
				s := runningStatus()
				s.Phase, s.Reason, s.Message, s.HostIP = corev1.PodFailed, "ProviderFailed", "refused", "10.0.0.9"
				s.ContainerStatuses = []corev1.ContainerStatus{waiting("a", "img-a", "ProviderFailed", "refused"), waiting("b", "img-b", "ProviderFailed", "refused")}
				return s
			}()},
		{"no containers: no container statuses", &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "gone"}}}},
			corev1.PodStatus{Phase: corev1.PodFailed, Reason: "ProviderFailed", Message: "refused", StartTime: &nowCopy, HostIP: "10.0.0.9"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.pod.DeepCopy()
			got := failedStatus(c.pod, "10.0.0.9", "ProviderFailed", "refused", now)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("status (-want +got):\n%s", d)
			}
			if d := cmp.Diff(before, c.pod); d != "" {
				t.Errorf("the pod given was changed (-before +after):\n%s", d)
			}
		})
	}
}

func TestRetryStatus(t *testing.T) {
	const pull = `image "nope:1" is not at this site`
	cases := []struct {
		name  string
		st    corev1.PodStatus
		err   error
		tries int
		want  corev1.PodStatus
	}{
		{"interLink down: Pending with SubmissionRetry, statuses kept", corev1.PodStatus{Phase: corev1.PodPending, StartTime: &minuteAgo},
			api.Unavailable("connection refused"), 1,
			corev1.PodStatus{Phase: corev1.PodPending, Reason: "SubmissionRetry", Message: "waiting for interLink: connection refused", StartTime: &minuteAgo}},
		{"a later try keeps the reason", corev1.PodStatus{Phase: corev1.PodPending, Reason: "SubmissionRetry", Message: "waiting for interLink: old"},
			api.Unavailable("timeout"), 4,
			corev1.PodStatus{Phase: corev1.PodPending, Reason: "SubmissionRetry", Message: "waiting for interLink: timeout"}},
		{"missing image, first try: ErrImagePull", corev1.PodStatus{Phase: corev1.PodPending, Reason: "SubmissionRetry", Message: "waiting for interLink: x"},
			api.ImageNotFound(pull), 1,
			corev1.PodStatus{Phase: corev1.PodPending,
				InitContainerStatuses: []corev1.ContainerStatus{waiting("init", "busybox", "ErrImagePull", pull)},
				ContainerStatuses:     []corev1.ContainerStatus{waiting("a", "img-a", "ErrImagePull", pull), waiting("b", "img-b", "ErrImagePull", pull)}}},
		{"missing image, a later try: ImagePullBackOff", corev1.PodStatus{Phase: corev1.PodPending},
			api.ImageNotFound(pull), 2,
			corev1.PodStatus{Phase: corev1.PodPending,
				InitContainerStatuses: []corev1.ContainerStatus{waiting("init", "busybox", "ImagePullBackOff", pull)},
				ContainerStatuses:     []corev1.ContainerStatus{waiting("a", "img-a", "ImagePullBackOff", pull), waiting("b", "img-b", "ImagePullBackOff", pull)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := statusPod(c.st)
			before := pod.DeepCopy()
			got := retryStatus(pod, c.err, c.tries)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("status (-want +got):\n%s", d)
			}
			if d := cmp.Diff(before, pod); d != "" {
				t.Errorf("the pod given was changed (-before +after):\n%s", d)
			}
		})
	}
}

func TestJobLostStatus(t *testing.T) {
	const msg = "the sidecar has no job job-7 for this pod"
	cases := []struct {
		name string
		st   corev1.PodStatus
		want corev1.PodStatus
	}{
		{"running: containers terminated as JobLost, pod Failed and not ready", runningStatus(),
			corev1.PodStatus{Phase: corev1.PodFailed, Reason: "JobLost", Message: msg, HostIP: "10.0.0.1", StartTime: &minuteAgo,
				InitContainerStatuses: runningStatus().InitContainerStatuses,
				ContainerStatuses: []corev1.ContainerStatus{
					{Name: "a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "JobLost", StartedAt: minuteAgo, FinishedAt: now}}},
					{Name: "b", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "JobLost", StartedAt: now, FinishedAt: now}}}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}, {Type: corev1.ContainersReady, Status: corev1.ConditionFalse},
					{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}}},
		{"pending without statuses: Failed with the reason", corev1.PodStatus{Phase: corev1.PodPending},
			corev1.PodStatus{Phase: corev1.PodFailed, Reason: "JobLost", Message: msg}},
		{"a Succeeded phase is kept; the reason is set", corev1.PodStatus{Phase: corev1.PodSucceeded},
			corev1.PodStatus{Phase: corev1.PodSucceeded, Reason: "JobLost", Message: msg}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := *c.st.DeepCopy()
			got := jobLostStatus(c.st, "job-7", now)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("status (-want +got):\n%s", d)
			}
			if d := cmp.Diff(before, c.st); d != "" {
				t.Errorf("the status given was changed (-before +after):\n%s", d)
			}
		})
	}
}
