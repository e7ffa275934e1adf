package installer

import (
	"bytes"
	"context"
	"os"
	osuser "os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/seed-3f807049/interlink/functions"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars/docker"
	"github.com/seed-3f807049/interlink/sidecars/slurm"
	"github.com/seed-3f807049/interlink/vk/token"
)

// localAnswers writes everything under a temporary directory, as the
// current user.
func localAnswers(t *testing.T, sidecar string) (Answers, string) {
	t.Helper()
	dir := t.TempDir()
	me, err := osuser.Current()
	if err != nil {
		t.Fatal(err)
	}
	a := DefaultAnswers()
	a.Sidecar, a.PublicURL, a.User = sidecar, "http://127.0.0.1:3000", me.Username
	a.BinDir = filepath.Join(dir, "bin")
	a.ConfigDir = filepath.Join(dir, "etc")
	a.StateDir = filepath.Join(dir, "state")
	a.UnitDir = filepath.Join(dir, "units")
	a.OutDir = filepath.Join(dir, "cluster")
	return a, dir
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestRunStatic(t *testing.T) {
	a, _ := localAnswers(t, SidecarSlurm)
	var out bytes.Buffer
	if err := Run(context.Background(), a, Options{Out: &out}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		a.ConfigDir: 0o700, a.StateDir: 0o700, a.OutDir: 0o700,
		filepath.Join(a.ConfigDir, "interlink.yaml"):       0o600,
		filepath.Join(a.ConfigDir, "interlink-slurm.yaml"): 0o600,
		filepath.Join(a.ConfigDir, StaticTokensName):       0o600,
		filepath.Join(a.UnitDir, "interlink.service"):      0o644,
		filepath.Join(a.OutDir, VKTokenName):               0o600,
		filepath.Join(a.OutDir, SecretsName):               0o600,
		filepath.Join(a.OutDir, ValuesName):                0o644,
	} {
		if got := mode(t, p); got != want {
			t.Errorf("%s: mode %s, want %s", p, got, want)
		}
	}
	tok, err := os.ReadFile(filepath.Join(a.OutDir, VKTokenName))
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(tok))) < 40 {
		t.Errorf("token %d bytes: too short", len(tok))
	}
	if strings.Contains(out.String(), strings.TrimSpace(string(tok))) {
		t.Error("the token was printed")
	}
	for _, want := range []string{"systemctl enable --now interlink-slurm.service interlink.service", "helm install interlink charts/interlink"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, out.String())
		}
	}
	// The binaries load what was written (config.Load: file, environment,
	// validation).
	il := functions.DefaultConfig()
	if _, err := config.Load(&il, filepath.Join(a.ConfigDir, "interlink.yaml")); err != nil {
		t.Error(err)
	}
	sl := slurm.DefaultConfig()
	if _, err := config.Load(&sl, filepath.Join(a.ConfigDir, "interlink-slurm.yaml")); err != nil {
		t.Error(err)
	}

	// A second run keeps the token and changes nothing.
	before := snapshot(t, a)
	if err := Run(context.Background(), a, Options{Out: &out}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("a second run changed the files")
	}

	// A hand-edited file is not overwritten without --force.
	cfg := filepath.Join(a.ConfigDir, "interlink.yaml")
	if err := os.WriteFile(cfg, []byte("# edited\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), a, Options{Out: &out})
	if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v, want a conflict naming %s", err, cfg)
	}
	if err := Run(context.Background(), a, Options{Out: &out, Force: true}); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("--force did not restore the file")
	}
}

// snapshot concatenates every written file.
func snapshot(t *testing.T, a Answers) string {
	t.Helper()
	var b strings.Builder
	for _, d := range []string{a.ConfigDir, a.UnitDir, a.OutDir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(e.Name() + "\n" + string(data))
		}
	}
	return b.String()
}

func TestRunDeviceCode(t *testing.T) {
	f := newFakeIssuer(t, "vk")
	a, dir := localAnswers(t, SidecarDocker)
	a.Auth.Issuer, a.Auth.ClientID = f.URL(), "vk"
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Run(ctx, a, Options{Out: &out}); err != nil {
		t.Fatal(err)
	}
	rt := filepath.Join(a.OutDir, RefreshTokenName)
	got, err := os.ReadFile(rt)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != fakeRefresh || mode(t, rt) != 0o600 {
		t.Errorf("%s: mode %s", rt, mode(t, rt))
	}
	if strings.Contains(out.String(), fakeRefresh) {
		t.Error("the refresh token was printed")
	}
	if !strings.Contains(out.String(), fakeUserCode) {
		t.Errorf("the user code was not shown:\n%s", out.String())
	}
	var values map[string]any
	raw, _ := os.ReadFile(filepath.Join(a.OutDir, ValuesName))
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	r := values["token"].(map[string]any)["refresher"].(map[string]any)
	if r["tokenURL"] != f.URL()+"/token" || r["grant"] != "refresh_token" {
		t.Errorf("refresher values %v", r)
	}
	// interlink-token-refresher accepts the refresh token file as is.
	tc := token.DefaultConfig()
	tc.TokenURL, tc.Grant, tc.ClientID, tc.RefreshTokenFile, tc.Audience = f.URL()+"/token", token.GrantRefreshToken, "vk", rt, "interlink"
	tc.TokenFile = filepath.Join(dir, "vk-access-token")
	if _, err := token.New(ctx, tc, nil); err != nil {
		t.Errorf("the token refresher refuses the written refresh token: %v", err)
	}
	il := functions.DefaultConfig()
	if _, err := config.Load(&il, filepath.Join(a.ConfigDir, "interlink.yaml")); err != nil {
		t.Error(err)
	}
	if il.Auth.Issuers[0] != f.URL() || il.Auth.Audiences[0] != "interlink" {
		t.Errorf("interlink Auth %+v", il.Auth)
	}
	dk := docker.DefaultConfig()
	if _, err := config.Load(&dk, filepath.Join(a.ConfigDir, "interlink-docker.yaml")); err != nil {
		t.Error(err)
	}
}

func TestRunRefusesEarly(t *testing.T) {
	f := newFakeIssuer(t, "vk")
	f.noDevice = true
	a, _ := localAnswers(t, SidecarDocker)
	a.Auth.Issuer, a.Auth.ClientID = f.URL(), "vk"
	err := Run(context.Background(), a, Options{})
	if err == nil || !strings.Contains(err.Error(), "does not support the device-code grant") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(a.ConfigDir); !os.IsNotExist(err) {
		t.Error("files were written before the failure")
	}

	b, _ := localAnswers(t, SidecarDocker)
	b.User = "no-such-user-here"
	if err := Run(context.Background(), b, Options{}); err == nil || !strings.Contains(err.Error(), "User:") {
		t.Errorf("err = %v, want one naming User", err)
	}

	c, dir := localAnswers(t, SidecarDocker)
	c.PublicURL = "https://127.0.0.1:3000"
	c.TLSCertFile, c.TLSKeyFile = filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key")
	err = Run(context.Background(), c, Options{})
	if err == nil || !strings.Contains(err.Error(), "TLSCertFile:") || !strings.Contains(err.Error(), "TLSKeyFile:") {
		t.Errorf("err = %v, want both TLS files named", err)
	}
}

// TestMainInteractive: on a terminal, the answers not given are asked for;
// the file's and the flags' answers are offered as defaults.
func TestMainInteractive(t *testing.T) {
	a, dir := localAnswers(t, "")
	a.PublicURL = ""
	raw, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "answers.yaml")
	if err := os.WriteFile(f, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// Sidecar, PublicURL, Auth.Mode, NodeName, User; Enter keeps a default.
	in := strings.NewReader("docker\nhttp://127.0.0.1:3100\n\nmy-node\n\n")
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"--answers", f, "--namespace", "il"}, in, &out, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	v, err := os.ReadFile(filepath.Join(a.OutDir, ValuesName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nodeName: my-node", "url: http://127.0.0.1", "port: 3100"} {
		if !strings.Contains(string(v), want) {
			t.Errorf("values lack %q:\n%s", want, v)
		}
	}
	if !strings.Contains(out.String(), "kubectl create namespace il") {
		t.Errorf("the --namespace flag was not used:\n%s", out.String())
	}
	// --non-interactive on a terminal asks nothing (and fails: no sidecar).
	err = Main(context.Background(), []string{"--answers", f, "--non-interactive"}, strings.NewReader(""), &out, true)
	if err == nil || !strings.Contains(err.Error(), "Sidecar: missing") {
		t.Errorf("err = %v", err)
	}
}
