//go:build e2e

package charts

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// TestE2EComposeRemoteSide brings examples/compose/compose.yaml up for real
// with Debian's docker-compose on a private dockerd (.ci/docker.sh), with
// images built locally FROM scratch as `make images` builds them, checks
// that /pinglink answers through interlink and the Docker sidecar, and
// brings it down.
func TestE2EComposeRemoteSide(t *testing.T) {
	for _, tool := range []string{"docker-compose", "docker", "dockerd", "containerd"} {
		if _, err := exec.LookPath(tool); err != nil {
			e2eenv.Prerequisite(t, "%s (run .ci/docker.sh install as root)", tool)
		}
	}
	if os.Geteuid() != 0 {
		e2eenv.Prerequisite(t, "root, to run a private dockerd")
	}
	dir, err := os.MkdirTemp("", "interlink-compose-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	dockerDir := filepath.Join(dir, "docker")
	t.Cleanup(func() {
		if out, err := command(nil, filepath.Join(repoDir, ".ci/docker.sh"), "down", dockerDir); err != nil {
			t.Logf(".ci/docker.sh down: %v\n%s", err, out)
		}
		_ = os.RemoveAll(dir)
	})
	start := time.Now()
	if out, err := command(nil, filepath.Join(repoDir, ".ci/docker.sh"), "up", dockerDir); err != nil {
		t.Fatalf(".ci/docker.sh up: %v\n%s", err, out)
	}
	dockerHost := "DOCKER_HOST=unix://" + filepath.Join(dockerDir, "docker.sock")

	// The images, as `make images` builds them: static binaries, FROM scratch.
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-trimpath", "-o", bin+"/", "../functions/cmd/interlink", "../sidecars/docker/cmd/interlink-docker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for name, dockerfile := range map[string]string{"interlink": "functions/cmd/interlink/Dockerfile", "interlink-docker": "sidecars/docker/cmd/interlink-docker/Dockerfile"} {
		if out, err := command([]string{dockerHost}, "docker", "build", "-q", "-t", "interlink/"+name+":dev", "-f", filepath.Join(repoDir, dockerfile), bin); err != nil {
			t.Fatalf("docker build %s: %v\n%s", name, err, out)
		}
	}
	t.Logf("private dockerd up and images built in %s", time.Since(start).Round(time.Millisecond))

	// The token file and the data directory belong to the images' user
	// (65532) and nobody else.
	token := fmt.Sprintf("compose-e2e-%d", time.Now().UnixNano())
	tokens, data, runDir := filepath.Join(dir, "tokens.csv"), filepath.Join(dir, "data"), filepath.Join(dir, "run")
	if err := os.WriteFile(tokens, []byte(token+",compose-e2e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{data, runDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{tokens, data, runDir} {
		if err := os.Chown(p, 65532, 65532); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o711); err != nil { // the containers' user reaches its files
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dockerDir, "docker.sock"), &st); err != nil {
		t.Fatal(err)
	}
	ilPort := e2eenv.FreePort(t)
	env := []string{dockerHost, "INTERLINK_PORT=" + ilPort,
		"DOCKER_SOCK=" + filepath.Join(dockerDir, "docker.sock"), fmt.Sprintf("DOCKER_GID=%d", st.Gid),
		"INTERLINK_TOKENS_FILE=" + tokens, "INTERLINK_DATA_DIR=" + data, "INTERLINK_RUN_DIR=" + runDir, "INTERLINK_POD_NETWORK=host"}
	compose := func(args ...string) (string, error) {
		return command(env, "docker-compose", append([]string{"-f", filepath.Join(repoDir, "examples/compose/compose.yaml"), "-p", "interlinke2e"}, args...)...)
	}
	t.Cleanup(func() { _, _ = compose("down", "--timeout", "5") })
	start = time.Now()
	if out, err := compose("up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	defer func() {
		if t.Failed() {
			out, _ := compose("logs", "--no-color", "--tail", "30")
			t.Logf("docker-compose logs:\n%s", out)
		}
	}()

	ping := func(withToken bool) (int, string, error) {
		req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+ilPort+"/pinglink", nil)
		if err != nil {
			return 0, "", err
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	e2eenv.Eventually(t, "/pinglink answered 200 through interlink and the Docker sidecar", 60*time.Second, func() error {
		code, body, err := ping(true)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "docker") {
			return fmt.Errorf("%d %s", code, body)
		}
		t.Logf("/pinglink: %d %s (%s after docker-compose up)", code, strings.TrimSpace(body), time.Since(start).Round(time.Millisecond))
		return nil
	})
	if code, body, err := ping(false); err != nil || code != http.StatusUnauthorized {
		t.Errorf("/pinglink without a token: %d %s %v, want 401", code, body, err)
	}
	// interlink reached the sidecar on its unix socket, 0660 and the
	// images' user's, in a directory only that user enters.
	var sock syscall.Stat_t
	if err := syscall.Stat(filepath.Join(runDir, "docker.sock"), &sock); err != nil || sock.Mode&0o777 != 0o660 || sock.Uid != 65532 {
		t.Errorf("the sidecar's socket: %v, mode %o uid %d; want 0660 and uid 65532", err, sock.Mode&0o777, sock.Uid)
	}

	if out, err := compose("down", "--timeout", "5"); err != nil {
		t.Fatalf("docker-compose down: %v\n%s", err, out)
	}
	if out, err := command([]string{dockerHost}, "docker", "ps", "-aq"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("containers left after docker-compose down: %q %v", out, err)
	}
	if _, _, err := ping(true); err == nil {
		t.Error("interlink still answers after docker-compose down")
	}
}
