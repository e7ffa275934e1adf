package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

func TestFaults(t *testing.T) {
	cfg := sim.DefaultConfig()
	// A window long enough for the first call even on a loaded machine.
	cfg.Faults = sim.Faults{ErrorRate: 1, Duration: config.D(3 * time.Second)}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler(sidecars.NewHandler(s, sidecars.HandlerConfig{})))
	defer srv.Close()
	ping := func() int {
		resp, err := http.Post(srv.URL+"/status", "application/json", bytes.NewReader([]byte("[]")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ping(); code != http.StatusServiceUnavailable {
		t.Errorf("during the fault window: %d, want 503", code)
	}
	time.Sleep(3100 * time.Millisecond)
	if code := ping(); code != http.StatusOK {
		t.Errorf("after the fault window: %d, want 200", code)
	}
	// Set at run time: a delay.
	body, _ := json.Marshal(sim.Faults{Delay: config.D(200 * time.Millisecond)})
	resp, err := http.Post(srv.URL+sim.PathFaults, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	if code := ping(); code != http.StatusOK || time.Since(start) < 200*time.Millisecond {
		t.Errorf("delayed ping: %d after %s", code, time.Since(start))
	}
	if bad, _ := json.Marshal(sim.Faults{ErrorRate: 2}); true {
		resp, err := http.Post(srv.URL+sim.PathFaults, "application/json", bytes.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("error rate 2: %d, want 400", resp.StatusCode)
		}
	}
	st := s.Stats()
	if st.Faulted != 1 || st.Pings != 2 || st.MaxInFlight["/status"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestStateFileKeepsJobsAcrossRestarts(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.StateFile = t.TempDir() + "/state.json"
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	res, err := s.Create(context.Background(), &api.RetrievedPodData{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	again, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := again.Create(context.Background(), &api.RetrievedPodData{Pod: pod})
	if err != nil || res2.PodJID != res.PodJID || again.Stats().JobsCreated != 1 {
		t.Errorf("after a restart: %v %v (jobs %d), want the same job %s", res2, err, again.Stats().JobsCreated, res.PodJID)
	}
}

// TestStatsKeysBounded: calls on paths a client makes up are counted under
// one key, not one key (with up to an hour of per-second counts) each.
func TestStatsKeysBounded(t *testing.T) {
	s, err := sim.New(sim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler(sidecars.NewHandler(s, sidecars.HandlerConfig{})))
	defer srv.Close()
	for i := range 200 {
		resp, err := http.Post(fmt.Sprintf("%s/made-up/%d", srv.URL, i), "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Post(srv.URL+api.PathStatus, "application/json", bytes.NewReader([]byte("[]")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := s.Stats()
	if len(st.MaxInFlight) > 6 || st.MaxInFlight[api.PathStatus] != 1 {
		t.Errorf("%d keys in the call counts, want a few: %v", len(st.MaxInFlight), st.MaxInFlight)
	}
}

// TestOriginalPlugin: as an original plugin the sim hides its protocol
// version (interLink's client then takes its create as not idempotent) and
// makes a second job for a pod it holds, counted as a duplicate.
func TestOriginalPlugin(t *testing.T) {
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	for _, original := range []bool{false, true} {
		cfg := sim.DefaultConfig()
		cfg.OriginalPlugin = original
		s, err := sim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s.Handler(sidecars.NewHandler(s, sidecars.HandlerConfig{})))
		c, err := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		first, err := c.Create(ctx, &api.RetrievedPodData{Pod: pod})
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Create(ctx, &api.RetrievedPodData{Pod: pod})
		if err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if original {
			if c.IdempotentCreate() || first.PodJID == second.PodJID || st.DuplicateJobs != 1 || st.JobsCreated != 2 {
				t.Errorf("original plugin: idempotent %v, jobs %s and %s, stats %+v; want a second job, counted as a duplicate", c.IdempotentCreate(), first.PodJID, second.PodJID, st)
			}
		} else if !c.IdempotentCreate() || first.PodJID != second.PodJID || st.DuplicateJobs != 0 || st.JobsCreated != 1 {
			t.Errorf("default: idempotent %v, jobs %s and %s, stats %+v; want one job", c.IdempotentCreate(), first.PodJID, second.PodJID, st)
		}
		srv.Close()
	}
}
