//go:build e2e

package proxy_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/seed-3f807049/interlink/functions/client"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

var binDir, repoDir string

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	repoDir = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "interlink-proxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "../functions/cmd/interlink", "../sidecars/sim/cmd/interlink-sim", "../vk/cmd/interlink-token-refresher", "./cmd/interlink-proxy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func start(t testing.TB, name string, env []string, args ...string) {
	t.Helper()
	e2eenv.StartProcess(t, filepath.Join(t.TempDir(), name+".log"), env, append([]string{filepath.Join(binDir, name)}, args...)...)
}

// hydra is Ory Hydra, built from its Go modules by .ci/hydra.sh.
type hydra struct{ e2eenv.Hydra }

// startHydra starts Hydra with access tokens living ttl.
func startHydra(t testing.TB, ttl string) hydra {
	t.Helper()
	return hydra{e2eenv.StartHydra(t, repoDir, t.TempDir(), ttl)}
}

// client registers a client_credentials client for audience and returns
// its token source config.
func (h hydra) client(t testing.TB, audience string) *clientcredentials.Config {
	t.Helper()
	id, secret := h.Client(t, audience)
	return &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: h.Public + "/oauth2/token",
		Scopes: []string{"read"}, EndpointParams: map[string][]string{"audience": {audience}}}
}

func token(t testing.TB, c *clientcredentials.Config) string {
	t.Helper()
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok.AccessToken
}

// hs256WithHydraKey forges a token HMAC-signed with Hydra's public key.
func hs256WithHydraKey(t testing.TB, h hydra, valid string) string {
	t.Helper()
	resp, err := http.Get(h.Public + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v", err)
	}
	der, _ := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + set.Keys[0].KeyID + `"}`))
	body := strings.Split(valid, ".")[1]
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(head + "." + body))
	return head + "." + body + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// foreign signs a token with a key and issuer interlink does not trust.
func foreign(t testing.TB) string {
	t.Helper()
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, nil)
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://other-issuer.example", Subject: "x", Audience: jwt.Audience{"interlink"},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// kid reads the key ID of a JWT's header.
func kid(t *testing.T, tok string) string {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(parsed.Headers) == 0 {
		t.Fatalf("parse token: %v", err)
	}
	return parsed.Headers[0].KeyID
}

func status(t testing.TB, url, authz string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/status", strings.NewReader("[]"))
	req.Header.Set("Content-Type", "application/json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startInterlink starts interlink in front of the sim at sock with the
// given auth settings and returns its URL.
func startInterlink(t testing.TB, sock string, auth ...string) string {
	t.Helper()
	port := e2eenv.FreePort(t)
	url := "http://127.0.0.1:" + port
	start(t, "interlink", append([]string{"SIDECARURL=unix://" + sock, "INTERLINKPORT=" + port, "ERRORSONLYLOGGING=true"}, auth...))
	waitUp(t, url+"/healthz")
	return url
}

func waitUp(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up", url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestE2EHydra runs the rejection table against interlink's embedded proxy
// with real access tokens from Ory Hydra.
func TestE2EHydra(t *testing.T) {
	const ttl = 12 * time.Second
	h := startHydra(t, ttl.String())
	good, wrongAud := h.client(t, "interlink"), h.client(t, "another-service")
	sock := filepath.Join(t.TempDir(), "sim.sock")
	start(t, "interlink-sim", []string{"INTERLINK_SIM_LISTEN=unix://" + sock})
	url := startInterlink(t, sock, "INTERLINK_AUTH_ISSUERS="+h.Public, "INTERLINK_AUTH_AUDIENCES=interlink", "INTERLINK_AUTH_CLOCK_SKEW=1s")

	valid := token(t, good)
	expiring := token(t, good)
	parts := strings.Split(valid, ".")
	sigBytes, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sigBytes[0] ^= 0xff
	tampered := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sigBytes)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	tests := []struct {
		name, authz string
		code        int
	}{
		{"valid", "Bearer " + valid, 200},
		{"wrong audience", "Bearer " + token(t, wrongAud), 401},
		{"tampered signature", "Bearer " + tampered, 401},
		{"alg none", "Bearer " + none, 401},
		{"HS256 signed with the public key", "Bearer " + hs256WithHydraKey(t, h, valid), 401},
		{"second unrelated issuer", "Bearer " + foreign(t), 401},
		{"no token", "", 401},
		{"malformed header", "Token " + valid, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := status(t, url, tt.authz); code != tt.code {
				t.Errorf("got %d %s, want %d", code, body, tt.code)
			}
		})
	}
	t.Run("standalone proxy in front of an upstream", func(t *testing.T) {
		upstream := startInterlink(t, sock, "INTERLINK_AUTH_INSECURE=true")
		port := e2eenv.FreePort(t)
		front := "http://127.0.0.1:" + port
		start(t, "interlink-proxy", []string{"INTERLINK_PROXY_LISTEN=127.0.0.1:" + port, "INTERLINK_PROXY_UPSTREAM=" + upstream,
			"INTERLINK_AUTH_ISSUERS=" + h.Public, "INTERLINK_AUTH_AUDIENCES=interlink"})
		waitUp(t, front+"/healthz")
		for _, tc := range []struct {
			authz string
			code  int
		}{{"Bearer " + token(t, good), 200}, {"Bearer " + token(t, wrongAud), 401}, {"", 401}} {
			if code, body := status(t, front, tc.authz); code != tc.code {
				t.Errorf("through interlink-proxy: %d %s, want %d", code, body, tc.code)
			}
		}
	})
	t.Run("key rotation", func(t *testing.T) {
		before := kid(t, token(t, good))
		body := strings.NewReader(`{"alg":"RS256","use":"sig","kid":"rotated-e2e"}`)
		resp, err := http.Post(h.Admin+"/admin/keys/hydra.jwt.access-token", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("rotate key in Hydra: %d", resp.StatusCode)
		}
		fresh := token(t, good)
		if after := kid(t, fresh); after == before {
			t.Fatalf("Hydra still signs with key %q after the rotation", after)
		}
		if code, body := status(t, url, "Bearer "+fresh); code != 200 {
			t.Errorf("token signed by the rotated key: %d %s", code, body)
		}
	})
	t.Run("VK keeps working across token refreshes", func(t *testing.T) {
		dir := t.TempDir()
		secret, tokenFile := filepath.Join(dir, "secret"), filepath.Join(dir, "token")
		if err := os.WriteFile(secret, []byte(good.ClientSecret), 0o600); err != nil {
			t.Fatal(err)
		}
		start(t, "interlink-token-refresher", []string{"INTERLINK_TOKEN_URL=" + good.TokenURL, "INTERLINK_TOKEN_CLIENT_ID=" + good.ClientID,
			"INTERLINK_TOKEN_CLIENT_SECRET_FILE=" + secret, "INTERLINK_TOKEN_AUDIENCE=interlink", "INTERLINK_TOKEN_SCOPES=read",
			"VKTOKENFILE=" + tokenFile})
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(tokenFile); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the refresher wrote no token")
			}
			time.Sleep(50 * time.Millisecond)
		}
		c, err := client.New(client.Config{URL: url, TokenFile: tokenFile, Retries: 1})
		if err != nil {
			t.Fatal(err)
		}
		// Three token lifetimes (12 s each, renewed at 9 s), one call every 100 ms.
		first, _ := os.ReadFile(tokenFile)
		calls, failures := 0, 0
		for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			calls++
			if _, err := c.Ping(context.Background()); err != nil {
				failures++
				t.Logf("call %d failed: %v", calls, err)
			}
		}
		last, _ := os.ReadFile(tokenFile)
		if bytes.Equal(first, last) {
			t.Error("the token was never refreshed")
		}
		if failures > 0 {
			t.Errorf("%d of %d calls failed across token refreshes", failures, calls)
		}
		t.Logf("%d calls across token refreshes, %d failed", calls, failures)
	})
	t.Run("expired", func(t *testing.T) {
		time.Sleep(ttl + 2*time.Second)
		if code, body := status(t, url, "Bearer "+expiring); code != 401 || !strings.Contains(body, "expired") {
			t.Errorf("expired token: %d %s", code, body)
		}
		// A fresh token from the same client works.
		if code, body := status(t, url, "Bearer "+token(t, good)); code != 200 {
			t.Errorf("fresh token: %d %s", code, body)
		}
	})
}

func encodeB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
