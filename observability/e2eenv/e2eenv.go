package e2eenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RepoDir returns the repository's root: the nearest directory above the
// working directory that holds go.mod.
func RepoDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build builds the packages (paths relative to the repository's root, such
// as vk/cmd/interlink-vk) into a new temporary directory, named after
// prefix, and returns it; remove it when done.
func Build(repo, prefix string, pkgs ...string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, p := range pkgs {
		args = append(args, "./"+p)
	}
	build := exec.Command("go", args...)
	build.Dir = repo
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("build %s: %w", strings.Join(pkgs, " "), err)
	}
	return dir, nil
}

// K8sBin returns the directory of the control plane's binaries, kubectl
// and helm, building them once (examples/cluster/build.sh).
func K8sBin(repo string) (string, error) {
	out, err := exec.Command(filepath.Join(repo, "examples/cluster/build.sh")).Output() //nolint:gosec // the repository's own script
	if err != nil {
		return "", fmt.Errorf("control-plane binaries (examples/cluster/build.sh): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Prerequisite stops the test when something it needs is missing: a
// failure under CI=true, a skip on a developer's machine.
func Prerequisite(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite: "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}

// Hydra is Ory Hydra started by .ci/hydra.sh: its public (issuer) and
// admin URLs.
type Hydra struct{ Public, Admin string }

// StartHydra starts Hydra in dir with access tokens living ttl (a Go
// duration such as 1h) and stops it when the test ends.
func StartHydra(t testing.TB, repo, dir, ttl string) Hydra {
	t.Helper()
	up := exec.Command(filepath.Join(repo, ".ci/hydra.sh"), "up", dir) //nolint:gosec // the repository's own script
	up.Env = append(os.Environ(), "HYDRA_TTL_ACCESS_TOKEN="+ttl)
	up.Stdout, up.Stderr = os.Stderr, os.Stderr
	if err := up.Run(); err != nil {
		t.Fatalf("hydra: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command(filepath.Join(repo, ".ci/hydra.sh"), "down", dir).Run() }) //nolint:gosec // the repository's own script
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatalf("hydra: %v", err)
	}
	var h Hydra
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "export HYDRA_PUBLIC="); ok {
			h.Public = v
		}
		if v, ok := strings.CutPrefix(line, "export HYDRA_ADMIN="); ok {
			h.Admin = v
		}
	}
	return h
}

// Client registers a client_credentials client allowed audience and the
// scope "read", and returns its ID and secret.
func (h Hydra) Client(t testing.TB, audience string) (id, secret string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"grant_types": []string{"client_credentials"}, "audience": []string{audience},
		"scope": "read", "token_endpoint_auth_method": "client_secret_basic"})
	resp, err := http.Post(h.Admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || c.ID == "" {
		t.Fatalf("create a Hydra client: %d %v", resp.StatusCode, err)
	}
	return c.ID, c.Secret
}

// Main is the TestMain of an e2e package: it sets repo (the repository's
// root), bin (our binaries, built from pkgs into a temporary directory
// named after prefix) and k8s (the control plane's binaries), runs the
// tests, removes the binaries and exits with the tests' code.
func Main(m *testing.M, repo, bin, k8s *string, prefix string, pkgs ...string) {
	code, err := setup(m, repo, bin, k8s, prefix, pkgs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M, repo, bin, k8s *string, prefix string, pkgs []string) (int, error) {
	var err error
	if *repo, err = RepoDir(); err != nil {
		return 0, err
	}
	if *bin, err = Build(*repo, prefix, pkgs...); err != nil {
		return 0, err
	}
	defer os.RemoveAll(*bin)
	if *k8s, err = K8sBin(*repo); err != nil {
		return 0, err
	}
	return m.Run(), nil
}
