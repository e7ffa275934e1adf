package docker

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// stopEngine is a fake Docker Engine API with one container in state:
// it records the stops (their timeout) and the execs asked.
type stopEngine struct {
	state container.State

	mu     sync.Mutex
	stops  []int // the timeout of each stop, in seconds
	execs  int
	starts int
}

func (e *stopEngine) serve(t *testing.T) *Sidecar {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		p := r.URL.Path
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case p == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(p, "/containers/json"):
			_, _ = w.Write([]byte("[]"))
		case strings.HasSuffix(p, "/stop"):
			n, _ := strconv.Atoi(r.URL.Query().Get("t"))
			e.stops = append(e.stops, n)
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(p, "/start"):
			e.starts++
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(p, "/exec"):
			e.execs++
			http.Error(w, `{"message":"no exec here"}`, http.StatusInternalServerError)
		case strings.Contains(p, "/containers/") && strings.HasSuffix(p, "/json"):
			st := e.state
			_ = json.NewEncoder(w).Encode(container.InspectResponse{ID: "0123456789abcdef", State: &st, HostConfig: &container.HostConfig{}, Config: &container.Config{}})
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	d := onEngine(t, srv)
	return d
}

// TestKillGrace: a run stopped for a failed liveness or startup probe gets
// the probe's terminationGracePeriodSeconds when set, else the pod's (or
// the default); a failed postStart hook the pod's.
func TestKillGrace(t *testing.T) {
	pod, own := int64(20), int64(7)
	withOwn := &corev1.Probe{TerminationGracePeriodSeconds: &own}
	plain := &corev1.Probe{}
	for _, tc := range []struct {
		name string
		l    lifecycle
		kind probe.Kind
		want int64
	}{
		{name: "LivenessOwn", l: lifecycle{Liveness: withOwn, Grace: &pod}, kind: probe.Liveness, want: own},
		{name: "StartupOwn", l: lifecycle{Startup: withOwn, Grace: &pod}, kind: probe.Startup, want: own},
		{name: "LivenessPods", l: lifecycle{Liveness: plain, Startup: withOwn, Grace: &pod}, kind: probe.Liveness, want: pod},
		{name: "PostStartPods", l: lifecycle{Liveness: withOwn, Grace: &pod}, kind: "", want: pod},
		{name: "Default", l: lifecycle{Liveness: plain}, kind: probe.Liveness, want: int64(DefaultGracePeriod / time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.killGrace(tc.kind); got != tc.want {
				t.Errorf("grace %d s, want %d s", got, tc.want)
			}
		})
	}
}

// TestStopRunGrace: the grace period reaches Docker's stop, bounded to
// probe.MaxGracePeriodSeconds (a huge one still runs preStop, then waits at most an hour
// after SIGTERM) and to at least minKillGrace for a kill by the sidecar.
func TestStopRunGrace(t *testing.T) {
	huge := int64(math.MaxInt64)
	preStop := &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	for _, tc := range []struct {
		name      string
		l         lifecycle
		grace     int64
		kill      bool
		min, max  int // the stop's timeout
		wantExecs int
	}{
		{name: "HugePodGraceDelete", l: lifecycle{Lifecycle: preStop}, grace: huge, min: probe.MaxGracePeriodSeconds - 1, max: probe.MaxGracePeriodSeconds, wantExecs: 1},
		{name: "HugeProbeGraceKill", l: lifecycle{Lifecycle: preStop, Liveness: &corev1.Probe{TerminationGracePeriodSeconds: &huge}},
			grace: (&lifecycle{Liveness: &corev1.Probe{TerminationGracePeriodSeconds: &huge}}).killGrace(probe.Liveness),
			kill:  true, min: probe.MaxGracePeriodSeconds - 1, max: probe.MaxGracePeriodSeconds, wantExecs: 1},
		{name: "NegativeDelete", l: lifecycle{Lifecycle: preStop}, grace: -5, min: 0, max: 0},
		{name: "ZeroKill", l: lifecycle{Lifecycle: preStop}, grace: 0, kill: true, min: minKillGrace, max: minKillGrace},
		{name: "ProbeGraceKill", grace: 7, kill: true, min: 6, max: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &stopEngine{state: container.State{Status: container.StateRunning, StartedAt: "2026-01-02T03:04:05Z"}}
			d := e.serve(t)
			if err := d.stopRun(context.Background(), "0123456789abcdef", tc.l, tc.grace, tc.kill); err != nil {
				t.Fatal(err)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if len(e.stops) != 1 || e.stops[0] < tc.min || e.stops[0] > tc.max {
				t.Errorf("stops %v, want one with a timeout within [%d, %d] s", e.stops, tc.min, tc.max)
			}
			if e.execs != tc.wantExecs {
				t.Errorf("%d execs, want %d (the preStop hook)", e.execs, tc.wantExecs)
			}
		})
	}
}

// TestAfterRunRestartedByDocker: a run that Docker restarted before the
// sidecar saw its end leaves its termination message file empty for the
// new run, which must not report the old run's message.
func TestAfterRunRestartedByDocker(t *testing.T) {
	const t0, t1 = "2026-01-02T03:04:05Z", "2026-01-02T03:05:05Z"
	e := &stopEngine{state: container.State{Status: container.StateRunning, StartedAt: t1, FinishedAt: "2026-01-02T03:05:04Z"}}
	d := e.serve(t)
	dir := filepath.Join(d.dataDir, "ns-uid-1", terminationDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c0")
	if err := os.WriteFile(file, []byte("message of the run before"), 0o666); err != nil {
		t.Fatal(err)
	}
	c := container.Summary{ID: "0123456789abcdef", Labels: map[string]string{LabelNamespace: "ns", LabelUID: "uid-1", LabelContainer: "c0", LabelRole: roleApp}}
	kills := 0
	if err := d.afterRun(context.Background(), c, lifecycle{}, t0, "", &kills); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || len(b) != 0 {
		t.Errorf("file %q %v, want it empty for the new run", b, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.starts != 0 || len(e.stops) != 0 {
		t.Errorf("%d starts, %d stops of a container Docker restarted", e.starts, len(e.stops))
	}
}
