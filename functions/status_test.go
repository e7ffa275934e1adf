package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// batchSidecar answers status with one status per pod (JobID "<name>:<pod>"),
// or fails when fail is set, and records the size of each call.
type batchSidecar struct {
	name string
	fail error
	mu   sync.Mutex
	got  []int
}

func (b *batchSidecar) Status(_ context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	b.mu.Lock()
	b.got = append(b.got, len(pods))
	b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	out := make([]api.PodStatus, len(pods))
	for i, p := range pods {
		out[i] = api.PodStatus{PodName: p.Name, PodNamespace: p.Namespace, PodUID: string(p.UID), JobID: b.name + ":" + p.Name}
	}
	return out, nil
}

func (b *batchSidecar) Create(context.Context, *api.RetrievedPodData) (api.CreateResult, error) {
	return api.CreateResult{}, errors.New("not used")
}
func (b *batchSidecar) Delete(context.Context, *corev1.Pod) error { return errors.New("not used") }
func (b *batchSidecar) Logs(context.Context, *api.LogRequest) (io.ReadCloser, error) {
	return nil, errors.New("not used")
}
func (b *batchSidecar) Ping(context.Context) (api.PingResponse, error) {
	return api.PingResponse{}, nil
}

func TestStatusBatchesAndFailures(t *testing.T) {
	hpc := &batchSidecar{name: "hpc"}
	cloud := &batchSidecar{name: "cloud", fail: api.Unavailable("cloud is down")}
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"hpc": hpc, "cloud": cloud}, Default: "hpc", StatusBatchSize: 2,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var pods []json.RawMessage
	add := func(name, sidecar string) {
		ann := ""
		if sidecar != "" {
			ann = fmt.Sprintf(`,"annotations":{%q:%q}`, api.AnnotationSidecar, sidecar)
		}
		pods = append(pods, json.RawMessage(fmt.Sprintf(`{"metadata":{"name":%q,"namespace":"ns","uid":"uid-%s"%s}}`, name, name, ann)))
	}
	for i := range 5 {
		add(fmt.Sprintf("h%d", i), "")
	}
	add("c0", "cloud")
	add("x0", "nowhere")

	res, err := h.Status(context.Background(), pods)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, raw := range res.Statuses {
		var st api.PodStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, st.JobID)
	}
	slices.Sort(jobs)
	if want := []string{"hpc:h0", "hpc:h1", "hpc:h2", "hpc:h3", "hpc:h4"}; !cmp.Equal(jobs, want) {
		t.Errorf("statuses (-got +want):\n%s", cmp.Diff(jobs, want))
	}
	slices.Sort(hpc.got)
	if want := []int{1, 2, 2}; !cmp.Equal(hpc.got, want) {
		t.Errorf("hpc was called with batches of %v, want %v", hpc.got, want)
	}
	type failure struct {
		Name   string
		Reason api.Reason
	}
	var failed []failure
	for _, f := range res.Failed {
		failed = append(failed, failure{f.PodName, f.Error.Reason})
	}
	// The pod of no configured sidecar first, then those of failed calls.
	if want := []failure{{"x0", api.ReasonInvalid}, {"c0", api.ReasonUnavailable}}; !cmp.Equal(failed, want) {
		t.Errorf("failed (-got +want):\n%s", cmp.Diff(failed, want))
	}

	// A pod without a UID fails the whole batch, and no sidecar is asked.
	hpc.got = nil
	_, err = h.Status(context.Background(), []json.RawMessage{pods[0], json.RawMessage(`{"metadata":{"name":"n","namespace":"ns"}}`), json.RawMessage(`7`)})
	want := "invalid status request: pod 1 (ns/n) has no metadata.uid; pod 2: json: cannot unmarshal number into Go value of type functions.podRef"
	if api.ReasonOf(err) != api.ReasonInvalid || err.Error() != want {
		t.Errorf("got %v, want Invalid %q", err, want)
	}
	if hpc.got != nil {
		t.Errorf("an invalid batch reached the sidecar: %v", hpc.got)
	}
}
