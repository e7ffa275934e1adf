package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

func TestSidecarAuthValidate(t *testing.T) {
	const env = "INTERLINK_TEST_AUTH_"
	for _, tc := range []struct {
		name   string
		listen string
		auth   Auth
		want   []string // substrings of the error; none: valid
	}{
		{"socket without credential", "/run/x.sock", Auth{}, nil},
		{"unix:// socket without credential", "unix:///run/x.sock", Auth{}, nil},
		{"socket with a token", "/run/x.sock", Auth{TokenFile: "/t"}, nil},
		{"TCP with a token", "127.0.0.1:4001", Auth{TokenFile: "/t"}, nil},
		{"TCP with client certificates", "127.0.0.1:4001", Auth{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca"}, nil},
		{"TCP insecure", "127.0.0.1:4001", Auth{Insecure: true}, nil},
		{"TCP without credential", "127.0.0.1:4001", Auth{},
			[]string{"127.0.0.1:4001", "Auth.TokenFile (INTERLINK_TEST_AUTH_TOKEN_FILE)", "Auth.ClientCAFile (INTERLINK_TEST_AUTH_CLIENT_CA_FILE)", "Auth.Insecure (INTERLINK_TEST_AUTH_INSECURE)", "unix socket"}},
		{"TCP with TLS but no client CA", "127.0.0.1:4001", Auth{CertFile: "/c", KeyFile: "/k"}, []string{"without a credential"}},
		{"insecure with a token", "127.0.0.1:4001", Auth{TokenFile: "/t", Insecure: true}, []string{"cannot be combined"}},
		{"cert without key", "127.0.0.1:4001", Auth{TokenFile: "/t", CertFile: "/c"}, []string{"go together"}},
		{"client CA without TLS", "127.0.0.1:4001", Auth{ClientCAFile: "/ca"}, []string{"Auth.ClientCAFile", "needs"}},
		{"TLS on a socket", "/run/x.sock", Auth{CertFile: "/c", KeyFile: "/k"}, []string{"for a TCP listener"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.auth.Validate(tc.listen, env)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSidecarListen(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, tc := range []struct{ listen, port, want string }{
		{"~/.local/interlink/slurm.sock", "", filepath.Join(home, ".local/interlink/slurm.sock")},
		{"~/.local/interlink/slurm.sock", "4001", "127.0.0.1:4001"},
		{"/run/x.sock", "4000", "127.0.0.1:4000"},
		{"unix:///run/x.sock", "", "unix:///run/x.sock"},
		{"0.0.0.0:4001", "4100", "0.0.0.0:4100"},
		{"127.0.0.1:4001", "", "127.0.0.1:4001"},
	} {
		got, err := SidecarListen(tc.listen, tc.port)
		if err != nil || got != tc.want {
			t.Errorf("SidecarListen(%q, %q) = %q, %v; want %q", tc.listen, tc.port, got, err, tc.want)
		}
	}
	if _, err := SidecarListen("/run/x.sock", "http"); err == nil || !strings.Contains(err.Error(), "SidecarPort") {
		t.Errorf("a bad SidecarPort: %v", err)
	}
}

// sidecarAPI stands for a sidecar's API: it answers every path.
var sidecarAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api "+r.URL.Path) })

var openMetrics = map[string]http.Handler{"/metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, "metrics")
})}

func call(t *testing.T, c *http.Client, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestSidecarToken: on TCP with a token file, a call without a token or
// with a wrong one is 401, the right token passes, /metrics needs none, and
// a token added to the file is accepted without a restart.
func TestSidecarToken(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte("# interlink's token\nright-token,interlink\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The token file's watcher logs from its own goroutine.
	var logs e2eenv.LockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, run, err := SidecarHandler(ctx, "127.0.0.1:4001", Auth{TokenFile: tokens}, sidecarAPI, openMetrics, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = run(ctx) }()
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := srv.Client()
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/status", "", http.StatusUnauthorized},
		{"/create", "wrong-token", http.StatusUnauthorized},
		{"/status", "right-token", http.StatusOK},
		{"/getLogs", "right-token", http.StatusOK},
		{"/metrics", "", http.StatusOK},
	} {
		if got := call(t, c, srv.URL+tc.path, tc.token); got != tc.want {
			t.Errorf("%s with token %q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
	// A rotation: the new token is written beside the old one.
	if err := os.WriteFile(tokens, []byte("right-token,interlink\nnext-token,interlink\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for call(t, c, srv.URL+"/status", "next-token") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("a token added to the file was not accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tok := range []string{"right-token", "next-token", "wrong-token"} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("a token was logged:\n%s", logs.String())
		}
	}
}

// TestSidecarClientCertificate: on HTTPS with a client CA, a call without
// a certificate is 401 (but /metrics answers), and one with a certificate
// the CA signed passes.
func TestSidecarClientCertificate(t *testing.T) {
	dir := t.TempDir()
	pool, clientCert := pki(t, dir)
	a := Auth{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"), ClientCAFile: filepath.Join(dir, "ca.pem")}
	if err := a.Validate("127.0.0.1:0", "X_"); err != nil {
		t.Fatal(err)
	}
	addr := runSidecar(t, "127.0.0.1:0", a)
	without := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}}
	with := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{clientCert}}}}
	url := "https://" + addr
	if got := call(t, without, url+"/status", ""); got != http.StatusUnauthorized {
		t.Errorf("/status without a client certificate: %d, want 401", got)
	}
	if got := call(t, without, url+"/metrics", ""); got != http.StatusOK {
		t.Errorf("/metrics without a client certificate: %d, want 200", got)
	}
	if got := call(t, with, url+"/status", ""); got != http.StatusOK {
		t.Errorf("/status with a client certificate: %d, want 200", got)
	}
}

// TestSidecarSocket: the default kind of listener, a unix socket in a
// directory that does not exist yet: the directory is made 0700, the
// socket 0660, and callers need no credential.
func TestSidecarSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "interlink")
	sock := filepath.Join(dir, "slurm.sock")
	runSidecar(t, sock, Auth{})
	for path, want := range map[string]os.FileMode{dir: 0o700, sock: 0o660} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %s, want %s", path, fi.Mode().Perm(), want)
		}
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	if got := call(t, c, "http://unix/status", ""); got != http.StatusOK {
		t.Errorf("/status on the socket: %d, want 200", got)
	}
}

// TestSidecarInsecure: Auth.Insecure serves TCP to anyone, and says so.
func TestSidecarInsecure(t *testing.T) {
	var logs bytes.Buffer
	h, _, err := SidecarHandler(context.Background(), "127.0.0.1:4001", Auth{Insecure: true}, sidecarAPI, openMetrics, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if got := call(t, srv.Client(), srv.URL+"/status", ""); got != http.StatusOK {
		t.Errorf("/status: %d, want 200", got)
	}
	if !strings.Contains(logs.String(), "AUTHENTICATION IS OFF") {
		t.Errorf("Insecure was not logged loudly:\n%s", logs.String())
	}
	// Never served without Insecure.
	if _, _, err := SidecarHandler(context.Background(), "127.0.0.1:4001", Auth{}, sidecarAPI, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("TCP without a credential was served")
	}
}

// runSidecar runs RunSidecar on listen until the test ends and returns the
// address it listens on.
func runSidecar(t *testing.T, listen string, a Auth) string {
	t.Helper()
	if _, socket := socketPath(listen); !socket {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		listen = l.Addr().String()
		_ = l.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunSidecar(ctx, listen, a, sidecarAPI, openMetrics, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("RunSidecar: %v", err)
		}
	})
	network, addr := "tcp", listen
	if p, socket := socketPath(listen); socket {
		network, addr = "unix", p
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial(network, addr); err == nil {
			_ = c.Close()
			return listen
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen", listen)
		}
	}
}
