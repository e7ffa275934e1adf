//go:build e2e

package slurm

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
)

// podmanEnv starts a private podman storage (.ci/podman.sh up, which
// installs podman when missing) with busybox imported as
// docker.io/library/busybox:latest, and returns its environment (DIR/env).
func podmanEnv(t *testing.T) map[string]string {
	t.Helper()
	script, _ := filepath.Abs("../../.ci/podman.sh")
	dir, err := os.MkdirTemp("", "interlink-podman-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(script, "down", dir).CombinedOutput(); err != nil {
			t.Errorf("podman.sh down: %v\n%s", err, out)
		}
		_ = os.RemoveAll(dir)
	})
	if out, err := exec.Command(script, "up", dir).CombinedOutput(); err != nil {
		t.Fatalf("podman.sh up: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			env[k] = v
		}
	}
	podmanCmd(t, env, "import", filepath.Join(imageDir, "busybox.tar"), "docker.io/library/busybox:latest")
	return env
}

// podmanCmd runs podman with env and returns its output.
func podmanCmd(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	out, err := podmanRun(env, args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func podmanRun(env map[string]string, args ...string) (string, error) {
	cmd := exec.Command("podman", args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestE2EPodman runs pods with podman in real Slurm jobs, the sidecar
// sharing its host and storage with the jobs (PodmanLocalStorage), podman's
// config given to both through JobEnv.
func TestE2EPodman(t *testing.T) {
	env := podmanEnv(t)
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	cfg := DefaultConfig()
	cfg.DataRootFolder, cfg.StatePath = filepath.Join(dir, "jobs"), filepath.Join(dir, "state.db")
	cfg.Runtime, cfg.PodmanLocalStorage, cfg.JobEnv = RuntimePodman, true, env
	cfg.EnvExecPath = envExec
	cfg.Accounting, cfg.SacctArgs = true, []string{"-c"}
	cfg.LogPollInterval = config.D(100 * time.Millisecond)
	s, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	t.Run("MissingImage", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("podman-missing", "true")
		d.Pod.Spec.Containers[0].Image = "interlink-test/absent:1"
		_, err := s.Create(context.Background(), d)
		if api.ReasonOf(err) != api.ReasonImageNotFound || !strings.Contains(err.Error(), "interlink-test/absent:1") {
			t.Fatalf("create: %v, want ImageNotFound naming the image", err)
		}
	})

	// The container's memory counts in its job (the helper adopts conmon):
	// over --mem, Slurm kills the job and the container is OOMKilled. Such
	// a job leaves its container in podman's storage; deleting the pod
	// removes it.
	t.Run("OOMKilledAndRemoved", func(t *testing.T) {
		t.Parallel()
		// It runs within its limit (podman's own memory counts too) until
		// it takes 200 MB.
		d := e2ePod("podman-oom", `echo started; sleep 2; x=$(yes | head -c 200000000); echo "${#x}"; sleep 60`)
		d.Pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("120Mi")}
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, 2*time.Minute, "terminated", terminated)
		if term := st.Containers[0].State.Terminated; term.Reason != "OOMKilled" || term.ExitCode != 137 {
			t.Fatalf("container %+v, want OOMKilled, 137", term)
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); !strings.Contains(got, "started") || strings.Contains(got, "200000000") {
			t.Fatalf("logs %q, want the container killed after it started and before it took its memory", got)
		}
		id := containerID(d.Pod.UID, "c0")
		if out, err := podmanRun(env, "container", "exists", id); err != nil {
			t.Fatalf("no container %s left by the killed job: %v %s", id, err, out)
		}
		if err := s.Delete(context.Background(), &d.Pod); err != nil {
			t.Fatal(err)
		}
		if out, err := podmanRun(env, "container", "exists", id); err == nil {
			t.Fatalf("container %s is still in podman's storage after delete: %s", id, out)
		}
	})

	// Deleting a running pod cancels its job: the container goes with it.
	t.Run("DeleteStopsContainer", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("podman-delete", "echo started; exec sleep 600")
		create(t, s, d)
		waitFor(t, s, &d.Pod, 2*time.Minute, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
		id := containerID(d.Pod.UID, "c0")
		deadline := time.Now().Add(time.Minute)
		for !regexp.MustCompile(`(?m)^` + id + `$`).MatchString(podmanCmd(t, env, "ps", "--format", "{{.Names}}")) {
			if time.Now().After(deadline) {
				t.Fatalf("container %s never ran", id)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := s.Delete(context.Background(), &d.Pod); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := podmanRun(env, "container", "exists", id); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container %s still exists after delete", id)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	// The job gets podman's config through JobEnv alone: the image is only
	// in the private storage.
	t.Run("Runs", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("podman-runs", `echo "$GREETING from $PWD"; exit 3`)
		d.Pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "it's $(id)"}}
		d.Pod.Spec.Containers[0].WorkingDir = "/made/here"
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, 2*time.Minute, "terminated", terminated)
		if term := st.Containers[0].State.Terminated; term.ExitCode != 3 {
			t.Fatalf("container %+v, want exit code 3", term)
		}
		if got := strings.TrimSpace(logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{})); got != "it's $(id) from /made/here" {
			t.Fatalf("logs %q", got)
		}
	})
}

// testWriter writes the sidecar's log into the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
