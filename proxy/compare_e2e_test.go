//go:build e2e

package proxy_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// sideBySide is interlink behind our embedded proxy, and the same interlink
// (without auth) behind a standalone oauth2-proxy v7.15.4 in bearer-JWT
// mode, both trusting one Hydra.
type sideBySide struct {
	h                      hydra
	ours, theirs, plain    string
	goodToken, wrongAudTok string
}

func startSideBySide(t testing.TB) *sideBySide {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoDir, ".ci/oauth2-proxy.sh"), "build").Output()
	if err != nil {
		t.Fatalf("oauth2-proxy: %v", err)
	}
	o2p := strings.TrimSpace(string(out))
	h := startHydra(t, "1h")
	good, wrongAud := h.client(t, "interlink"), h.client(t, "another-service")
	sock := filepath.Join(t.TempDir(), "sim.sock")
	start(t, "interlink-sim", []string{"INTERLINK_SIM_LISTEN=unix://" + sock})
	s := &sideBySide{h: h}
	s.ours = startInterlink(t, sock, "INTERLINK_AUTH_ISSUERS="+h.Public, "INTERLINK_AUTH_AUDIENCES=interlink")
	s.plain = startInterlink(t, sock, "INTERLINK_AUTH_INSECURE=true")
	port := e2eenv.FreePort(t)
	s.theirs = "http://127.0.0.1:" + port
	logPath := filepath.Join(t.TempDir(), "oauth2-proxy.log")
	f, _ := os.Create(logPath)
	cmd := exec.Command(o2p, "--provider=oidc", "--oidc-issuer-url="+h.Public, "--client-id="+good.ClientID,
		"--client-secret="+good.ClientSecret, "--oidc-extra-audience=interlink", "--skip-jwt-bearer-tokens=true",
		"--email-domain=*", "--oidc-email-claim=sub", "--insecure-oidc-allow-unverified-email=true",
		"--cookie-secret=0123456789abcdef0123456789abcdef", "--upstream="+s.plain+"/", "--http-address=127.0.0.1:"+port,
		"--skip-auth-route=^/healthz$", "--request-logging=false", "--auth-logging=false", "--standard-logging=false")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
		_ = f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("oauth2-proxy log:\n%s", b)
		}
	})
	waitUp(t, s.theirs+"/ping")
	s.goodToken, s.wrongAudTok = token(t, good), token(t, wrongAud)
	return s
}

// TestE2EComparedWithOauth2Proxy sends the rejection table to both fronts:
// ours must refuse at least everything oauth2-proxy refuses.
func TestE2EComparedWithOauth2Proxy(t *testing.T) {
	s := startSideBySide(t)
	valid := s.goodToken
	parts := strings.Split(valid, ".")
	cases := map[string]string{
		"valid":                            "Bearer " + valid,
		"wrong audience":                   "Bearer " + s.wrongAudTok,
		"tampered signature":               "Bearer " + parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"alg none":                         "Bearer " + encodeB64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".",
		"HS256 signed with the public key": "Bearer " + hs256WithHydraKey(t, s.h, valid),
		"second unrelated issuer":          "Bearer " + foreign(t),
		"no token":                         "",
		"malformed header":                 "Token " + valid,
		"garbage token":                    "Bearer abc.def.ghi",
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		oursCode, _ := status(t, s.ours, cases[name])
		theirsCode, _ := status(t, s.theirs, cases[name])
		t.Logf("%-34s ours %d, oauth2-proxy %d", name, oursCode, theirsCode)
		if theirsCode/100 != 2 && oursCode/100 == 2 {
			t.Errorf("%s: oauth2-proxy refuses (%d) but ours lets it through (%d)", name, theirsCode, oursCode)
		}
		if name == "valid" && (oursCode != 200 || theirsCode != 200) {
			t.Errorf("valid token: ours %d, oauth2-proxy %d", oursCode, theirsCode)
		}
	}
}

// BenchmarkAuthFronts measures a /status call with a valid (cached) token
// through interlink without auth, with its embedded proxy, and behind a
// standalone oauth2-proxy, in one run (make bench-auth).
func BenchmarkAuthFronts(b *testing.B) {
	s := startSideBySide(b)
	for _, tc := range []struct{ name, url, authz string }{
		{"no-auth", s.plain, ""},
		{"embedded-proxy", s.ours, "Bearer " + s.goodToken},
		{"oauth2-proxy", s.theirs, "Bearer " + s.goodToken},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				req, _ := http.NewRequest(http.MethodPost, tc.url+"/status", strings.NewReader("[]"))
				req.Header.Set("Content-Type", "application/json")
				if tc.authz != "" {
					req.Header.Set("Authorization", tc.authz)
				}
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				lat = append(lat, time.Since(t0))
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func flip(sig string) string {
	if sig[0] == 'A' {
		return "B" + sig[1:]
	}
	return "A" + sig[1:]
}
