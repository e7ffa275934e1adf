package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// counting wraps a plugin and counts the calls that reach it.
type counting struct {
	sidecars.Plugin
	creates, statuses atomic.Int64
}

func (c *counting) Create(ctx context.Context, d *api.RetrievedPodData) (api.CreateResult, error) {
	c.creates.Add(1)
	return c.Plugin.Create(ctx, d)
}

func (c *counting) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	c.statuses.Add(1)
	return c.Plugin.Status(ctx, pods)
}

func (c *counting) Ping(ctx context.Context) (api.PingResponse, error) {
	return c.Plugin.(sidecars.Pinger).Ping(ctx)
}

func (c *counting) Exec(ctx context.Context, req *api.ExecRequest, out io.Writer) (int, error) {
	return c.Plugin.(sidecars.Execer).Exec(ctx, req, out)
}

func newSim(t testing.TB) *sim.Sidecar {
	cfg := sim.DefaultConfig()
	cfg.PendingDelay = config.D(10 * time.Millisecond)
	cfg.RunDuration = config.D(200 * time.Millisecond)
	cfg.LogInterval = config.D(50 * time.Millisecond)
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sidecarServer serves p like a real sidecar and returns a client for it.
// With original=true the server hides our version header, as an original
// plugin would.
func sidecarServer(t testing.TB, p sidecars.Plugin, original bool) (*sidecars.Client, *httptest.Server) {
	t.Helper()
	h := sidecars.NewHandler(p, sidecars.HandlerConfig{})
	hh := http.Handler(h)
	if original {
		hh = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(stripVersion{w}, r)
		})
	}
	srv := httptest.NewServer(hh)
	t.Cleanup(srv.Close)
	c, err := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL, Retries: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

type stripVersion struct{ http.ResponseWriter }

func (s stripVersion) WriteHeader(code int) {
	s.Header().Del(api.HeaderAPIVersion)
	s.ResponseWriter.WriteHeader(code)
}

func (s stripVersion) Write(b []byte) (int, error) {
	s.Header().Del(api.HeaderAPIVersion)
	return s.ResponseWriter.Write(b)
}

func (s stripVersion) Flush() { s.ResponseWriter.(http.Flusher).Flush() }

type env struct {
	url        string
	hpc, cloud *counting
	hpcSrv     *httptest.Server
	reg        *prometheus.Registry
	metrics    *Metrics
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{hpc: &counting{Plugin: newSim(t)}, cloud: &counting{Plugin: newSim(t)}}
	hpcClient, hpcSrv := sidecarServer(t, e.hpc, false)
	cloudClient, _ := sidecarServer(t, e.cloud, false)
	e.hpcSrv = hpcSrv
	e.reg = prometheus.NewPedanticRegistry()
	e.metrics = NewMetrics(e.reg, []string{"hpc", "cloud"})
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"hpc": hpcClient, "cloud": cloudClient}, Default: "hpc", MaxBodyBytes: 1 << 20,
		Metrics: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func testPod(name, sidecar string) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(uuid.NewString()), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}
	if sidecar != "" {
		p.Annotations[api.AnnotationSidecar] = sidecar
	}
	return p
}

// do sends a request the way the original VK does (GET with a body, no
// version header) unless versioned is set.
func do(t *testing.T, method, url string, body any, versioned bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if versioned {
		req.Header.Set(api.HeaderAPIVersion, api.APIVersion)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestCreateRoutesBySidecarAnnotation(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		sidecar string
		want    *counting
	}{{"", e.hpc}, {"hpc", e.hpc}, {"cloud", e.cloud}} {
		before := tt.want.creates.Load()
		pod := testPod("p-"+tt.sidecar+"x", tt.sidecar)
		code, body := do(t, http.MethodPost, e.url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false)
		if code != 200 {
			t.Fatalf("create: %d %s", code, body)
		}
		var res api.CreateResult
		if err := json.Unmarshal(body, &res); err != nil || res.PodUID != string(pod.UID) || res.PodJID == "" {
			t.Errorf("create reply %s (%v)", body, err)
		}
		if tt.want.creates.Load() != before+1 {
			t.Errorf("pod with sidecar %q did not reach its sidecar", tt.sidecar)
		}
	}
}

func TestBadInputIsRejectedAndNotForwarded(t *testing.T) {
	e := newEnv(t)
	noUID := testPod("no-uid", "")
	noUID.UID = ""
	tests := []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		{"malformed JSON", http.MethodPost, api.PathCreate, `{"pod":`, 400, "truncated"},
		{"wrong type", http.MethodPost, api.PathCreate, `{"pod":{"metadata":{"name":["x"]}}}`, 400, "pod.metadata.name"},
		{"no UID", http.MethodPost, api.PathCreate, api.PodCreateRequests{Pod: noUID}, 400, "metadata.uid is empty"},
		{"unknown sidecar", http.MethodPost, api.PathCreate, api.PodCreateRequests{Pod: testPod("x", "nowhere")}, 400, `names no configured sidecar (configured: cloud, hpc)`},
		{"no containers", http.MethodPost, api.PathCreate, api.PodCreateRequests{Pod: func() corev1.Pod { p := testPod("x", ""); p.Spec.Containers = nil; return p }()}, 400, "no containers"},
		{"oversized", http.MethodPost, api.PathCreate, `{"pod":{"metadata":{"name":"` + strings.Repeat("a", 2<<20) + `"}}}`, 413, "larger than"},
		{"status no UID", http.MethodGet, api.PathStatus, []corev1.Pod{noUID}, 400, "no metadata.uid"},
		{"delete no UID", http.MethodDelete, api.PathDelete, noUID, 400, "metadata.uid"},
		{"logs both limits", http.MethodGet, api.PathLogs, api.LogRequest{Namespace: "default", PodUID: uuid.NewString(), PodName: "p", ContainerName: "main", Opts: api.ContainerLogOpts{Tail: 1, LimitBytes: 1}}, 400, "Tail and Bytes"},
		{"logs bad uid", http.MethodGet, api.PathLogs, api.LogRequest{Namespace: "default", PodUID: "123", PodName: "p", ContainerName: "main"}, 400, "not a UUID"},
		{"wrong method", http.MethodPatch, api.PathStatus, "[]", 405, "not allowed"},
		{"unknown path", http.MethodGet, "/nope", nil, 404, "no such path"},
		{"empty body", http.MethodPost, api.PathCreate, nil, 400, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, tt.method, e.url+tt.path, tt.body, false)
			if code != tt.code || !strings.Contains(string(body), tt.want) {
				t.Errorf("got %d %q, want %d containing %q", code, body, tt.code, tt.want)
			}
		})
	}
	if n := e.hpc.creates.Load() + e.cloud.creates.Load() + e.hpc.statuses.Load() + e.cloud.statuses.Load(); n != 0 {
		t.Errorf("%d bad requests reached a sidecar", n)
	}
	// A peer that declared our version gets a typed JSON error.
	code, body := do(t, http.MethodPost, e.url+api.PathCreate, `{`, true)
	var st api.Status
	if err := json.Unmarshal(body, &st); code != 400 || err != nil || st.Reason != api.ReasonInvalid {
		t.Errorf("typed error: %d %s", code, body)
	}
}

func TestOriginalVKCreateBody(t *testing.T) {
	e := newEnv(t)
	raw, err := os.ReadFile("testdata/original_vk_create.json")
	if err != nil {
		t.Fatal(err)
	}
	code, body := do(t, http.MethodPost, e.url+api.PathCreate, string(raw), false)
	if code != 200 || !strings.Contains(string(body), `"PodUID":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d"`) {
		t.Fatalf("create with the original VK's body: %d %s", code, body)
	}
}

func TestStatusBatchFanOutAndFailedSidecar(t *testing.T) {
	e := newEnv(t)
	var pods []corev1.Pod
	for i := range 6 {
		sc := []string{"hpc", "cloud", ""}[i%3]
		p := testPod(fmt.Sprintf("p%d", i), sc)
		if code, body := do(t, http.MethodPost, e.url+api.PathCreate, api.PodCreateRequests{Pod: p}, false); code != 200 {
			t.Fatalf("create: %d %s", code, body)
		}
		pods = append(pods, p)
	}
	hpcBefore, cloudBefore := e.hpc.statuses.Load(), e.cloud.statuses.Load()
	code, body := do(t, http.MethodGet, e.url+api.PathStatus, pods, false)
	var st []api.PodStatus
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || len(st) != 6 {
		t.Fatalf("status: %d %s", code, body)
	}
	if e.hpc.statuses.Load()-hpcBefore != 1 || e.cloud.statuses.Load()-cloudBefore != 1 {
		t.Errorf("one status call per sidecar expected, got hpc %d cloud %d",
			e.hpc.statuses.Load()-hpcBefore, e.cloud.statuses.Load()-cloudBefore)
	}
	// The hpc sidecar goes away: its 4 pods are left out for an original VK,
	// and reported with a reason to a peer that declared our version.
	e.hpcSrv.Close()
	_, body = do(t, http.MethodPost, e.url+api.PathStatus, pods, false)
	st = nil
	_ = json.Unmarshal(body, &st)
	if len(st) != 2 {
		t.Errorf("original VK got %d statuses, want the 2 of the live sidecar: %s", len(st), body)
	}
	_, body = do(t, http.MethodPost, e.url+api.PathStatus, pods, true)
	st = nil
	_ = json.Unmarshal(body, &st)
	failed := 0
	for _, s := range st {
		if s.Error != nil {
			failed++
			if s.Error.Reason != api.ReasonUnavailable || !strings.Contains(s.Error.Message, "sidecar hpc") {
				t.Errorf("error entry %+v", s.Error)
			}
		}
	}
	if len(st) != 6 || failed != 4 {
		t.Errorf("versioned peer got %d entries, %d failed; want 6 and 4", len(st), failed)
	}
}

func TestPingAggregates(t *testing.T) {
	e := newEnv(t)
	code, body := do(t, http.MethodPost, e.url+api.PathPing, nil, false)
	var p api.PingResponse
	if err := json.Unmarshal(body, &p); code != 200 || err != nil {
		t.Fatalf("ping: %d %s", code, body)
	}
	want := api.PingResponse{Status: api.PingOK, Resources: &api.Resources{CPU: "2k", Memory: "8Ti", Pods: "200k"},
		Sidecars: []api.SidecarHealth{{Name: "cloud", Up: true}, {Name: "hpc", Up: true}}}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("ping (-want +got):\n%s", diff)
	}
	e.hpcSrv.Close()
	code, body = do(t, http.MethodPost, e.url+api.PathPing, nil, false)
	p = api.PingResponse{}
	_ = json.Unmarshal(body, &p)
	if code != 200 || p.Status != api.PingDegraded || p.Sidecars[1].Up || p.Sidecars[1].Error == "" || p.Resources.CPU != "1k" {
		t.Errorf("with one sidecar down: %d %s", code, body)
	}
}

func TestPingAllDown(t *testing.T) {
	c, srv := sidecarServer(t, newSim(t), false)
	srv.Close()
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"only": c}, Default: "only"})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, api.PathPing, nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"status":"down"`) {
		t.Errorf("all down: %d %s", rec.Code, rec.Body)
	}
}

func TestCreateInFrontOfOriginalPluginIsIdempotent(t *testing.T) {
	plugin := &counting{Plugin: newSim(t)}
	c, _ := sidecarServer(t, plugin, true)
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"orig": c}, Default: "orig"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	pod := testPod("once", "")
	var jids []string
	for range 2 {
		code, body := do(t, http.MethodPost, srv.URL+api.PathCreate, api.PodCreateRequests{Pod: pod}, false)
		var res api.CreateResult
		_ = json.Unmarshal(body, &res)
		if code != 200 {
			t.Fatalf("create: %d %s", code, body)
		}
		jids = append(jids, res.PodJID)
	}
	if plugin.creates.Load() != 1 || jids[0] != jids[1] {
		t.Errorf("original plugin received %d creates, job IDs %v; want 1 create and one job", plugin.creates.Load(), jids)
	}
}

func TestLogsAcrossSidecarsAndDelete(t *testing.T) {
	e := newEnv(t)
	pod := testPod("logs", "cloud")
	if code, body := do(t, http.MethodPost, e.url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	req := api.LogRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main", Opts: api.ContainerLogOpts{Follow: true}}
	// No sidecar header: the default (hpc) answers NotFound, then cloud.
	code, body := do(t, http.MethodGet, e.url+api.PathLogs, req, false)
	if code != 200 || !strings.Contains(string(body), "started") || !strings.Contains(string(body), "exited with code 0") {
		t.Errorf("followed logs: %d %q", code, body)
	}
	if code, body := do(t, http.MethodDelete, e.url+api.PathDelete, pod, false); code != 200 {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, _ := do(t, http.MethodDelete, e.url+api.PathDelete, pod, false); code != 404 {
		t.Errorf("second delete: %d, want 404", code)
	}
	code, body = do(t, http.MethodPost, e.url+api.PathUpdateCache, pod, false)
	if code != 200 {
		t.Errorf("updateCache: %d %s", code, body)
	}
}

func TestExecThroughInterlink(t *testing.T) {
	e := newEnv(t)
	pod := testPod("exec", "")
	if code, body := do(t, http.MethodPost, e.url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	time.Sleep(50 * time.Millisecond)
	for _, tt := range []struct {
		cmd  []string
		code int
	}{{[]string{"echo", "hi"}, 0}, {[]string{"false"}, 1}} {
		raw, _ := json.Marshal(api.ExecRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main", Command: tt.cmd})
		resp, err := http.Post(e.url+api.PathExec, "application/json", bytes.NewReader(raw)) //nolint:bodyclose // ExecReply closes it
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("exec %v: status %d", tt.cmd, resp.StatusCode)
		}
		var out bytes.Buffer
		code, err := api.ExecReply(resp, &out)
		if err != nil || code != tt.code || !strings.Contains(out.String(), "sim: exec") {
			t.Errorf("exec %v: code %d (want %d), output %q, %v", tt.cmd, code, tt.code, out.String(), err)
		}
	}
	code, body := do(t, http.MethodPost, e.url+api.PathExec, api.ExecRequest{Namespace: "default", PodUID: uuid.NewString(), PodName: "x", ContainerName: "main"}, false)
	if code != 400 || !strings.Contains(string(body), "command is empty") {
		t.Errorf("exec without a command: %d %s", code, body)
	}
}

// blockingLogs streams forever and records when its context ends.
type blockingLogs struct {
	sidecars.Plugin
	canceled chan struct{}
}

func (b *blockingLogs) Logs(ctx context.Context, _ *api.LogRequest) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("first line\n"))
		<-ctx.Done()
		close(b.canceled)
		_ = pw.CloseWithError(ctx.Err())
	}()
	return pr, nil
}

func TestLogsCancelSidecarWhenClientLeaves(t *testing.T) {
	plugin := &blockingLogs{Plugin: newSim(t), canceled: make(chan struct{})}
	c, _ := sidecarServer(t, plugin, false)
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"s": c}, Default: "s"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	raw, _ := json.Marshal(api.LogRequest{Namespace: "default", PodUID: uuid.NewString(), PodName: "p", ContainerName: "main", Opts: api.ContainerLogOpts{Follow: true}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+api.PathLogs, bytes.NewReader(raw))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 11)
	if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "first line\n" {
		t.Fatalf("first line not flushed: %q %v", line, err)
	}
	cancel()
	_ = resp.Body.Close()
	select {
	case <-plugin.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the sidecar's log stream was not canceled when the client went away")
	}
}

// flaky fails its first n status calls with 503.
func TestStatusRetriedOnUnavailable(t *testing.T) {
	s := newSim(t)
	inner := sidecars.NewHandler(s, sidecars.HandlerConfig{})
	var fails atomic.Int64
	fails.Store(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathStatus && fails.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, _ := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL, Retries: 3, Backoff: time.Millisecond})
	h, _ := New(HandlerConfig{Sidecars: map[string]Sidecar{"s": c}, Default: "s"})
	pod := testPod("retry", "")
	if _, err := s.Create(context.Background(), &api.RetrievedPodData{Pod: pod}); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(pod)
	res, err := h.Status(context.Background(), []json.RawMessage{raw})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Statuses) != 1 || len(res.Failed) != 0 {
		t.Errorf("status after one 503: %+v", res)
	}
}

// TestTrimmedStatusOnlyWhenEverySidecarIsOurs: interLink lets the VK trim
// /status pods only once every sidecar has shown our version header; with an
// original plugin among them, pods stay whole.
func TestTrimmedStatusOnlyWhenEverySidecarIsOurs(t *testing.T) {
	ours, _ := sidecarServer(t, newSim(t), false)
	orig, _ := sidecarServer(t, newSim(t), true)
	for _, tt := range []struct {
		name     string
		sidecars map[string]Sidecar
		want     string
	}{
		{"ours only", map[string]Sidecar{"a": ours}, "1"},
		{"with an original plugin", map[string]Sidecar{"a": ours, "b": orig}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(HandlerConfig{Sidecars: tt.sidecars, Default: "a"})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			// The first ping reaches the sidecars; the next reply tells.
			if resp, err := http.Post(srv.URL+api.PathPing, "application/json", nil); err == nil {
				resp.Body.Close()
			}
			resp, err := http.Post(srv.URL+api.PathPing, "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get(api.HeaderTrimmedStatus); got != tt.want {
				t.Errorf("%s=%q, want %q", api.HeaderTrimmedStatus, got, tt.want)
			}
		})
	}
}
