package functions

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/functions/client"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// withUsage is a sidecar whose statuses carry usage (sim reports none).
type withUsage struct {
	*sim.Sidecar
	usage api.PodUsage
}

func (w *withUsage) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	st, err := w.Sidecar.Status(ctx, pods)
	for i := range st {
		u := w.usage
		st[i].Usage = &u
	}
	return st, err
}

// TestStatusPassesUsageThrough: the usage extension of a sidecar's status
// reply reaches the VK's client unchanged, whether interLink forwards the
// sidecar's JSON as it came (an HTTP sidecar) or decodes and encodes it
// again (a sidecar called as a Plugin); an original VK gets it too.
func TestStatusPassesUsageThrough(t *testing.T) {
	// Nanoseconds, a zone, a rate left unknown (nil) beside one known:
	// whatever a round trip could change.
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	usage := api.PodUsage{Time: at, Containers: []api.ContainerUsage{
		{Name: "main", StartTime: at.Add(-time.Hour), CPUCoreNanoSeconds: 1<<53 + 1, CPUNanoCores: ptr.To(uint64(250_000_000)), MemoryWorkingSetBytes: 1 << 40},
		{Name: "side", StartTime: at.Add(-time.Minute), CPUCoreNanoSeconds: 7, MemoryWorkingSetBytes: 4096},
	}}
	overHTTP := &withUsage{Sidecar: newSim(t), usage: usage}
	httpClient, _ := sidecarServer(t, overHTTP, false)
	direct := &withUsage{Sidecar: newSim(t), usage: usage}
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"http": httpClient, "direct": direct}, Default: "http", MaxBodyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	var pods []*corev1.Pod
	for _, sc := range []string{"http", "direct"} {
		p := testPod("p-"+sc, sc)
		if code, body := do(t, http.MethodPost, srv.URL+api.PathCreate, api.PodCreateRequests{Pod: p}, true); code != http.StatusOK {
			t.Fatalf("create on %s: %d %s", sc, code, body)
		}
		pods = append(pods, &p)
	}
	check := func(who string, st []api.PodStatus) {
		t.Helper()
		if len(st) != len(pods) {
			t.Fatalf("%s got %d statuses, want %d", who, len(st), len(pods))
		}
		for _, s := range st {
			if s.Usage == nil {
				t.Errorf("%s: pod %s lost its usage", who, s.PodName)
				continue
			}
			// Equal to the nanosecond and in the same zone offset, not just
			// the same instant.
			if d := cmp.Diff(usage, *s.Usage); d != "" || s.Usage.Time.Format(time.RFC3339Nano) != at.Format(time.RFC3339Nano) {
				t.Errorf("%s: pod %s usage changed (-sent +got):\n%s", who, s.PodName, d)
			}
		}
	}

	vk, err := client.New(client.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	st, err := vk.Status(context.Background(), pods)
	if err != nil {
		t.Fatal(err)
	}
	check("VK client", st)

	var original []api.PodStatus
	code, body := do(t, http.MethodGet, srv.URL+api.PathStatus, []corev1.Pod{*pods[0], *pods[1]}, false)
	if err := json.Unmarshal(body, &original); code != http.StatusOK || err != nil {
		t.Fatalf("original VK's status: %d %v %s", code, err, body)
	}
	check("original VK", original)
}
