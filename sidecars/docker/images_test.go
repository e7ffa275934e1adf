package docker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// fakeEngine is the little of the Docker Engine API a pull needs; its
// pulls last until release is closed.
func fakeEngine(t *testing.T, release <-chan struct{}, pulls *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.44")
		switch {
		case r.URL.Path == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			_, _ = w.Write([]byte("[]"))
		case strings.HasSuffix(r.URL.Path, "/images/create"):
			pulls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
				_, _ = w.Write([]byte(`{"status":"Downloaded newer image"}` + "\n"))
			case <-r.Context().Done():
			}
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestPullOutlivesItsCreate checks that a pull goes on when the create
// that started it stops waiting (a 503 then), and that the retried create
// waits for the same pull instead of starting another.
func TestPullOutlivesItsCreate(t *testing.T) {
	release := make(chan struct{})
	var pulls atomic.Int32
	srv := fakeEngine(t, release, &pulls)
	d := onEngine(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := d.pull(ctx, "registry.example.org/big/image:1", nil, false)
	cancel()
	if api.ReasonOf(err) != api.ReasonUnavailable || !strings.Contains(err.Error(), "still being pulled") {
		t.Fatalf("a create that stops waiting: %v, want a 503 saying the pull goes on", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.pull(context.Background(), "registry.example.org/big/image:1", nil, false) }()
	time.Sleep(200 * time.Millisecond)
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the retried create: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the retried create did not get the pull's end")
	}
	if n := pulls.Load(); n != 1 {
		t.Errorf("%d pulls reached the engine, want 1 (the retry waits for the first)", n)
	}
}
