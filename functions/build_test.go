package functions

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
