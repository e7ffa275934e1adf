package server

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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, and returns the CA pool and the client key pair.
func pki(t *testing.T, dir string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	srvDER, srvKey := issue("server", x509.ExtKeyUsageServerAuth)
	write("server.pem", "CERTIFICATE", srvDER)
	kb, _ := x509.MarshalECPrivateKey(srvKey)
	write("server-key.pem", "EC PRIVATE KEY", kb)
	cliDER, cliKey := issue("client", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
}

func serve(t *testing.T, cfg Config) string {
	t.Helper()
	l, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, cfg, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }), slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return l.Addr().String()
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pool, clientCert := pki(t, dir)
	addr := serve(t, Config{Listen: "127.0.0.1:0", CertFile: filepath.Join(dir, "server.pem"),
		KeyFile: filepath.Join(dir, "server-key.pem"), ClientCAFile: filepath.Join(dir, "ca.pem")})
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}}}}
	if body, err := get(withCert, "https://"+addr); err != nil || body != "hi" {
		t.Errorf("client with certificate: %q %v", body, err)
	}
	without := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := get(without, "https://"+addr); err == nil {
		t.Error("client without certificate was served")
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	// A stale socket file from a crash is replaced.
	if l, err := net.Listen("unix", sock); err == nil {
		_ = l.(*net.UnixListener).File
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		_ = l.Close()
	}
	serve(t, Config{Listen: "unix://" + sock})
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	if body, err := get(c, "http://unix/"); err != nil || body != "hi" {
		t.Errorf("over the socket: %q %v", body, err)
	}
}

func TestBadTLSConfig(t *testing.T) {
	l, err := Listen(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	err = Serve(context.Background(), l, Config{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "TLS key pair") {
		t.Errorf("missing certificate: %v", err)
	}
}

func TestCertificateReloaded(t *testing.T) {
	dir := t.TempDir()
	_, _ = pki(t, dir)
	newDir := t.TempDir()
	_, _ = pki(t, newDir)
	pool := x509.NewCertPool()
	for _, d := range []string{dir, newDir} {
		b, _ := os.ReadFile(filepath.Join(d, "ca.pem"))
		pool.AppendCertsFromPEM(b)
	}
	addr := serve(t, Config{Listen: "127.0.0.1:0", CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem")})
	serial := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	// A new pair replaces the files, as a Secret update does.
	for _, f := range []string{"server.pem", "server-key.pem"} {
		b, _ := os.ReadFile(filepath.Join(newDir, f))
		tmp := filepath.Join(dir, f+".new")
		_ = os.WriteFile(tmp, b, 0o600) //nolint:gosec // a test temp dir
		if err := os.Rename(tmp, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for serial() == first {
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate was not served")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
