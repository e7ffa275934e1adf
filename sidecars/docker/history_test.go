package docker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLastState: Docker's events make a restarted container's last state,
// as a kubelet reports it: how the run before the current one ended.
func TestLastState(t *testing.T) {
	d := &Docker{}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := func(action events.Action, sec int, attrs map[string]string) events.Message {
		return events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: "c1", Attributes: attrs},
			TimeNano: base.Add(time.Duration(sec) * time.Second).UnixNano()}
	}
	at := func(sec int) metav1.Time { return metav1.NewTime(base.Add(time.Duration(sec) * time.Second)) }
	for _, m := range []events.Message{
		ev(events.ActionStart, 0, nil), ev(events.ActionDie, 1, map[string]string{"exitCode": "1"}),
		ev(events.ActionStart, 2, nil), ev(events.ActionOOM, 3, nil), ev(events.ActionDie, 3, map[string]string{"exitCode": "137"}),
		ev(events.ActionDie, 3, map[string]string{"exitCode": "137"}), // replayed
		ev(events.ActionStart, 4, nil), ev(events.ActionDie, 5, map[string]string{"exitCode": "0"}),
	} {
		d.record(m)
	}
	h := d.historyCopy("c1")
	want := []corev1.ContainerStateTerminated{
		{ExitCode: 137, Reason: "OOMKilled", StartedAt: at(2), FinishedAt: at(3)},
		{ExitCode: 0, Reason: "Completed", StartedAt: at(4), FinishedAt: at(5)},
	}
	if diff := cmp.Diff(want, h.ends); diff != "" {
		t.Errorf("ends (-want +got):\n%s", diff)
	}

	// The current run started at 4 s and ended: its last state is the OOM kill.
	app := container.Summary{ID: "c1", Labels: map[string]string{LabelContainer: "c0", LabelRole: roleApp}}
	in := &container.InspectResponse{RestartCount: 2, HostConfig: &container.HostConfig{},
		State: &container.State{Status: container.StateExited, StartedAt: at(4).Format(time.RFC3339Nano), FinishedAt: at(5).Format(time.RFC3339Nano)}}
	cs := containerStatus(app, in, true, h)
	if diff := cmp.Diff(&want[0], cs.LastTerminationState.Terminated); diff != "" || cs.RestartCount != 2 {
		t.Errorf("restarts %d, last state (-want +got):\n%s", cs.RestartCount, diff)
	}
	// Never restarted: no last state.
	in.RestartCount = 0
	if cs := containerStatus(app, in, true, h); cs.LastTerminationState.Terminated != nil {
		t.Errorf("last state %+v of a container that never restarted", cs.LastTerminationState)
	}

	d.record(ev(events.ActionDestroy, 6, nil))
	if h := d.historyCopy("c1"); len(h.ends) != 0 {
		t.Errorf("history kept after the container was removed: %+v", h)
	}
}

// TestRunWindow: the log of a restarted container is cut by time between
// its runs.
func TestRunWindow(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	mt := func(n int) metav1.Time { return metav1.NewTime(ms(n)) }
	inspect := func(restarts, startedMS int) container.InspectResponse {
		return container.InspectResponse{RestartCount: restarts, State: &container.State{Status: container.StateRunning, StartedAt: ms(startedMS).Format(time.RFC3339Nano)}}
	}
	end := func(start, finish int) corev1.ContainerStateTerminated {
		return corev1.ContainerStateTerminated{StartedAt: mt(start), FinishedAt: mt(finish)}
	}
	for _, tc := range []struct {
		name       string
		in         container.InspectResponse
		ends       []corev1.ContainerStateTerminated
		previous   bool
		from, till time.Time
		ok         bool
	}{
		{name: "NeverRestarted", in: inspect(0, 0), ok: true},
		{name: "NeverRestartedPrevious", in: inspect(0, 0), previous: true},
		// The current run starts where the run before it ended (its first
		// lines may be logged before Docker records its start).
		{name: "Current", in: inspect(2, 10000), ends: []corev1.ContainerStateTerminated{end(0, 4000), end(5000, 9900)}, from: ms(9900), ok: true},
		{name: "CurrentShortGap", in: inspect(1, 10000), ends: []corev1.ContainerStateTerminated{end(0, 9960)}, from: ms(9960), ok: true},
		// The end before it unknown (events missed): its start, less a margin.
		{name: "CurrentEndUnknown", in: inspect(2, 10000), from: ms(9950), ok: true},
		{name: "Previous", in: inspect(2, 10000), ends: []corev1.ContainerStateTerminated{end(0, 4000), end(5000, 9900)}, previous: true,
			from: ms(4000), till: ms(9900), ok: true},
		{name: "PreviousFirstRun", in: inspect(1, 10000), ends: []corev1.ContainerStateTerminated{end(0, 9900)}, previous: true,
			till: ms(9900), ok: true},
		{name: "PreviousUnknown", in: inspect(3, 10000), previous: true, till: ms(9950), ok: true},
	} {
		from, till, ok := runWindow(tc.in, tc.ends, tc.previous)
		if !from.Equal(tc.from) || !till.Equal(tc.till) || ok != tc.ok {
			t.Errorf("%s: %v..%v %v, want %v..%v %v", tc.name, from, till, ok, tc.from, tc.till, tc.ok)
		}
	}
}
