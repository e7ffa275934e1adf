//go:build e2e

package vk_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver on loopback: the binaries
// export their spans to it, the test reads them back.
type otlpReceiver struct {
	url string
	mu  sync.Mutex
	// services by trace ID, and span names by trace ID.
	services map[string]map[string]bool
	names    map[string][]string
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{url: "http://" + ln.Addr().String(), services: map[string]map[string]bool{}, names: map[string][]string{}}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
		if err != nil || req.URL.Path != "/v1/traces" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var msg coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					id := string(sp.GetTraceId())
					if r.services[id] == nil {
						r.services[id] = map[string]bool{}
					}
					r.services[id][service] = true
					r.names[id] = append(r.names[id], service+": "+sp.GetName())
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// traceAcross returns the span names of a trace that holds a CreatePod span
// of the VK and spans of every service listed, waiting up to timeout.
func (r *otlpReceiver) traceAcross(timeout time.Duration, services ...string) []string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for id, got := range r.services {
			all := true
			for _, s := range services {
				all = all && got[s]
			}
			hasCreate := false
			for _, n := range r.names[id] {
				hasCreate = hasCreate || n == "interlink-vk: CreatePod"
			}
			if all && hasCreate {
				names := append([]string{}, r.names[id]...)
				r.mu.Unlock()
				return names
			}
		}
		r.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// dump describes what the receiver holds, for a failure message.
func (r *otlpReceiver) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := fmt.Sprintf("%d traces:", len(r.names))
	n := 0
	for _, names := range r.names {
		if n++; n > 15 {
			break
		}
		out += fmt.Sprintf("\n  %v", names)
	}
	return out
}
