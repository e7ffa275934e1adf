package installer

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var goldenSecrets = Secrets{ //nolint:gosec // G101: fake values for the golden files
	StaticToken:  "STATIC-TOKEN-FOR-TESTS",
	SidecarToken: "SIDECAR-TOKEN-FOR-TESTS",
	RefreshToken: "REFRESH-TOKEN-FOR-TESTS",
	ClientSecret: "CLIENT-SECRET-FOR-TESTS",
	TokenURL:     "https://iam.example.org/oauth2/token",
	CACert:       "-----BEGIN CERTIFICATE-----\nMIIB-FAKE-CA-FOR-TESTS\n-----END CERTIFICATE-----\n",
}

// goldenCases are answers files in testdata/answers; each renders into
// testdata/golden/<case>/ (paths as they would be on the host).
var goldenCases = []string{"slurm-device-code", "docker-static", "docker-client-credentials"}

func TestGolden(t *testing.T) {
	for _, name := range goldenCases {
		t.Run(name, func(t *testing.T) {
			a := DefaultAnswers()
			if err := LoadAnswers(filepath.Join("testdata", "answers", name+".yaml"), &a); err != nil {
				t.Fatal(err)
			}
			a.Complete()
			if err := a.Validate(); err != nil {
				t.Fatal(err)
			}
			s := goldenSecrets
			if a.Auth.ClientSecretFile == "" {
				s.ClientSecret = ""
			}
			if a.TLSCAFile == "" {
				s.CACert = ""
			}
			plan, err := Render(a, s)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join("testdata", "golden", name)
			var listing strings.Builder
			for _, d := range plan.Dirs {
				fmt.Fprintf(&listing, "dir  %s %s service=%v\n", d.Mode, d.Path, d.Service)
			}
			files := map[string][]byte{}
			for _, f := range plan.Files {
				fmt.Fprintf(&listing, "file %s %s service=%v\n", f.Mode, f.Path, f.Service)
				files[strings.TrimPrefix(f.Path, "/")] = f.Data
			}
			files["plan.txt"] = []byte(listing.String())
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for p, data := range files {
					if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			for p, data := range files {
				want, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil {
					t.Fatalf("%v (run go test ./functions/installer/ -run TestGolden -update)", err)
				}
				if diff := cmp.Diff(string(want), string(data)); diff != "" {
					t.Errorf("%s differs from its golden file (-golden +rendered):\n%s", p, diff)
				}
			}
			// No golden file is left over from an older rendering.
			err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				if _, ok := files[rel]; !ok {
					t.Errorf("stale golden file %s", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRenderedUnits reads the units back: ExecStart is the binary with
// --config and the rendered config, the hardening is there, and the
// secrets are only in 0600 files.
func TestRenderedUnits(t *testing.T) {
	for _, name := range goldenCases {
		a := DefaultAnswers()
		if err := LoadAnswers(filepath.Join("testdata", "answers", name+".yaml"), &a); err != nil {
			t.Fatal(err)
		}
		a.Complete()
		plan, err := Render(a, goldenSecrets)
		if err != nil {
			t.Fatal(err)
		}
		byPath := map[string]File{}
		for _, f := range plan.Files {
			byPath[f.Path] = f
			for _, secret := range []string{goldenSecrets.StaticToken, goldenSecrets.RefreshToken, goldenSecrets.ClientSecret, goldenSecrets.SidecarToken} {
				if strings.Contains(string(f.Data), secret) && f.Mode != 0o600 {
					t.Errorf("%s: %s holds a secret with mode %s", name, f.Path, f.Mode)
				}
			}
		}
		for _, bin := range []string{"interlink", SidecarBinary(a.Sidecar)} {
			u := byPath[filepath.Join(a.UnitDir, bin+".service")]
			opts := unitOptions(t, u.Data)
			argv, err := splitExec(opts["ExecStart"][0])
			if err != nil {
				t.Fatal(err)
			}
			cfgName := bin + ".yaml"
			want := []string{filepath.Join(a.BinDir, bin), "--config", filepath.Join(a.ConfigDir, cfgName)}
			if diff := cmp.Diff(want, argv); diff != "" {
				t.Errorf("%s %s ExecStart (-want +got):\n%s", name, bin, diff)
			}
			if _, ok := byPath[want[2]]; !ok {
				t.Errorf("%s: ExecStart names %s, which is not written", name, want[2])
			}
			for k, v := range map[string]string{"User": a.User, "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"} {
				if got := opts[k]; len(got) != 1 || got[0] != v {
					t.Errorf("%s %s: %s = %q, want %q", name, bin, k, got, v)
				}
			}
		}
	}
}

// TestSidecarIsAuthenticated: interlink reaches the sidecar on a unix socket
// in StateDir (0700, the services' account), or, with SidecarPort, on TCP
// where the sidecar requires the token interlink sends.
func TestSidecarIsAuthenticated(t *testing.T) {
	for _, name := range goldenCases {
		a := DefaultAnswers()
		if err := LoadAnswers(filepath.Join("testdata", "answers", name+".yaml"), &a); err != nil {
			t.Fatal(err)
		}
		a.Complete()
		plan, err := Render(a, goldenSecrets)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]File{}
		for _, f := range plan.Files {
			files[f.Path] = f
		}
		var il, sc struct {
			Listen, SidecarURL, SidecarPort, SidecarTokenFile string
			Auth                                              struct{ TokenFile string }
		}
		for path, into := range map[string]any{InterlinkConfigName: &il, SidecarBinary(a.Sidecar) + ".yaml": &sc} {
			if err := yaml.Unmarshal(files[filepath.Join(a.ConfigDir, path)].Data, into); err != nil {
				t.Fatal(err)
			}
		}
		if a.SidecarPort == 0 {
			if sc.Listen != a.SidecarSocket() || il.SidecarURL != "unix://"+a.SidecarSocket() || sc.Auth.TokenFile != "" {
				t.Errorf("%s: sidecar Listen %q, interlink SidecarURL %q: want the socket %s", name, sc.Listen, il.SidecarURL, a.SidecarSocket())
			}
			if !slices.ContainsFunc(plan.Dirs, func(d Dir) bool { return d.Path == a.StateDir && d.Mode == 0o700 && d.Service }) {
				t.Errorf("%s: the socket's directory %s is not the services' own 0700", name, a.StateDir)
			}
			continue
		}
		tokens, token := files[sc.Auth.TokenFile], files[il.SidecarTokenFile]
		if sc.Listen != fmt.Sprintf("127.0.0.1:%d", a.SidecarPort) || tokens.Mode != 0o600 || token.Mode != 0o600 {
			t.Errorf("%s: sidecar on %q with Auth.TokenFile %q (%s), interlink's SidecarTokenFile %q (%s)", name, sc.Listen, sc.Auth.TokenFile, tokens.Mode, il.SidecarTokenFile, token.Mode)
		}
		if tok := strings.TrimSpace(string(token.Data)); tok == "" || !strings.Contains(string(tokens.Data), "\n"+tok+",") {
			t.Errorf("%s: the sidecar's tokens do not hold the token interlink sends", name)
		}
	}
}

func unitOptions(t *testing.T, data []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestValuesMatchChart: every key of the rendered Helm values exists in
// charts/interlink/values.yaml (the chart's documented values).
func TestValuesMatchChart(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "charts", "interlink", "values.yaml"))
	if err != nil {
		t.Fatalf("charts/interlink/values.yaml: %v", err)
	}
	var chart map[string]any
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	for _, name := range goldenCases {
		a := DefaultAnswers()
		if err := LoadAnswers(filepath.Join("testdata", "answers", name+".yaml"), &a); err != nil {
			t.Fatal(err)
		}
		a.Complete()
		out, err := helmValues(a, goldenSecrets)
		if err != nil {
			t.Fatal(err)
		}
		var values map[string]any
		if err := yaml.Unmarshal(out, &values); err != nil {
			t.Fatal(err)
		}
		checkKeys(t, name, "", values, chart)
	}
}

func checkKeys(t *testing.T, name, prefix string, got, chart map[string]any) {
	for k, v := range got {
		cv, ok := chart[k]
		if !ok {
			t.Errorf("%s: value %s%s is not in the chart's values.yaml", name, prefix, k)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			csub, ok := cv.(map[string]any)
			if !ok {
				t.Errorf("%s: value %s%s is a map, the chart's is %T", name, prefix, k, cv)
				continue
			}
			checkKeys(t, name, prefix+k+".", sub, csub)
		}
	}
}
