package token

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// issuer is an in-process token endpoint for the refresh_token grant: each
// refresh returns a new access token and rotates the refresh token.
func issuer(t *testing.T, fail *atomic.Int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail != nil && fail.Add(-1) >= 0 {
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		_ = r.ParseForm()
		if r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("refresh_token") != fmt.Sprintf("rt-%d", n.Load()) {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		i := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("at-%d", i), "token_type": "Bearer",
			"expires_in": 3600, "refresh_token": fmt.Sprintf("rt-%d", i)})
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRefreshTokenGrantRotates(t *testing.T) {
	srv, n := issuer(t, nil)
	dir := t.TempDir()
	rtFile, tokFile := filepath.Join(dir, "rt"), filepath.Join(dir, "token")
	if err := os.WriteFile(rtFile, []byte("rt-0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Grant, cfg.TokenURL, cfg.ClientID, cfg.RefreshTokenFile, cfg.TokenFile = GrantRefreshToken, srv.URL, "vk", rtFile, tokFile
	r, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		next, err := r.refresh(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(tokFile)
		if strings.TrimSpace(string(b)) != fmt.Sprintf("at-%d", i) {
			t.Errorf("refresh %d wrote %q", i, b)
		}
		if next < 44*time.Minute || next > 46*time.Minute {
			t.Errorf("next refresh in %s, want 75%% of an hour", next)
		}
	}
	if n.Load() != 3 {
		t.Errorf("%d refreshes reached the issuer", n.Load())
	}
	rt, _ := os.ReadFile(rtFile)
	fi, _ := os.Stat(tokFile)
	if strings.TrimSpace(string(rt)) != "rt-3" || fi.Mode().Perm() != 0o600 {
		t.Errorf("rotated refresh token %q saved; token file mode %v", rt, fi.Mode())
	}
}

func TestRetriesWithBackoff(t *testing.T) {
	var fail atomic.Int64
	// oauth2 tries two ways of sending client credentials per attempt: four
	// failed requests are two failed attempts.
	fail.Store(4)
	start := time.Now()
	srv, _ := issuer(t, &fail)
	dir := t.TempDir()
	rtFile, tokFile := filepath.Join(dir, "rt"), filepath.Join(dir, "token")
	_ = os.WriteFile(rtFile, []byte("rt-0"), 0o600)
	cfg := DefaultConfig()
	cfg.Grant, cfg.TokenURL, cfg.ClientID, cfg.RefreshTokenFile, cfg.TokenFile = GrantRefreshToken, srv.URL, "vk", rtFile, tokFile
	r, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	for {
		if b, err := os.ReadFile(tokFile); err == nil && strings.TrimSpace(string(b)) == "at-1" {
			if d := time.Since(start); d < 3*time.Second {
				t.Errorf("token after %s: the retries did not back off (1s, then 2s)", d)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatal("no token written after two failures (backoff 1s, 2s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Grant = "password"
	err := cfg.Validate()
	for _, want := range []string{"TokenURL", "ClientID", "TokenFile", `Grant "password"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
