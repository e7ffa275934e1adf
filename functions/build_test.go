package functions

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/server"
)

// TestMetricsListener checks that MetricsListen gives Prometheus /metrics
// without a token, and nothing else, while the API keeps its /metrics
// behind authentication.
func TestMetricsListener(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	if err := os.WriteFile(tokens, []byte("s3cret,vk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Auth.StaticTokensFile = tokens
	cfg.MetricsListen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	app, err := NewApp(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if app.Metrics == nil || app.MetricsServer.Listen != "127.0.0.1:0" {
		t.Fatalf("no metrics listener: %+v", app.MetricsServer)
	}
	get := func(h http.Handler, method, path, token string) (int, string) {
		r := httptest.NewRequest(method, path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, body := get(app.Metrics, http.MethodGet, "/metrics", ""); code != http.StatusOK || !strings.Contains(body, "interlink_build_info") {
		t.Errorf("metrics listener /metrics: %d %.200s", code, body)
	}
	for _, path := range []string{"/pinglink", "/create", "/status"} {
		if code, _ := get(app.Metrics, http.MethodPost, path, "s3cret"); code != http.StatusNotFound {
			t.Errorf("metrics listener %s: %d, want 404 (it serves /metrics only)", path, code)
		}
	}
	if code, _ := get(app.Handler, http.MethodGet, "/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("API listener /metrics without a token: %d, want 401", code)
	}

	cfg.MetricsListen = "9090"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "MetricsListen") {
		t.Errorf("MetricsListen without a host: %v", err)
	}
}

// TestSidecarCredentials: interlink presents SidecarTokenFile's token (read
// again when the file changes) and SidecarCertFile's certificate to
// sidecars that require them; without them a sidecar on TCP refuses it.
func TestSidecarCredentials(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ping := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pinglink := func(cfg Config) int {
		t.Helper()
		h, _, err := FromConfig(cfg, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/pinglink", nil))
		return w.Code
	}

	// A bearer token.
	tokens := write("tokens.csv", "first-token,interlink\n")
	sc, run, err := server.SidecarHandler(t.Context(), "127.0.0.1:4001", server.Auth{TokenFile: tokens}, ping, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = run(t.Context()) }()
	srv := httptest.NewServer(sc)
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Sidecars = map[string]string{"hpc": srv.URL}
	if code := pinglink(cfg); code != http.StatusServiceUnavailable {
		t.Errorf("/pinglink without SidecarTokenFile: %d, want 503 (the sidecar refuses interlink)", code)
	}
	cfg.SidecarTokenFile = filepath.Join(dir, "missing")
	if _, _, err := FromConfig(cfg, log, nil); err == nil || !strings.Contains(err.Error(), "SidecarTokenFile") {
		t.Errorf("a missing SidecarTokenFile: %v", err)
	}
	cfg.SidecarTokenFile = write("sidecar-token", "first-token\n")
	h, _, err := FromConfig(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	code := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/pinglink", nil))
		return w.Code
	}
	if c := code(); c != http.StatusOK {
		t.Errorf("/pinglink with the sidecar's token: %d, want 200", c)
	}
	// A rotation: the sidecar accepts both, then interlink's file changes.
	write("tokens.csv", "first-token,interlink\nthe-second-token,interlink\n")
	write("sidecar-token", "the-second-token\n")
	deadline := time.Now().Add(5 * time.Second)
	for c := code(); c != http.StatusOK; c = code() {
		if time.Now().After(deadline) {
			t.Fatalf("/pinglink after the token changed: %d", c)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A client certificate, over https.
	caPEM, certPEM, keyPEM := clientPKI(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	sc, _, err = server.SidecarHandler(t.Context(), "127.0.0.1:4001", server.Auth{ClientCAFile: "set"}, ping, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(sc)
	tlsSrv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	cfg = DefaultConfig()
	cfg.Sidecars = map[string]string{"hpc": tlsSrv.URL}
	cfg.SidecarCAFile = write("sidecar-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})))
	if code := pinglink(cfg); code != http.StatusServiceUnavailable {
		t.Errorf("/pinglink without a client certificate: %d, want 503", code)
	}
	cfg.SidecarCertFile, cfg.SidecarKeyFile = write("client.pem", string(certPEM)), write("client-key.pem", string(keyPEM))
	cfg.Auth.Insecure = true // interlink's own callers are not the subject here
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if code := pinglink(cfg); code != http.StatusOK {
		t.Errorf("/pinglink with a client certificate: %d, want 200", code)
	}
	cfg.SidecarKeyFile = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SidecarKeyFile") {
		t.Errorf("SidecarCertFile without SidecarKeyFile: %v", err)
	}
}

// clientPKI returns a CA and a client certificate and key it signed, PEM.
func clientPKI(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sidecar CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "interlink"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
