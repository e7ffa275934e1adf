package docker

import (
	"fmt"
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
	d := &Sidecar{}
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
	cs := containerStatus(app, in, true, h, time.Now())
	if diff := cmp.Diff(&want[0], cs.LastTerminationState.Terminated); diff != "" || cs.RestartCount != 2 {
		t.Errorf("restarts %d, last state (-want +got):\n%s", cs.RestartCount, diff)
	}
	// Never restarted: no last state.
	in.RestartCount = 0
	if cs := containerStatus(app, in, true, h, time.Now()); cs.LastTerminationState.Terminated != nil {
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

// TestLateOOM: Docker may send a run's oom after its die; the run still
// ends OOMKilled, and the next run does not.
func TestLateOOM(t *testing.T) {
	d := &Sidecar{}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := func(action events.Action, ms int, attrs map[string]string) events.Message {
		return events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: "c1", Attributes: attrs},
			TimeNano: base.Add(time.Duration(ms) * time.Millisecond).UnixNano()}
	}
	for _, m := range []events.Message{
		ev(events.ActionStart, 0, nil), ev(events.ActionDie, 1000, map[string]string{"exitCode": "137"}), ev(events.ActionOOM, 1200, nil),
		ev(events.ActionStart, 2000, nil), ev(events.ActionDie, 3000, map[string]string{"exitCode": "137"}), // a kill, no OOM
		ev(events.ActionOOM, 9000, nil), // long after: not that run's
	} {
		d.record(m)
	}
	h := d.historyCopy("c1")
	if len(h.ends) != 2 || h.ends[0].Reason != "OOMKilled" || h.ends[1].Reason != "Error" {
		t.Errorf("ends %+v, want OOMKilled then Error", h.ends)
	}
}

// TestOOMUnsettled: a container with a memory limit SIGKILLed a moment ago
// is still reported running, until Docker could have learnt of an OOM;
// then a SIGKILL the sidecar did not send is an OOM kill.
func TestOOMUnsettled(t *testing.T) {
	end := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	app := container.Summary{ID: "c1", Labels: map[string]string{LabelContainer: "c0", LabelRole: roleApp}}
	for _, tc := range []struct {
		name   string
		code   int
		oom    bool
		memory int64
		after  time.Duration
		killed bool   // by the sidecar (a failed probe)
		want   string // running or the terminated reason
	}{
		{"killed just now", 137, false, 50 << 20, time.Second, false, "running"},
		{"killed a while ago, no OOM reported", 137, false, 50 << 20, oomSettle, false, "OOMKilled"},
		{"stopped by the sidecar", 137, false, 50 << 20, oomSettle, true, "Error"},
		{"OOM known", 137, true, 50 << 20, 0, false, "OOMKilled"},
		{"no memory limit", 137, false, 0, 0, false, "Error"},
		{"other exit code", 1, false, 50 << 20, 0, false, "Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &container.InspectResponse{HostConfig: &container.HostConfig{Resources: container.Resources{Memory: tc.memory}},
				State: &container.State{Status: container.StateExited, ExitCode: tc.code, OOMKilled: tc.oom,
					StartedAt: end.Add(-time.Minute).Format(time.RFC3339Nano), FinishedAt: end.Format(time.RFC3339Nano)}}
			h := history{}
			if tc.killed {
				h.run, h.killed = in.State.StartedAt, "Liveness probe failed"
			}
			cs := containerStatus(app, in, true, h, end.Add(tc.after))
			got := "running"
			if t := cs.State.Terminated; t != nil {
				got = t.Reason
			} else if cs.State.Running == nil {
				got = fmt.Sprintf("%+v", cs.State)
			}
			if got != tc.want {
				t.Errorf("state %s, want %s", got, tc.want)
			}
		})
	}
}
