package sim

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
)

// fakeClock drives a Sim deterministically.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newSim(t testing.TB) (*Sidecar, *fakeClock) {
	t.Helper()
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	s.now = c.now
	return s, c
}

func simPod(outcome string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: types.UID(uuid.NewString()),
			Annotations: map[string]string{AnnotationOutcome: outcome}},
		Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}, Containers: []corev1.Container{{Name: "main"}, {Name: "side"}}},
	}
}

func TestPhases(t *testing.T) {
	ctx := context.Background()
	s, clock := newSim(t)
	ok, failed, forever := simPod(""), simPod(OutcomeFailed), simPod(OutcomeRunning)
	for _, p := range []*corev1.Pod{ok, failed, forever} {
		if _, err := s.Create(ctx, &api.RetrievedPodData{Pod: *p}); err != nil {
			t.Fatal(err)
		}
	}
	all := []corev1.Pod{*ok, *failed, *forever}
	st, _ := s.Status(ctx, all)
	if st[0].Containers[0].State.Waiting == nil || st[0].InitContainers[0].State.Running == nil {
		t.Errorf("at create: %+v", st[0])
	}
	clock.t = clock.t.Add(100 * time.Millisecond)
	st, _ = s.Status(ctx, all)
	if st[0].Containers[1].State.Running == nil || st[0].InitContainers[0].State.Terminated == nil {
		t.Errorf("after pending delay: %+v", st[0])
	}
	clock.t = clock.t.Add(time.Second)
	st, _ = s.Status(ctx, all)
	if tr := st[0].Containers[0].State.Terminated; tr == nil || tr.ExitCode != 0 || tr.Reason != "Completed" {
		t.Errorf("succeeded pod: %+v", st[0].Containers[0].State)
	}
	if tr := st[1].Containers[0].State.Terminated; tr == nil || tr.ExitCode != 1 {
		t.Errorf("failed pod: %+v", st[1].Containers[0].State)
	}
	if st[2].Containers[0].State.Running == nil {
		t.Errorf("running pod: %+v", st[2].Containers[0].State)
	}
}

func TestCreateErrors(t *testing.T) {
	s, _ := newSim(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, &api.RetrievedPodData{Pod: *simPod(OutcomeCreateError)}); api.ReasonOf(err) != api.ReasonUnavailable {
		t.Errorf("create-error outcome: %v", err)
	}
	if _, err := s.Create(ctx, &api.RetrievedPodData{Pod: *simPod("explode")}); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), AnnotationOutcome) {
		t.Errorf("unknown outcome: %v", err)
	}
	if s.Len() != 0 {
		t.Errorf("failed creates left %d pods", s.Len())
	}
}

func TestLogOptions(t *testing.T) {
	ctx := context.Background()
	s, clock := newSim(t)
	p := simPod("")
	if _, err := s.Create(ctx, &api.RetrievedPodData{Pod: *p}); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(time.Minute)
	read := func(o api.ContainerLogOpts) string {
		rc, err := s.Logs(ctx, &api.LogRequest{Namespace: "ns", PodName: "p", PodUID: string(p.UID), ContainerName: "main", Opts: o})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	all := read(api.ContainerLogOpts{})
	// 500ms run at 100ms interval: start, ticks 1-4, exit.
	if n := strings.Count(all, "\n"); n != 6 || !strings.Contains(all, "exited with code 0") {
		t.Errorf("full log has %d lines: %q", n, all)
	}
	if tail := read(api.ContainerLogOpts{Tail: 2}); strings.Count(tail, "\n") != 2 || !strings.HasSuffix(tail, "exited with code 0\n") {
		t.Errorf("tail 2: %q", tail)
	}
	if b := read(api.ContainerLogOpts{LimitBytes: 5}); len(b) != 5 {
		t.Errorf("limit 5 bytes gave %d", len(b))
	}
	if ts := read(api.ContainerLogOpts{Timestamps: true, Tail: 1}); !strings.HasPrefix(ts, "2026-11-25T10:00:00.55Z ") {
		t.Errorf("timestamps: %q", ts)
	}
	if since := read(api.ContainerLogOpts{SinceTime: clock.t.Add(-time.Minute + 320*time.Millisecond)}); strings.Count(since, "\n") != 3 {
		t.Errorf("since: %q", since)
	}
	if _, err := s.Logs(ctx, &api.LogRequest{Namespace: "ns", PodName: "p", PodUID: string(p.UID), ContainerName: "nope"}); !api.IsNotFound(err) {
		t.Errorf("unknown container: %v", err)
	}
}

// BenchmarkHold100kPods measures the memory the sim needs per pod; the
// target is 100,000 pods in under 200 MB (reported as MB/100k-pods).
func BenchmarkHold100kPods(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s, _ := newSim(b)
		for i := range 100_000 {
			p := corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "bench", UID: types.UID(uuid.NewString())},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}},
			}
			if _, err := s.Create(ctx, &api.RetrievedPodData{Pod: p}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "MB/100k-pods")
		runtime.KeepAlive(s)
	}
}
