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
	// The docs' blocks call bin/interlink: the repository's build.
	d := e2eenv.StartDemo(t, root, filepath.Join(root, "bin"), func(d *e2eenv.Demo) {
		t.Cleanup(func() {
			if out, err := d.Down(root); err != nil {
				t.Errorf("make demo-down: %v\n%s", err, out)
			}
		})
	})
	env := d.Env
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = root, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	k8s, err := run(filepath.Join(root, "examples/cluster/build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// The PATH a reader of the docs has: kubectl, the binaries, SLURM's commands.
	env = append(env, "PATH="+strings.TrimSpace(k8s)+":"+filepath.Join(root, "bin")+":"+os.Getenv("PATH")+":/usr/sbin:/sbin")
	for _, b := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		// The block as bash's argument, not its standard input: a command of
		// the block reading standard input cannot swallow the rest of it.
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", b.code)
		cmd.Dir, cmd.Env = root, env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s:%d: the runnable block failed: %v\n--- block\n%s--- output\n%s", b.file, b.line, err, b.code, out)
			continue
		}
		t.Logf("%s:%d: ok\n%s", b.file, b.line, out)
	}
}
