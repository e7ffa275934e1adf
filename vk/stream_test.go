package vk

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// streamIL is a fake interLink whose streams reach an echoing port.
type streamIL struct {
	*fakeIL
	dialer api.StreamDialer
}

func (s *streamIL) Stream(ctx context.Context, _ string, req *api.StreamRequest) (*api.StreamConn, error) {
	return s.dialer.Dial(ctx, req, nil)
}

func newStreamIL(t *testing.T) *streamIL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, req, err := api.AcceptStream(w, r)
		if err != nil {
			return
		}
		if req.PodUID != "u1" {
			c.End(api.StreamStatus{Error: new(api.StatusOf(api.NotFound("pod uid %q", req.PodUID)))})
			return
		}
		a, b := net.Pipe()
		go func() { _, _ = io.Copy(b, b) }()
		_ = c.Pipe(r.Context(), a, api.ChanStdout, api.ChanStdin)
	}))
	t.Cleanup(srv.Close)
	ep, err := api.ParseEndpoint(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &streamIL{fakeIL: &fakeIL{statuses: map[string]api.PodStatus{}}, dialer: api.StreamDialer{Endpoint: ep}}
}

// TestPortForwardCap forwards through a stream, and refuses one stream
// over the node's cap until a slot is free again.
func TestPortForwardCap(t *testing.T) {
	il := newStreamIL(t)
	p, _ := testProvider(t, il.fakeIL)
	p.il = il
	p.streamSlots = make(chan struct{}, 1)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	p.track(pod, "job-u1")
	ctx := context.Background()

	local, remote := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- p.PortForward(ctx, "ns", "a", 8080, remote) }()
	if _, err := local.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(local, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	// The cap is reached: one more is refused, with its reason.
	_, other := net.Pipe()
	err := p.PortForward(ctx, "ns", "a", 8080, other)
	if err == nil || !strings.Contains(err.Error(), ReasonTooManyStreams) {
		t.Fatalf("a stream over the cap: %v, want %s", err, ReasonTooManyStreams)
	}
	if n := testutil.ToFloat64(p.streamMetrics.ended.WithLabelValues(api.StreamPortForward, ReasonTooManyStreams)); n != 1 {
		t.Errorf("refusals counted %v, want 1", n)
	}
	if n := testutil.ToFloat64(p.streamMetrics.active.WithLabelValues(api.StreamPortForward)); n != 1 {
		t.Errorf("active streams %v, want 1", n)
	}
	_ = local.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end with its client")
	}
	if n := testutil.ToFloat64(p.streamMetrics.active.WithLabelValues(api.StreamPortForward)); n != 0 {
		t.Errorf("active streams %v after the end, want 0", n)
	}
	if n := testutil.ToFloat64(p.streamMetrics.bytes.WithLabelValues(api.StreamPortForward, "in")); n != 5 {
		t.Errorf("bytes in %v, want 5", n)
	}
	// The slot is free again.
	l2, r2 := net.Pipe()
	go func() { done <- p.PortForward(ctx, "ns", "a", 8080, r2) }()
	if _, err := l2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(l2, buf[:1]); err != nil {
		t.Fatal(err)
	}
	_ = l2.Close()
	<-done
}

// TestPortForwardUnknownPod is NotFound, as the kubelet answers.
func TestPortForwardUnknownPod(t *testing.T) {
	il := newStreamIL(t)
	p, _ := testProvider(t, il.fakeIL)
	p.il = il
	_, remote := net.Pipe()
	if err := p.PortForward(context.Background(), "ns", "nope", 80, remote); err == nil {
		t.Fatal("a port-forward to an unknown pod was not refused")
	}
}
