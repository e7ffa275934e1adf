package docker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestContainerStatus maps Docker's states as a kubelet reports them.
func TestContainerStatus(t *testing.T) {
	const t0, t1 = "2026-01-02T03:04:05.000000006Z", "2026-01-02T03:04:07Z"
	at := func(s string) metav1.Time { tm, _ := time.Parse(time.RFC3339Nano, s); return metav1.NewTime(tm) }
	const noSuch = `failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/no/such": stat /no/such: no such file or directory: unknown`
	app := container.Summary{ID: "0123456789abcdef", Image: "busybox", Labels: map[string]string{LabelContainer: "c0", LabelRole: roleApp}}
	never, always := container.RestartPolicy{}, container.RestartPolicy{Name: container.RestartPolicyAlways}
	for _, tc := range []struct {
		name     string
		state    container.State
		policy   container.RestartPolicy
		restarts int
		retried  int
		initDone bool
		want     corev1.ContainerStatus
	}{
		{name: "Created", state: container.State{Status: container.StateCreated, StartedAt: "0001-01-01T00:00:00Z"}, initDone: true,
			want: corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}},
		{name: "InitContainersRunning", state: container.State{Status: container.StateCreated},
			want: corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}},
		{name: "Running", state: container.State{Status: container.StateRunning, Running: true, StartedAt: t0}, restarts: 2,
			want: corev1.ContainerStatus{Ready: true, Started: ptr(true), RestartCount: 2,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(t0)}}}},
		{name: "Completed", state: container.State{Status: container.StateExited, StartedAt: t0, FinishedAt: t1},
			want: corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "Completed", StartedAt: at(t0), FinishedAt: at(t1)}}}},
		{name: "Error", state: container.State{Status: container.StateExited, ExitCode: 1, StartedAt: t0, FinishedAt: t1},
			want: corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", StartedAt: at(t0), FinishedAt: at(t1)}}}},
		{name: "OOMKilled", state: container.State{Status: container.StateExited, ExitCode: 137, OOMKilled: true, StartedAt: t0, FinishedAt: t1},
			want: corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "OOMKilled", StartedAt: at(t0), FinishedAt: at(t1)}}}},
		{name: "Restarting", state: container.State{Status: container.StateRestarting, Restarting: true, ExitCode: 3, StartedAt: t0, FinishedAt: t1},
			policy: always, restarts: 4,
			want: corev1.ContainerStatus{RestartCount: 4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "restarting after exit code 3"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error", StartedAt: at(t0), FinishedAt: at(t1)}}}},
		{name: "CannotRun", state: container.State{Status: container.StateCreated, ExitCode: 127, Error: noSuch}, policy: never, initDone: true,
			want: corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 127, Reason: ReasonCannotRun, Message: noSuch}}}},
		{name: "CannotRunWithoutCode", state: container.State{Status: container.StateCreated, Error: "mount failed"}, policy: never,
			want: corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 128, Reason: ReasonCannotRun, Message: "mount failed"}}}},
		{name: "CannotRunRetried", state: container.State{Status: container.StateCreated, ExitCode: 126, Error: "permission denied"}, policy: always, retried: 3,
			want: corev1.ContainerStatus{RestartCount: 3,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
					Message: "back-off restarting a container Docker could not start: permission denied"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 126, Reason: ReasonCannotRun, Message: "permission denied"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &container.InspectResponse{State: &tc.state, HostConfig: &container.HostConfig{RestartPolicy: tc.policy}, RestartCount: tc.restarts}
			got := containerStatus(app, in, tc.initDone, history{retries: tc.retried}, time.Now())
			tc.want.Name, tc.want.Image, tc.want.ContainerID = "c0", "busybox", "docker://0123456789abcdef"
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
