package functions

import (
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seed-3f807049/interlink/observability/config"
)

func load(t *testing.T, yaml string, env map[string]string) (Config, []string, error) {
	t.Helper()
	path := ""
	if yaml != "" {
		path = filepath.Join(t.TempDir(), "InterLinkConfig.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg := DefaultConfig()
	unknown, err := config.Load(&cfg, path)
	return cfg, unknown, err
}

// TestOriginalConfigFile loads a config written with the original's keys,
// including keys of the SLURM plugin that share its file.
func TestOriginalConfigFile(t *testing.T) {
	cfg, unknown, err := load(t, `
InterlinkAddress: "http://0.0.0.0"
InterlinkPort: "3000"
SidecarURL: "http://127.0.0.1"
SidecarPort: "4001"
SidecarService: "slurm"
SbatchPath: "/usr/bin/sbatch"
VerboseLogging: true
TLS:
  Enabled: false
Auth:
  StaticTokensFile: /dev/null
  Insecure: false
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"SbatchPath"}, unknown); diff != "" {
		t.Errorf("unknown keys (-want +got):\n%s", diff)
	}
	listen, _ := cfg.Listen()
	urls, _ := cfg.SidecarURLs()
	_, level := cfg.LogSettings()
	if listen != "0.0.0.0:3000" || urls["slurm"] != "http://127.0.0.1:4001" || cfg.Default() != "slurm" || level != "debug" {
		t.Errorf("listen %q, sidecars %v, default %q, level %q", listen, urls, cfg.Default(), level)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	cfg, _, err := load(t, "InterlinkPort: \"3000\"\n", map[string]string{
		"INTERLINKPORT":             "3100",
		"INTERLINKURL":              "unix:///tmp/il.sock",
		"INTERLINK_SIDECARS":        "hpc=unix:///tmp/slurm.sock,cloud=http://10.0.0.5:4000",
		"INTERLINK_DEFAULT_SIDECAR": "hpc",
		"INTERLINK_CALL_TIMEOUT":    "5s",
		"INTERLINK_AUTH_INSECURE":   "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	listen, _ := cfg.Listen()
	urls, _ := cfg.SidecarURLs()
	want := map[string]string{"hpc": "unix:///tmp/slurm.sock", "cloud": "http://10.0.0.5:4000"}
	if listen != "unix:///tmp/il.sock" || !cmp.Equal(urls, want) || cfg.CallTimeout.Seconds() != 5 {
		t.Errorf("listen %q sidecars %v timeout %s", listen, urls, cfg.CallTimeout)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, _, err := load(t, `
InterlinkAddress: "ftp://x"
Sidecars: {a: "gopher://x", b: "http://127.0.0.1:1"}
DefaultSidecar: "c"
TLS: {Enabled: true}
Retries: 0
MaxBodyBytes: 10
LogFormat: xml
`, nil)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"InterlinkAddress", `sidecar "a"`, "TLS.Enabled", "Retries", "MaxBodyBytes", "LogFormat", "no authentication configured"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestBadConfigValues(t *testing.T) {
	if _, _, err := load(t, "CallTimeout: forever\n", nil); err == nil || !strings.Contains(err.Error(), "forever") {
		t.Errorf("bad duration: %v", err)
	}
	if _, _, err := load(t, "InterlinkPort: [\n", nil); err == nil {
		t.Error("malformed YAML accepted")
	}
	if _, _, err := load(t, "", map[string]string{"INTERLINK_RETRIES": "many"}); err == nil || !strings.Contains(err.Error(), "INTERLINK_RETRIES") {
		t.Errorf("bad env value: %v", err)
	}
}

// TestTLSEnabledServesAnyScheme: INTERLINK_TLS_* serve HTTPS on the
// default http://127.0.0.1 (as examples/compose tells users to set them) and
// on https://; https:// without TLS.Enabled would serve plain HTTP and is
// refused.
func TestTLSEnabledServesAnyScheme(t *testing.T) {
	tlsEnv := map[string]string{
		"INTERLINK_AUTH_INSECURE": "true",
		"INTERLINK_TLS_ENABLED":   "true",
		"INTERLINK_TLS_CERT_FILE": "/etc/interlink/tls.crt",
		"INTERLINK_TLS_KEY_FILE":  "/etc/interlink/tls.key",
	}
	for _, tt := range []struct {
		name, address string
		tls           bool
		refused       string
	}{
		{name: "default address", tls: true},
		{name: "http", address: "http://0.0.0.0", tls: true},
		{name: "https", address: "https://0.0.0.0", tls: true},
		{name: "https without TLS", address: "https://0.0.0.0", refused: "InterlinkAddress https://0.0.0.0 needs TLS.Enabled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"INTERLINK_AUTH_INSECURE": "true"}
			if tt.tls {
				env = maps.Clone(tlsEnv)
			}
			if tt.address != "" {
				env["INTERLINKURL"] = tt.address
			}
			cfg, _, err := load(t, "", env)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Errorf("error %v does not say %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, srv, err := FromConfig(cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil || srv.CertFile != "/etc/interlink/tls.crt" || srv.KeyFile != "/etc/interlink/tls.key" {
				t.Errorf("server %+v (%v), want TLS", srv, err)
			}
		})
	}
}
