//go:build e2e

package docs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// TestE2ERunnableBlocks starts the demo as `make demo` does and runs every
// block of the docs marked runnable against it, in order, each in its own
// bash from the repository's root, so that none goes stale.
func TestE2ERunnableBlocks(t *testing.T) {
	blocks := runnableBlocks(t)
	if os.Getuid() != 0 {
		e2eenv.Prerequisite(t, "root (the docs' runnable blocks run against the demo, which starts a private SLURM)")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "interlink-docs-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755) // munged runs as another user
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	env := append(os.Environ(), "INTERLINK_DEMO_DIR="+filepath.Join(dir, "demo"))
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = root, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("make", "--no-print-directory", "build"); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := run(filepath.Join(root, "examples/demo/down.sh")); err != nil {
			t.Errorf("make demo-down: %v\n%s", err, out)
		}
	})
	if out, err := run(filepath.Join(root, "examples/demo/run.sh")); err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	k8s, err := run(filepath.Join(root, "examples/cluster/build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// The PATH a reader of the docs has: kubectl, the binaries, SLURM's commands.
	env = append(env, "PATH="+strings.TrimSpace(k8s)+":"+filepath.Join(root, "bin")+":"+os.Getenv("PATH")+":/usr/sbin:/sbin")
	for _, b := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail")
		cmd.Dir, cmd.Env, cmd.Stdin = root, env, strings.NewReader(b.code)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s:%d: the runnable block failed: %v\n--- block\n%s--- output\n%s", b.file, b.line, err, b.code, out)
			continue
		}
		t.Logf("%s:%d: ok\n%s", b.file, b.line, out)
	}
}
