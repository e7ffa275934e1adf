package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// TestStatusTrimmedOnlyWhenInterlinkSaysSo: full pods go to an interLink
// that has not set HeaderTrimmedStatus (an original one, or one in front of
// an original plugin); trimmed pods once it has.
func TestStatusTrimmedOnlyWhenInterlinkSaysSo(t *testing.T) {
	trim := false
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
		if trim {
			w.Header().Set(api.HeaderTrimmedStatus, "1")
		}
		_, _ = io.WriteString(w, "[]")
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Annotations: map[string]string{
			api.AnnotationSidecar: "sim", "kubectl.kubernetes.io/last-applied-configuration": "{big}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox", Env: []corev1.EnvVar{{Name: "SECRETISH", Value: "v"}}}},
			Volumes: []corev1.Volume{{Name: "data"}}},
	}
	ctx := context.Background()
	for range 2 { // the first reply says nothing yet
		if _, err := c.Status(ctx, []*corev1.Pod{pod}); err != nil {
			t.Fatal(err)
		}
	}
	trim = true
	for range 2 { // the first reply to carry the header turns it on
		if _, err := c.Status(ctx, []*corev1.Pod{pod}); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{false, false, false, true} {
		full := strings.Contains(bodies[i], "managedFields") && strings.Contains(bodies[i], "SECRETISH") && strings.Contains(bodies[i], "last-applied")
		if full == want {
			t.Errorf("call %d: trimmed %v, want %v: %s", i, !full, want, bodies[i])
		}
		if !strings.Contains(bodies[i], `"uid":"u"`) || !strings.Contains(bodies[i], `"name":"main"`) || !strings.Contains(bodies[i], api.AnnotationSidecar) {
			t.Errorf("call %d lacks what a sidecar reads: %s", i, bodies[i])
		}
	}
	if pod.Annotations["kubectl.kubernetes.io/last-applied-configuration"] == "" || len(pod.ManagedFields) != 1 {
		t.Error("trimming changed the VK's pod")
	}
}

// TestStatusTrimmingEndsWithThePeer: once interLink said it takes trimmed
// pods, an interLink that no longer says so (an original one, which sends
// no version header at all) or one that could not be reached gets full
// pods again: trimming must not outlive the peer that allowed it.
func TestStatusTrimmingEndsWithThePeer(t *testing.T) {
	const (
		ours = iota
		original
		down
	)
	var (
		mu     sync.Mutex
		mode   = ours
		bodies []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		m := mode
		if m != down {
			bodies = append(bodies, string(b))
		}
		mu.Unlock()
		switch m {
		case down: // the connection drops before any reply
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = c.Close()
			}
			return
		case ours:
			w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
			w.Header().Set(api.HeaderTrimmedStatus, "1")
		}
		_, _ = io.WriteString(w, "[]")
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox", Env: []corev1.EnvVar{{Name: "FULL", Value: "v"}}}}}}
	ctx := context.Background()
	status := func() {
		t.Helper()
		if _, err := c.Status(ctx, []*corev1.Pod{pod}); err != nil {
			t.Fatal(err)
		}
	}
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return bodies[len(bodies)-1]
	}
	setMode := func(m int) { mu.Lock(); mode = m; mu.Unlock() }

	status() // learns that interLink takes trimmed pods
	status()
	if strings.Contains(last(), "FULL") {
		t.Fatalf("our interLink got full pods: %s", last())
	}
	setMode(original)
	status() // sent trimmed: nothing said otherwise yet
	status()
	if !strings.Contains(last(), "FULL") {
		t.Errorf("an original interLink (no version header) got trimmed pods after replying without %s: %s", api.HeaderTrimmedStatus, last())
	}

	setMode(ours)
	status()
	status()
	if strings.Contains(last(), "FULL") {
		t.Fatalf("our interLink got full pods: %s", last())
	}
	setMode(down)
	if _, err := c.Status(ctx, []*corev1.Pod{pod}); err == nil {
		t.Fatal("a status call over a dropped connection succeeded")
	}
	setMode(original)
	status()
	if !strings.Contains(last(), "FULL") {
		t.Errorf("the first status call after interLink could not be reached went trimmed (it may be another peer now): %s", last())
	}
}
