//go:build e2e

package functions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// binDir holds the binaries built once for the e2e tests.
var binDir string

// e2eToken is the static bearer token interlink accepts in these tests.
const e2eToken = "e2e-static-token-0123456789abcdef" //nolint:gosec // a test token for a loopback server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "interlink-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/interlink", "../sidecars/sim/cmd/interlink-sim")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a daemon started by a test and stopped by PID at its end.
// proc is one daemon of a test.
type proc = e2eenv.Process

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return e2eenv.StartProcess(t, filepath.Join(t.TempDir(), name+".log"), env, append([]string{filepath.Join(binDir, name)}, args...)...)
}

// waitFor polls fn until it succeeds or 20 s pass.
func waitFor(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type stack struct {
	url      string
	cloudSim *proc
}

// startStack starts two sims (one on a unix socket, one on TCP) and
// interlink in front of them, configured with the original's env vars plus
// our multi-sidecar one.
func startStack(t *testing.T) *stack {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "hpc.sock")
	simEnv := []string{"INTERLINK_SIM_PENDING_DELAY=200ms", "INTERLINK_SIM_RUN_DURATION=1s", "INTERLINK_SIM_LOG_INTERVAL=200ms"}
	start(t, "interlink-sim", append(simEnv, "INTERLINK_SIM_LISTEN=unix://"+sock))
	cloudPort := e2eenv.FreePort(t)
	cloud := start(t, "interlink-sim", append(simEnv, "INTERLINK_SIM_LISTEN=127.0.0.1:"+cloudPort))
	port := e2eenv.FreePort(t)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(e2eToken+",vk-e2e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "InterLinkConfig.yaml")
	if err := os.WriteFile(cfg, []byte("InterlinkAddress: http://127.0.0.1\nCallTimeout: 10s\nRetries: 2\nAuth:\n  StaticTokensFile: "+tokens+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "interlink", []string{
		"INTERLINKCONFIGPATH=" + cfg,
		"INTERLINKPORT=" + port,
		"INTERLINK_SIDECARS=hpc=unix://" + sock + ",cloud=http://127.0.0.1:" + cloudPort,
		"INTERLINK_DEFAULT_SIDECAR=hpc",
	})
	s := &stack{url: "http://127.0.0.1:" + port, cloudSim: cloud}
	waitFor(t, "interlink and both sims up", func() error {
		code, body := call(t, http.MethodPost, s.url+api.PathPing, nil, false)
		if code != 200 || !strings.Contains(string(body), `"status":"ok"`) {
			return fmt.Errorf("ping: %d %s", code, body)
		}
		return nil
	})
	return s
}

// call sends a request as the original VK does (GET with a JSON body, a
// bearer token, a session header, no version header) unless versioned.
func call(t *testing.T, method, url string, body any, versioned bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
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
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	req.Header.Set(api.HeaderSession, "Test#"+uuid.NewString()[:8])
	if versioned {
		req.Header.Set(api.HeaderAPIVersion, api.APIVersion)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func pod(name, sidecar string) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e", UID: types.UID(uuid.NewString()), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}
	if sidecar != "" {
		p.Annotations[api.AnnotationSidecar] = sidecar
	}
	return p
}

func statuses(t *testing.T, url string, pods []corev1.Pod, versioned bool) []api.PodStatus {
	t.Helper()
	code, body := call(t, http.MethodGet, url+api.PathStatus, pods, versioned)
	if code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	var st []api.PodStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("status reply %s: %v", body, err)
	}
	return st
}

// TestE2EOriginalVKFlow drives every path with the bodies and methods the
// original VK sends, against real processes.
func TestE2EOriginalVKFlow(t *testing.T) {
	s := startStack(t)
	raw, err := os.ReadFile("testdata/original_vk_create.json")
	if err != nil {
		t.Fatal(err)
	}
	var orig api.PodCreateRequests
	if err := json.Unmarshal(raw, &orig); err != nil {
		t.Fatal(err)
	}
	// A fresh UID so reruns never collide; the rest is the original's body.
	uid := uuid.NewString()
	raw = bytes.ReplaceAll(raw, []byte(orig.Pod.UID), []byte(uid))
	code, body := call(t, http.MethodPost, s.url+api.PathCreate, raw, false)
	var created api.CreateResult
	if err := json.Unmarshal(body, &created); code != 200 || err != nil || created.PodUID != uid || created.PodJID == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	p := orig.Pod
	p.UID = types.UID(uid)

	waitFor(t, "pod terminated", func() error {
		st := statuses(t, s.url, []corev1.Pod{p}, false)
		if len(st) != 1 || st[0].JobID != created.PodJID {
			return fmt.Errorf("status %+v", st)
		}
		if len(st[0].InitContainers) != 1 || len(st[0].Containers) != 1 || st[0].Containers[0].State.Terminated == nil {
			return fmt.Errorf("not terminated yet: %+v", st[0].Containers)
		}
		if code := st[0].Containers[0].State.Terminated.ExitCode; code != 0 {
			t.Fatalf("exit code %d", code)
		}
		return nil
	})

	logReq := api.LogRequest{Namespace: p.Namespace, PodUID: uid, PodName: p.Name, ContainerName: "main", Opts: api.ContainerLogOpts{Timestamps: true}}
	code, body = call(t, http.MethodGet, s.url+api.PathLogs, logReq, false)
	if code != 200 || !strings.Contains(string(body), "sim: container main of pod default/test-pod started") {
		t.Errorf("logs: %d %q", code, body)
	}
	logReq.Opts = api.ContainerLogOpts{Follow: true}
	code, body = call(t, http.MethodGet, s.url+api.PathLogs, logReq, false)
	if code != 200 || !strings.Contains(string(body), "exited with code 0") {
		t.Errorf("followed logs of an ended container: %d %q", code, body)
	}
	if code, body := call(t, http.MethodPost, s.url+api.PathUpdateCache, p, false); code != 200 {
		t.Errorf("updateCache: %d %s", code, body)
	}
	if code, body := call(t, http.MethodDelete, s.url+api.PathDelete, p, false); code != 200 {
		t.Errorf("delete: %d %s", code, body)
	}
	if st := statuses(t, s.url, []corev1.Pod{p}, false); len(st) != 0 {
		t.Errorf("status after delete: %+v", st)
	}
	if code, _ := call(t, http.MethodDelete, s.url+api.PathDelete, p, false); code != 404 {
		t.Errorf("delete of a deleted pod: %d, want 404", code)
	}
}

// TestE2EBatchAcrossSidecars creates pods on both sidecars, reads them in one
// batched call, then stops one sidecar: its pods are reported unavailable,
// never as gone, and the ping says which sidecar is down.
func TestE2EBatchAcrossSidecars(t *testing.T) {
	s := startStack(t)
	var pods []corev1.Pod
	for i := range 40 {
		p := pod(fmt.Sprintf("batch-%d", i), []string{"hpc", "cloud"}[i%2])
		if code, body := call(t, http.MethodPost, s.url+api.PathCreate, api.PodCreateRequests{Pod: p}, true); code != 200 {
			t.Fatalf("create: %d %s", code, body)
		}
		pods = append(pods, p)
	}
	if st := statuses(t, s.url, pods, true); len(st) != 40 {
		t.Fatalf("batched status: %d entries, want 40", len(st))
	}
	// The sidecar is chosen by annotation: a pod created on cloud is unknown to hpc.
	hpcOnly := pods[1]
	hpcOnly.Annotations = nil
	if st := statuses(t, s.url, []corev1.Pod{hpcOnly}, true); len(st) != 0 {
		t.Errorf("the default sidecar knows a pod created on another: %+v", st)
	}

	s.cloudSim.Stop(syscall.SIGTERM)
	st := statuses(t, s.url, pods, true)
	var ok, failed int
	for _, e := range st {
		if e.Error != nil {
			failed++
			if e.Error.Reason != api.ReasonUnavailable {
				t.Errorf("failed entry reason %s", e.Error.Reason)
			}
		} else {
			ok++
		}
	}
	if ok != 20 || failed != 20 {
		t.Errorf("with cloud down: %d ok, %d failed; want 20 and 20", ok, failed)
	}
	if old := statuses(t, s.url, pods, false); len(old) != 20 {
		t.Errorf("an original VK got %d entries, want only the 20 known", len(old))
	}
	code, body := call(t, http.MethodPost, s.url+api.PathPing, nil, false)
	var ping api.PingResponse
	_ = json.Unmarshal(body, &ping)
	if code != 200 || ping.Status != api.PingDegraded || len(ping.Sidecars) != 2 || ping.Sidecars[0].Up {
		t.Errorf("ping with cloud down: %d %s", code, body)
	}
}

func TestE2EBadInput(t *testing.T) {
	s := startStack(t)
	// Without the token, nothing gets through.
	req, _ := http.NewRequest(http.MethodPost, s.url+api.PathCreate, strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("request without a token: %d", resp.StatusCode)
	}
	noUID := pod("no-uid", "")
	noUID.UID = ""
	tests := []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		{"malformed", http.MethodPost, api.PathCreate, []byte(`{"pod": ]}`), 400, "malformed JSON"},
		{"wrong type", http.MethodPost, api.PathCreate, []byte(`{"pod": {"spec": {"containers": "x"}}}`), 400, `"pod.spec.containers"`},
		{"no uid", http.MethodPost, api.PathCreate, api.PodCreateRequests{Pod: noUID}, 400, "metadata.uid is empty"},
		{"unknown sidecar", http.MethodPost, api.PathCreate, api.PodCreateRequests{Pod: pod("x", "mars")}, 400, `"mars" names no configured sidecar`},
		{"oversized", http.MethodPost, api.PathCreate, []byte(`{"pod":"` + strings.Repeat("x", 129<<20) + `"}`), 413, "larger than"},
		{"contradictory logs", http.MethodGet, api.PathLogs, api.LogRequest{Namespace: "e2e", PodUID: uuid.NewString(), PodName: "p", ContainerName: "main", Opts: api.ContainerLogOpts{SinceSeconds: 5, SinceTime: time.Now()}}, 400, "SinceSeconds and SinceTime"},
		{"wrong method", http.MethodPut, api.PathStatus, []byte(`[]`), 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.method, s.url+tt.path, tt.body, false)
			if code != tt.code || !strings.Contains(string(body), tt.want) {
				t.Errorf("got %d %.200q, want %d containing %q", code, body, tt.code, tt.want)
			}
		})
	}
}

// TestE2EMetrics reads interlink's /metrics, which needs the same token as
// the API.
func TestE2EMetrics(t *testing.T) {
	s := startStack(t)
	call(t, http.MethodPost, s.url+api.PathCreate, []byte(`{`), false) // one refused body
	req, _ := http.NewRequest(http.MethodGet, s.url+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d", resp.StatusCode)
	}
	code, body := call(t, http.MethodGet, s.url+"/metrics", nil, false)
	for _, want := range []string{`interlink_build_info{binary="interlink"`, `interlink_proxy_auth_requests_total{outcome="ok"}`,
		`interlink_proxy_auth_requests_total{outcome="missing"} 1`, "interlink_proxy_auth_duration_seconds_bucket"} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}
}

// TestE2EConfigTest checks --config-test: a good config passes, a bad one
// fails naming every problem.
func TestE2EConfigTest(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("InterlinkAddress: ftp://x\nRetries: 0\nSidecars: {a: 'gopher://x'}\n"), 0o600)
	out, err := exec.CommandContext(context.Background(), filepath.Join(binDir, "interlink"), "--config", bad, "--config-test").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "InterlinkAddress") || !strings.Contains(string(out), "Retries") || !strings.Contains(string(out), `sidecar "a"`) {
		t.Errorf("bad config: %v %s", err, out)
	}
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte("SidecarURL: unix:///tmp/x.sock\nAuth: {Insecure: true}\n"), 0o600)
	if out, err := exec.Command(filepath.Join(binDir, "interlink"), "--config", good, "--config-test").CombinedOutput(); err != nil || !strings.Contains(string(out), "config OK") {
		t.Errorf("good config: %v %s", err, out)
	}
}
