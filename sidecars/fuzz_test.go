package sidecars_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// FuzzHandler sends arbitrary bodies to every path of the sidecar side of
// the protocol (NewHandler, in front of the sim): never a panic, never a
// 5xx for bad input. Seeds are in testdata/fuzz/FuzzHandler.
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), []byte(`{"pod":{"metadata":{"name":"a","namespace":"b","uid":"c"},"spec":{"containers":[{"name":"m"}]}},"container":[{"name":"m"}]}`))
	f.Add(uint8(1), []byte(`{"metadata":{"name":"a","namespace":"b","uid":"c"}}`))
	f.Add(uint8(2), []byte(`[{"metadata":{"name":"a","namespace":"b","uid":"c"}}]`))
	f.Add(uint8(2), []byte(`[]`))
	f.Add(uint8(3), []byte(`{"Namespace":"a","PodUID":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d","PodName":"p","ContainerName":"m","Opts":{"Tail":1}}`))
	f.Add(uint8(4), []byte(`{"namespace":"a","podUID":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d","podName":"p","containerName":"m","command":["ls"]}`))
	s, err := sim.New(sim.DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	h := sidecars.NewHandler(s, sidecars.HandlerConfig{MaxBodyBytes: 1 << 16, Logger: slog.New(slog.DiscardHandler)})
	paths := []string{api.PathCreate, api.PathDelete, api.PathStatus, api.PathLogs, api.PathExec}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		ctx, cancel := context.WithTimeout(req.Context(), time.Second) // followed logs end
		defer cancel()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code >= 500 {
			t.Errorf("POST %s with %q: %d %s", path, body, rec.Code, rec.Body)
		}
	})
}

// FuzzClientReplies has a sidecar answer arbitrary bodies and codes to
// every call of Client (which interLink uses): never a panic, and every
// failure a typed error.
func FuzzClientReplies(f *testing.F) {
	f.Add(200, []byte(`[{"name":"a","UID":"u","namespace":"n","JID":"1","containers":[]}]`))
	f.Add(200, []byte(`{"PodUID":"u","PodJID":"1"}`))
	f.Add(200, []byte(`{"status":"ok","resources":{"cpu":"1"}}`))
	f.Add(500, []byte(`{"error":"x","reason":"Internal"}`))
	f.Add(200, []byte(`[{"name":`))
	type answer struct {
		code int
		body []byte
	}
	var reply atomic.Pointer[answer]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a := reply.Load()
		w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
		w.WriteHeader(a.code)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(srv.Close)
	c, err := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL, Retries: 1, CallTimeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n", UID: "u"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "m"}}}}
	podJSON, err := json.Marshal(pod)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if code < 200 || code > 599 {
			code = 200 + (code%400+400)%400
		}
		reply.Store(&answer{code, body})
		ctx := context.Background()
		check := func(op string, err error) {
			if err != nil && api.ReasonOf(err) == "" {
				t.Errorf("%s with %d %q: untyped error %v", op, code, body, err)
			}
		}
		_, err := c.Status(ctx, []corev1.Pod{pod})
		check("status", err)
		// The raw form interLink forwards batches with.
		_, err = c.StatusRaw(ctx, []json.RawMessage{podJSON})
		check("raw status", err)
		if rc, err := c.Logs(ctx, &api.LogRequest{Namespace: "n", PodUID: "u", PodName: "a", ContainerName: "m"}); err != nil {
			check("logs", err)
		} else {
			_, _ = io.Copy(io.Discard, rc)
			_ = rc.Close()
		}
		_, err = c.Create(ctx, &api.RetrievedPodData{Pod: pod})
		check("create", err)
		_, err = c.Ping(ctx)
		check("ping", err)
		check("delete", c.Delete(ctx, &pod))
	})
}
