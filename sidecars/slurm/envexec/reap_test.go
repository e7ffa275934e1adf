package envexec

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReapAdoptsAndWaits: what PROGRAM leaves running is adopted and waited
// for, and PROGRAM's exit code is the helper's.
func TestReapAdoptsAndWaits(t *testing.T) {
	f := filepath.Join(t.TempDir(), "adopted")
	// The background subshell outlives sh: it becomes the helper's child.
	out, code := run(t, ReapMode, "--", "/bin/sh", "-c", `(sleep 1; echo "$PPID" >"$1") & exit 3`, "sh", f)
	if code != 3 {
		t.Fatalf("exit code %d, want 3: %s", code, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("the orphan did not finish before the helper returned: %v", err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		t.Errorf("the orphan was adopted by init, not by the helper")
	}
}

func TestReapCodes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"--", "/bin/sh", "-c", "kill -TERM $$"}, 128 + 15},
		{[]string{"--", "/no/such/program"}, 127},
		{[]string{"--", "/etc/passwd"}, 126},
		{[]string{"/bin/true"}, 1},
	} {
		if out, code := run(t, append([]string{ReapMode}, tt.args...)...); code != tt.want {
			t.Errorf("reap %q: exit code %d, want %d: %s", tt.args, code, tt.want, out)
		}
	}
}

// TestReapForwardsSignals: SIGTERM to the helper reaches PROGRAM.
func TestReapForwardsSignals(t *testing.T) {
	dir := t.TempDir()
	ready, got := filepath.Join(dir, "ready"), filepath.Join(dir, "got")
	script := `trap 'echo term >"$2"; exit 0' TERM; : >"$1"; while :; do sleep 0.1; done`
	cmd := exec.Command(os.Args[0], ReapMode, "--", "/bin/sh", "-c", script, "sh", ready, got)
	cmd.Env = []string{"ENVEXEC_TEST_HELPER=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if b, err := os.ReadFile(got); err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("PROGRAM did not get SIGTERM: %q %v", b, err)
	}
}
