package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// statusBody creates n pods on the sim behind h's default sidecar and returns
// a /status body listing them, as a VK sends it.
func statusBody(b *testing.B, url string, n int) []byte {
	b.Helper()
	pods := make([]corev1.Pod, n)
	for i := range pods {
		pods[i] = testPod(fmt.Sprintf("bench-%d", i), "")
		raw, _ := json.Marshal(api.PodCreateRequests{Pod: pods[i]})
		resp, err := http.Post(url+api.PathCreate, "application/json", bytes.NewReader(raw))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("create: %d", resp.StatusCode)
		}
	}
	raw, err := json.Marshal(pods)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkStatus10kPods measures one /status call with 10,000 pods: the
// handler decodes the batch, sends it to the sim sidecar over loopback HTTP
// in one call, and encodes the merged reply.
func BenchmarkStatus10kPods(b *testing.B) {
	c, _ := sidecarServer(b, newSim(b), false)
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"sim": c}, Default: "sim", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := statusBody(b, srv.URL, 10_000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, api.PathStatus, bytes.NewReader(body)))
		if rec.Code != 200 {
			b.Fatalf("status: %d %s", rec.Code, rec.Body.String()[:200])
		}
	}
}
