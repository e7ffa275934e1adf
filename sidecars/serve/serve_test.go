package serve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/serve"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// testConfig is a sidecar's Config: it embeds the shared block.
type testConfig struct {
	serve.Config
	Listen string `json:"Listen" env:"SERVE_TEST_LISTEN"`
	auth   *server.Auth
}

func (c *testConfig) Serving() serve.Serving {
	return serve.Serving{Addr: c.Listen, Auth: c.auth, MaxBodyBytes: 1 << 20}
}

func (c *testConfig) Validate() error {
	if c.Listen == "" {
		return errors.New("Listen is empty")
	}
	return nil
}

// plugin answers every status with job-<name>; it counts its Close calls.
type plugin struct{ closed atomic.Int32 }

func (p *plugin) Create(_ context.Context, d *api.RetrievedPodData) (api.CreateResult, error) {
	return api.CreateResult{PodUID: string(d.Pod.UID), PodJID: "job-" + d.Pod.Name}, nil
}

func (p *plugin) Delete(context.Context, *corev1.Pod) error { return nil }

func (p *plugin) Status(_ context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	out := make([]api.PodStatus, 0, len(pods))
	for _, pod := range pods {
		out = append(out, api.PodStatus{PodName: pod.Name, PodNamespace: pod.Namespace, PodUID: string(pod.UID), JobID: "job-" + pod.Name})
	}
	return out, nil
}

func (p *plugin) Logs(context.Context, *api.LogRequest) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("log\n")), nil
}

func (p *plugin) Close() error {
	p.closed.Add(1)
	return nil
}

// build returns the plugin with a metric of its own and a path of its own
// (/extra, through Wrap).
func build(p *plugin) serve.Build {
	return func(_ context.Context, log *slog.Logger) (*serve.Sidecar, error) {
		log.Debug("building the test sidecar")
		return &serve.Sidecar{
			Plugin: p,
			Register: func(reg prometheus.Registerer) error {
				return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_test_up", Help: "Test."}, func() float64 { return 1 }))
			},
			Wrap: func(h http.Handler) http.Handler {
				mux := http.NewServeMux()
				mux.Handle("/", h)
				mux.HandleFunc("/extra", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
				return mux
			},
			Close: p.Close,
		}, nil
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor dials the sidecar until it answers.
func waitFor(t *testing.T, network, addr string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial(network, addr); err == nil {
			_ = c.Close()
			return
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing serves %s %s", network, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs cfg's sidecar until the returned cancel; the channel gets
// Run's result.
func start(t *testing.T, cfg *testConfig, p *plugin) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- serve.Run(ctx, "interlink-test", cfg, slog.New(slog.DiscardHandler), build(p)) }()
	return cancel, done
}

func stopped(t *testing.T, cancel context.CancelFunc, done <-chan error) error {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(server.ShutdownTimeout + 5*time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

func testPod(name string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)}}
}

func TestRunServesUnixSocketAndStopsOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth *server.Auth
	}{
		{"without authentication, as the sim", nil},
		{"the socket's mode as credential, as slurm and docker", &server.Auth{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "s.sock")
			cfg := &testConfig{Config: serve.DefaultConfig(), Listen: sock, auth: tc.auth}
			p := &plugin{}
			cancel, done := start(t, cfg, p)
			waitFor(t, "unix", sock, done)

			if fi, err := os.Stat(sock); err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
				t.Errorf("socket: %v, %v; want a socket of mode 0660", fi.Mode(), err)
			}
			c, err := sidecars.NewClient(sidecars.ClientConfig{URL: "unix://" + sock})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(t.Context(), []corev1.Pod{testPod("web")})
			if err != nil || len(st) != 1 || st[0].JobID != "job-web" {
				t.Errorf("status over the socket: %+v, %v; want the plugin's job-web", st, err)
			}
			hc := unixClient(sock)
			code, body := get(t, hc, "http://unix/metrics", "")
			if code != http.StatusOK || !strings.Contains(body, "interlink_test_up 1") || !strings.Contains(body, `interlink_build_info{binary="interlink-test"`) {
				t.Errorf("/metrics: %d, lacks the plugin's or the binary's metrics:\n%s", code, body)
			}
			if code, _ := get(t, hc, "http://unix/extra", ""); code != http.StatusTeapot {
				t.Errorf("/extra (Wrap): %d, want %d", code, http.StatusTeapot)
			}
			if p.closed.Load() != 0 {
				t.Error("the sidecar was closed while serving")
			}

			if err := stopped(t, cancel, done); err != nil {
				t.Errorf("Run after cancel: %v, want nil", err)
			}
			if n := p.closed.Load(); n != 1 {
				t.Errorf("Close called %d times, want once", n)
			}
			if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket left after stop: %v", err)
			}
			if _, err := net.Dial("unix", sock); err == nil {
				t.Error("still serving after stop")
			}
		})
	}
}

// freePort returns a TCP port nothing listens on (for a moment).

func TestRunTCPNeedsTheToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	if err := os.WriteFile(tokens, []byte("right-token,interlink\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", e2eenv.FreePort(t))
	cfg := &testConfig{Config: serve.DefaultConfig(), Listen: addr, auth: &server.Auth{TokenFile: tokens}}
	p := &plugin{}
	cancel, done := start(t, cfg, p)
	waitFor(t, "tcp", addr, done)

	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/extra", "", http.StatusUnauthorized},
		{"/extra", "wrong-token", http.StatusUnauthorized},
		{"/extra", "right-token", http.StatusTeapot},
		{"/metrics", "", http.StatusOK},
	} {
		if code, _ := get(t, http.DefaultClient, "http://"+addr+tc.path, tc.token); code != tc.want {
			t.Errorf("%s with token %q: %d, want %d", tc.path, tc.token, code, tc.want)
		}
	}
	if err := stopped(t, cancel, done); err != nil {
		t.Errorf("Run after cancel: %v, want nil", err)
	}
	if n := p.closed.Load(); n != 1 {
		t.Errorf("Close called %d times, want once", n)
	}
}

func TestRunErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("build fails: nothing served", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "s.sock")
		cfg := &testConfig{Config: serve.DefaultConfig(), Listen: sock}
		boom := errors.New("boom")
		err := serve.Run(t.Context(), "interlink-test", cfg, log, func(context.Context, *slog.Logger) (*serve.Sidecar, error) { return nil, boom })
		if !errors.Is(err, boom) {
			t.Errorf("Run: %v, want the build's error", err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket created though the build failed: %v", err)
		}
	})
	t.Run("TCP without a credential: refused, closed", func(t *testing.T) {
		cfg := &testConfig{Config: serve.DefaultConfig(), Listen: "127.0.0.1:0", auth: &server.Auth{}}
		p := &plugin{}
		// Bounded: were it served, Run would go on until ctx ends.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err := serve.Run(ctx, "interlink-test", cfg, log, build(p))
		if err == nil || !strings.Contains(err.Error(), "Insecure") {
			t.Errorf("Run: %v, want a refusal naming Auth.Insecure", err)
		}
		if n := p.closed.Load(); n != 1 {
			t.Errorf("Close called %d times, want once", n)
		}
	})
	t.Run("bad tracing config: refused, closed", func(t *testing.T) {
		cfg := &testConfig{Config: serve.DefaultConfig(), Listen: filepath.Join(t.TempDir(), "s.sock")}
		cfg.Tracing.SampleRatio = 2
		p := &plugin{}
		if err := serve.Run(t.Context(), "interlink-test", cfg, log, build(p)); err == nil || !strings.Contains(err.Error(), "SampleRatio") {
			t.Errorf("Run: %v, want the tracing config's error", err)
		}
		if n := p.closed.Load(); n != 1 {
			t.Errorf("Close called %d times, want once", n)
		}
	})
}

// TestMain runs Main in a child process (SERVE_TEST_MAIN=1): it exits the
// process. The child prints "closed" when its sidecar closes.
func TestMain(m *testing.M) {
	if os.Getenv("SERVE_TEST_MAIN") == "1" {
		cfg := testConfig{Config: serve.DefaultConfig()}
		p := &plugin{}
		b := build(p)
		serve.Main("interlink-test", "SERVE_TEST_CONFIG", &cfg, func(ctx context.Context, log *slog.Logger) (*serve.Sidecar, error) {
			sc, err := b(ctx, log)
			if err == nil {
				sc.Close = func() error { fmt.Println("closed"); return nil }
			}
			return sc, err
		})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...) //nolint:gosec // the test binary itself
	cmd.Env = append(os.Environ(), append([]string{"SERVE_TEST_MAIN=1"}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

func TestMainConfigTest(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("Listen: /run/x.sock\nLogLevel: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, stdout, stderr := child(t, []string{"SERVE_TEST_CONFIG=" + file}, "--config-test")
	if err := cmd.Run(); err != nil || strings.TrimSpace(stdout.String()) != "config OK" {
		t.Errorf("--config-test of a good config: %v, stdout %q, stderr %q; want config OK", err, stdout, stderr)
	}

	cmd, stdout, stderr = child(t, nil, "--config-test")
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("--config-test without Listen: %v, want exit code 1", err)
	}
	if !strings.HasPrefix(stderr.String(), "interlink-test: ") || !strings.Contains(stderr.String(), "Listen is empty") || stdout.Len() > 0 {
		t.Errorf("--config-test without Listen: stdout %q, stderr %q", stdout, stderr)
	}
}

func TestMainStopsOnSIGTERM(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	// The shared block's keys are read from the environment: text logs at
	// debug level show the build's debug line.
	cmd, stdout, stderr := child(t, []string{"SERVE_TEST_LISTEN=" + sock, "INTERLINK_LOG_FORMAT=text", "INTERLINK_LOG_LEVEL=debug"})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, "unix", sock, done)
	if code, _ := get(t, unixClient(sock), "http://unix/extra", ""); code != http.StatusTeapot {
		t.Errorf("/extra: %d, want %d", code, http.StatusTeapot)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGTERM: %v, want exit code 0; stderr:\n%s", err, stderr)
		}
	case <-time.After(server.ShutdownTimeout + 5*time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if strings.TrimSpace(stdout.String()) != "closed" {
		t.Errorf("stdout %q, want the sidecar closed", stdout)
	}
	if !strings.Contains(stderr.String(), `level=DEBUG msg="building the test sidecar"`) {
		t.Errorf("stderr lacks the debug line of a text logger at debug level:\n%s", stderr)
	}
}
