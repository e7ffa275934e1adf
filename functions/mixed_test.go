package functions

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/functions/client"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Ping replies of the original plugins to the status call for no pod that
// the original interLink sends as its ping (GET /status, body []), as their
// code writes them: no version header; a Content-Type only where they set
// one.
var originalPingReplies = []struct {
	name, contentType, body string
}{
	// The SLURM plugin since 0.6.2: a PingResponse, counts as strings.
	{"slurm-object", "application/json", `{"status":"ok","resources":{"cpu":"128","memory":"512000Mi","accelerators":[{"resourceType":"nvidia.com/gpu","available":"8"}]}}` + "\n"},
	// The Docker plugin, and the SLURM plugin up to 0.5.0: a nil list.
	{"docker-null", "", "null"},
	// An empty status list.
	{"empty-array", "application/json", "[]"},
	// The SLURM plugin from 0.5.1 to 0.6.2: the text of sinfo -s.
	{"slurm-sinfo-text", "text/plain", "PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T) NODELIST\ndebug*       up   infinite        0/1/0/1 node1\n"},
}

// originalPlugin serves a ping reply as an original plugin and records the
// requests it got.
type originalPlugin struct {
	mu       sync.Mutex
	requests []string
}

func (o *originalPlugin) serve(t *testing.T, contentType, body string) *sidecars.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		o.mu.Lock()
		o.requests = append(o.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(b))
		o.mu.Unlock()
		if r.URL.Path != api.PathStatus {
			http.Error(w, "not in this fixture", http.StatusNotFound)
			return
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMixedOurInterlinkInFrontOfOriginalPlugins: our interlink in front of
// each kind of original plugin, and of all of them at once, answers
// /pinglink 200 with every sidecar up; only the object reply gives
// resources. Each plugin was pinged as the original interLink pings it.
func TestMixedOurInterlinkInFrontOfOriginalPlugins(t *testing.T) {
	all := map[string]Sidecar{}
	plugins := map[string]*originalPlugin{}
	for _, r := range originalPingReplies {
		o := &originalPlugin{}
		plugins[r.name] = o
		c := o.serve(t, r.contentType, r.body)
		all[r.name] = c
		t.Run(r.name, func(t *testing.T) {
			ping := pingThrough(t, map[string]Sidecar{r.name: c}, r.name)
			if ping.Status != api.PingOK || len(ping.Sidecars) != 1 || !ping.Sidecars[0].Up {
				t.Errorf("ping %+v, want ok with the sidecar up", ping)
			}
			if got := ping.Resources != nil && ping.Resources.CPU != ""; got != (r.name == "slurm-object") {
				t.Errorf("resources %+v: want resources only from the object reply", ping.Resources)
			}
		})
	}
	ping := pingThrough(t, all, "slurm-object")
	if ping.Status != api.PingOK || len(ping.Sidecars) != len(originalPingReplies) {
		t.Errorf("ping of all %+v, want ok with all up", ping)
	}
	if ping.Resources == nil || ping.Resources.CPU != "128" || len(ping.Resources.Accelerators) != 1 || ping.Resources.Accelerators[0].Available != 8 {
		t.Errorf("resources %+v, want the SLURM plugin's 128 CPUs and 8 GPUs", ping.Resources)
	}
	for name, o := range plugins {
		o.mu.Lock()
		for _, r := range o.requests {
			if r != "GET /status application/json []\n" && r != "GET /status application/json []" {
				t.Errorf("plugin %s was pinged with %q, want GET /status with the body [] as the original interLink sends", name, r)
			}
		}
		o.mu.Unlock()
	}
}

// pingThrough serves our handler in front of scs and pings it.
func pingThrough(t *testing.T, scs map[string]Sidecar, def string) api.PingResponse {
	t.Helper()
	h, err := New(HandlerConfig{Sidecars: scs, Default: def})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, body := do(t, http.MethodPost, srv.URL+api.PathPing, nil, false)
	if code != http.StatusOK {
		t.Fatalf("/pinglink: %d %s", code, body)
	}
	var out api.PingResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("/pinglink reply %s: %v", body, err)
	}
	return out
}

// TestMixedOurVKInFrontOfOriginalInterlink: our VK's client against an API
// server that answers as the original interLink does: /pinglink passes
// the plugin's reply through (any of the plugins' forms, and interLink
// 0.3's "0"), and every reply lacks our version header. The ping is
// healthy each time; resources come from an object only.
func TestMixedOurVKInFrontOfOriginalInterlink(t *testing.T) {
	replies := append([]struct{ name, contentType, body string }{{"interlink-0.3", "", "0"}}, originalPingReplies...)
	for _, r := range replies {
		t.Run(r.name, func(t *testing.T) {
			var method string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.URL.Path != api.PathPing {
					http.NotFound(w, req)
					return
				}
				method = req.Method
				if r.contentType != "" {
					w.Header().Set("Content-Type", r.contentType)
				}
				_, _ = io.WriteString(w, r.body)
			}))
			defer srv.Close()
			c, err := client.New(client.Config{URL: srv.URL, Retries: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := c.Ping(ctx)
			if err != nil {
				t.Fatalf("ping of an original interLink answering %q: %v", r.body, err)
			}
			if method != http.MethodPost {
				t.Errorf("pinged with %s, want POST as the original VK", method)
			}
			if got := res.Resources != nil; got != strings.HasPrefix(r.body, "{") {
				t.Errorf("resources %+v from %q", res.Resources, r.body)
			}
		})
	}
}
