package functions

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// FuzzHandler sends arbitrary bodies to every path: the handler must never
// panic or answer 5xx for bad input (the sidecar here is the in-process sim,
// which is always up). Seeds are in testdata/fuzz/FuzzHandler.
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), []byte(`{"pod":{"metadata":{"name":"a","namespace":"b","uid":"c"},"spec":{"containers":[{"name":"m"}]}}}`))
	f.Add(uint8(2), []byte(`[{"metadata":{"name":"a","namespace":"b","uid":"c"}}]`))
	f.Add(uint8(3), []byte(`{"Namespace":"a","PodUID":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d","PodName":"p","ContainerName":"m","Opts":{"Tail":1}}`))
	s := newSim(f)
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"sim": s}, Default: "sim", MaxBodyBytes: 1 << 16, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	paths := []string{api.PathCreate, api.PathDelete, api.PathStatus, api.PathLogs, api.PathUpdateCache, api.PathExec, api.PathPing}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		method := http.MethodPost
		if path == api.PathDelete {
			method = http.MethodDelete
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		ctx, cancel := context.WithTimeout(req.Context(), time.Second) // followed logs end
		defer cancel()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code >= 500 {
			t.Errorf("%s %s with %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
	})
}
