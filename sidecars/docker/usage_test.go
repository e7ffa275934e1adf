package docker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// statsEngine is a fake Docker Engine API with the containers of pods: it
// lists them (once listed is set, so that New resumes no pod), inspects
// them, and answers their one-shot stats (a 500 for a container without
// stats), counting the stats calls by container.
type statsEngine struct {
	delay time.Duration // of each stats answer

	mu       sync.Mutex
	listed   bool
	ctrs     []*fakeCtr
	calls    map[string]int
	inflight int
	maxIn    int
	bad      []string // stats queries other than one-shot
}

type fakeCtr struct {
	id     string
	labels map[string]string
	state  container.State
	stats  *container.StatsResponse
}

func (e *statsEngine) find(id string) *fakeCtr {
	for _, c := range e.ctrs {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (e *statsEngine) serve(t *testing.T) *Sidecar {
	t.Helper()
	e.calls = map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		p := r.URL.Path
		id := ""
		if parts := strings.Split(p, "/"); len(parts) >= 4 && parts[len(parts)-3] == "containers" {
			id = parts[len(parts)-2]
		}
		switch {
		case p == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(p, "/containers/json"):
			e.mu.Lock()
			defer e.mu.Unlock()
			items := []container.Summary{}
			for _, c := range e.ctrs {
				if e.listed {
					items = append(items, container.Summary{ID: c.id, Labels: c.labels, State: c.state.Status, Image: "busybox"})
				}
			}
			_ = json.NewEncoder(w).Encode(items)
		case strings.HasSuffix(p, "/stats"):
			e.mu.Lock()
			q := r.URL.Query()
			if q.Get("stream") != "false" || q.Get("one-shot") != "true" {
				e.bad = append(e.bad, r.URL.RawQuery)
			}
			e.calls[id]++
			e.inflight++
			e.maxIn = max(e.maxIn, e.inflight)
			var st *container.StatsResponse
			if c := e.find(id); c != nil {
				st = c.stats
			}
			e.mu.Unlock()
			time.Sleep(e.delay)
			e.mu.Lock()
			e.inflight--
			e.mu.Unlock()
			if st == nil {
				http.Error(w, `{"message":"stats trouble"}`, http.StatusInternalServerError)
				return
			}
			_ = json.NewEncoder(w).Encode(st)
		case strings.HasSuffix(p, "/json") && id != "":
			e.mu.Lock()
			defer e.mu.Unlock()
			c := e.find(id)
			if c == nil {
				http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
				return
			}
			st := c.state
			_ = json.NewEncoder(w).Encode(container.InspectResponse{ID: c.id, State: &st, HostConfig: &container.HostConfig{}, Config: &container.Config{Labels: c.labels}})
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	d := onEngine(t, srv)
	e.mu.Lock()
	e.listed = true
	e.mu.Unlock()
	return d
}

// set changes a container of the engine.
func (e *statsEngine) set(id string, f func(c *fakeCtr)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e.find(id))
}

func (e *statsEngine) statsCalls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

const (
	run0 = "2026-01-02T03:04:05.000000006Z"
	run1 = "2026-01-02T03:06:00Z"
	mib  = 1 << 20
)

var read0 = time.Date(2026, 1, 2, 3, 5, 0, 7, time.UTC)

func at(s string) time.Time { t, _ := time.Parse(time.RFC3339Nano, s); return t }

func running(startedAt string) container.State {
	return container.State{Status: container.StateRunning, Running: true, StartedAt: startedAt}
}

// cgroupV1 is a stats answer of Docker on cgroup v1: usage counts the page
// cache, total_inactive_file (hierarchical) is what the kubelet subtracts.
func cgroupV1(read time.Time, cpu, usage, inactive uint64) *container.StatsResponse {
	return &container.StatsResponse{Read: read, CPUStats: container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: cpu}},
		MemoryStats: container.MemoryStats{Usage: usage, Stats: map[string]uint64{"total_inactive_file": inactive, "inactive_file": inactive / 2, "rss": usage / 4}}}
}

// cgroupV2 is a stats answer of Docker on cgroup v2 (memory.stat's keys).
func cgroupV2(read time.Time, cpu, usage, inactive uint64) *container.StatsResponse {
	return &container.StatsResponse{Read: read, CPUStats: container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: cpu}},
		MemoryStats: container.MemoryStats{Usage: usage, Stats: map[string]uint64{"inactive_file": inactive, "active_file": 1 * mib, "anon": usage / 2}}}
}

func podLabels(name, role string) map[string]string {
	return map[string]string{LabelUID: "uid-1", LabelNamespace: "ns", LabelName: "p", LabelContainer: name, LabelRole: role, LabelIndex: "0"}
}

var usagePod = corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "uid-1", Name: "p", Namespace: "ns"}}

// newStatsEngine has one pod: its pause container and an init container
// (both never sampled), c0 running on cgroup v1, c1 exited, c2 running
// whose stats fail, c3 running on cgroup v2, c4 running but answered with
// Docker's empty sample.
func newStatsEngine() *statsEngine {
	exited := container.State{Status: container.StateExited, StartedAt: run0, FinishedAt: "2026-01-02T03:04:06Z"}
	return &statsEngine{ctrs: []*fakeCtr{
		{id: "pause000000000000", labels: podLabels("pause", rolePause), state: running(run0), stats: cgroupV1(read0, 1, mib, 0)},
		{id: "init0000000000000", labels: podLabels("i0", roleInit), state: exited, stats: cgroupV1(read0, 1, mib, 0)},
		{id: "c0000000000000000", labels: podLabels("c0", roleApp), state: running(run0), stats: cgroupV1(read0, 1_500_000_000, 100*mib, 30*mib)},
		{id: "c1000000000000000", labels: podLabels("c1", roleApp), state: exited, stats: &container.StatsResponse{}},
		{id: "c2000000000000000", labels: podLabels("c2", roleApp), state: running(run0)},
		{id: "c3000000000000000", labels: podLabels("c3", roleApp), state: running(run0), stats: cgroupV2(read0.Add(-time.Millisecond), 2_000_000, 50*mib, 8*mib)},
		{id: "c4000000000000000", labels: podLabels("c4", roleApp), state: running(run0), stats: &container.StatsResponse{}},
	}}
}

func statusUsage(t *testing.T, d *Sidecar) *api.PodUsage {
	t.Helper()
	st, err := d.Status(context.Background(), []corev1.Pod{usagePod})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || len(st[0].Containers) != 5 || len(st[0].InitContainers) != 1 {
		t.Fatalf("statuses %+v, want the pod's 5 containers and its init container", st)
	}
	return st[0].Usage
}

// TestUsage: a running app container's usage comes from one one-shot stats
// call: cumulative CPU, working set (cgroup v1 and v2), the run's start, at
// the sample's read time; no rate until the run's second sample, which
// gives the right one. Containers not running, or whose stats fail or are
// empty, have none, and Status still answers.
func TestUsage(t *testing.T) {
	e := newStatsEngine()
	d := e.serve(t)
	d.usageEvery = 0

	want := &api.PodUsage{Time: read0, Containers: []api.ContainerUsage{
		{Name: "c0", StartTime: at(run0), CPUCoreNanoSeconds: 1_500_000_000, MemoryWorkingSetBytes: 70 * mib},
		{Name: "c3", StartTime: at(run0), CPUCoreNanoSeconds: 2_000_000, MemoryWorkingSetBytes: 42 * mib},
	}}
	if diff := cmp.Diff(want, statusUsage(t, d)); diff != "" {
		t.Errorf("first sample (-want +got):\n%s", diff)
	}
	calls := map[string]int{"c0000000000000000": 1, "c2000000000000000": 1, "c3000000000000000": 1, "c4000000000000000": 1}
	if diff := cmp.Diff(calls, e.statsCalls()); diff != "" {
		t.Errorf("stats calls (-want +got):\n%s", diff)
	}

	// 2.5 s later c0 used 1 s of CPU more (0.4 core), c3 3 ms (1.2 millicores).
	e.set("c0000000000000000", func(c *fakeCtr) {
		c.stats = cgroupV1(read0.Add(2500*time.Millisecond), 2_500_000_000, 120*mib, 200*mib)
	})
	e.set("c3000000000000000", func(c *fakeCtr) {
		c.stats = cgroupV2(read0.Add(2499*time.Millisecond), 5_000_000, 60*mib, 10*mib)
	})
	want = &api.PodUsage{Time: read0.Add(2500 * time.Millisecond), Containers: []api.ContainerUsage{
		{Name: "c0", StartTime: at(run0), CPUCoreNanoSeconds: 2_500_000_000, CPUNanoCores: ptr(uint64(400_000_000)), MemoryWorkingSetBytes: 0},
		{Name: "c3", StartTime: at(run0), CPUCoreNanoSeconds: 5_000_000, CPUNanoCores: ptr(uint64(1_200_000)), MemoryWorkingSetBytes: 50 * mib},
	}}
	if diff := cmp.Diff(want, statusUsage(t, d)); diff != "" {
		t.Errorf("second sample (-want +got):\n%s", diff)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.bad) > 0 {
		t.Errorf("stats queries %q, want stream=false&one-shot=true", e.bad)
	}
}

// TestUsageCache: within the usage interval Status reuses the last sample
// (and a failed call is not retried); after it, it samples again.
func TestUsageCache(t *testing.T) {
	e := newStatsEngine()
	d := e.serve(t)
	d.usageEvery = time.Hour
	first := statusUsage(t, d)
	e.set("c0000000000000000", func(c *fakeCtr) {
		c.stats = cgroupV1(read0.Add(time.Second), 2_500_000_000, 100*mib, 0)
	})
	for range 5 {
		if diff := cmp.Diff(first, statusUsage(t, d)); diff != "" {
			t.Fatalf("within the interval (-first +got):\n%s", diff)
		}
	}
	calls := map[string]int{"c0000000000000000": 1, "c2000000000000000": 1, "c3000000000000000": 1, "c4000000000000000": 1}
	if diff := cmp.Diff(calls, e.statsCalls()); diff != "" {
		t.Errorf("stats calls after 6 status calls (-want +got):\n%s", diff)
	}

	d.usageEvery = 0
	u := statusUsage(t, d)
	if c := u.Containers[0]; c.Name != "c0" || c.CPUCoreNanoSeconds != 2_500_000_000 || c.CPUNanoCores == nil || *c.CPUNanoCores != 1_000_000_000 {
		t.Errorf("after the interval: %+v, want c0's new sample with a rate of 1 core", c)
	}
	if n := e.statsCalls()["c0000000000000000"]; n != 2 {
		t.Errorf("%d stats calls of c0, want 2", n)
	}
}

// TestUsageRestart: a new run of a container is sampled at once, even
// within the interval, and its rate starts over: none on its first sample,
// then one from the new run's counter only.
func TestUsageRestart(t *testing.T) {
	e := newStatsEngine()
	d := e.serve(t)
	d.usageEvery = time.Hour
	statusUsage(t, d)

	e.set("c0000000000000000", func(c *fakeCtr) {
		c.state = running(run1)
		// The new run's counter is above the old one's: no rate still.
		c.stats = cgroupV1(read0.Add(time.Minute), 2_000_000_000, 10*mib, 0)
	})
	got := statusUsage(t, d).Containers[0]
	want := api.ContainerUsage{Name: "c0", StartTime: at(run1), CPUCoreNanoSeconds: 2_000_000_000, MemoryWorkingSetBytes: 10 * mib}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the new run's first sample (-want +got):\n%s", diff)
	}

	d.usageEvery = 0
	e.set("c0000000000000000", func(c *fakeCtr) {
		c.stats = cgroupV1(read0.Add(time.Minute+4*time.Second), 2_200_000_000, 10*mib, 0)
	})
	got = statusUsage(t, d).Containers[0]
	want.CPUCoreNanoSeconds, want.CPUNanoCores = 2_200_000_000, ptr(uint64(50_000_000))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the new run's second sample (-want +got):\n%s", diff)
	}
}

// TestUsageForgotten: a container's samples go when it stops running, when
// Docker destroys it, and when it is no longer listed.
func TestUsageForgotten(t *testing.T) {
	e := newStatsEngine()
	d := e.serve(t)
	d.usageEvery = time.Hour
	statusUsage(t, d)
	cached := func() []string {
		d.mu.Lock()
		defer d.mu.Unlock()
		var ids []string
		for _, id := range []string{"c0000000000000000", "c2000000000000000", "c3000000000000000", "c4000000000000000"} {
			if d.usage[id] != nil {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if diff := cmp.Diff([]string{"c0000000000000000", "c2000000000000000", "c3000000000000000", "c4000000000000000"}, cached()); diff != "" {
		t.Fatalf("cached (-want +got):\n%s", diff)
	}

	e.set("c0000000000000000", func(c *fakeCtr) {
		c.state = container.State{Status: container.StateExited, StartedAt: run0, FinishedAt: run1}
	})
	u := statusUsage(t, d)
	if len(u.Containers) != 1 || u.Containers[0].Name != "c3" {
		t.Errorf("usage %+v, want c3's only once c0 exited", u)
	}
	d.record(events.Message{Type: events.ContainerEventType, Action: events.ActionDestroy, Actor: events.Actor{ID: "c2000000000000000"}})
	if diff := cmp.Diff([]string{"c3000000000000000", "c4000000000000000"}, cached()); diff != "" {
		t.Errorf("cached after c2's destroy event (-want +got):\n%s", diff)
	}
	// c4 removed without an event the sidecar saw.
	e.mu.Lock()
	e.ctrs = slices.DeleteFunc(e.ctrs, func(c *fakeCtr) bool { return c.id == "c2000000000000000" || c.id == "c4000000000000000" })
	e.mu.Unlock()
	if _, err := d.Status(context.Background(), []corev1.Pod{usagePod}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"c3000000000000000"}, cached()); diff != "" {
		t.Errorf("cached once c4 is no longer listed (-want +got):\n%s", diff)
	}
	d.forget("c3000000000000000")
	if ids := cached(); len(ids) != 0 {
		t.Errorf("cached %v after the pod's deletion", ids)
	}
}

// TestUsageConcurrency: the stats calls of a status request run at most
// inspectConcurrency at a time, and every running app container gets one.
func TestUsageConcurrency(t *testing.T) {
	e := &statsEngine{delay: 20 * time.Millisecond}
	for i := range 20 {
		id := "c" + strings.Repeat(string(rune('a'+i)), 16)
		e.ctrs = append(e.ctrs, &fakeCtr{id: id, labels: podLabels(id[:3], roleApp), state: running(run0), stats: cgroupV2(read0, uint64(i+1), mib, 0)})
	}
	d := e.serve(t)
	st, err := d.Status(context.Background(), []corev1.Pod{usagePod})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Usage == nil || len(st[0].Usage.Containers) != 20 {
		t.Fatalf("statuses %+v, want the usage of 20 containers", st)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.calls) != 20 || e.maxIn > inspectConcurrency {
		t.Errorf("stats calls %v, %d at once; want 20, at most %d at once", e.calls, e.maxIn, inspectConcurrency)
	}
}

// TestWorkingSet: usage less the inactive file pages, as the kubelet
// counts it, on cgroup v1 (the hierarchical total) and v2.
func TestWorkingSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    container.MemoryStats
		want uint64
	}{
		{name: "V1", m: container.MemoryStats{Usage: 100, Stats: map[string]uint64{"total_inactive_file": 30, "inactive_file": 10}}, want: 70},
		{name: "V2", m: container.MemoryStats{Usage: 100, Stats: map[string]uint64{"inactive_file": 10}}, want: 90},
		{name: "InactiveAboveUsage", m: container.MemoryStats{Usage: 100, Stats: map[string]uint64{"inactive_file": 130}}, want: 0},
		{name: "NoStats", m: container.MemoryStats{Usage: 100}, want: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := workingSet(tc.m); got != tc.want {
				t.Errorf("working set %d, want %d", got, tc.want)
			}
		})
	}
}
