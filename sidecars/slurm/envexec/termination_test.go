package envexec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTerminationMessage: with -t the command runs as a child; its exit
// code comes back and at most MaxMessageBytes of its message, from a
// regular file only, reach OUT (0600), replacing an older one.
func TestTerminationMessage(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "env")
	_ = os.WriteFile(env, nil, 0o600)
	msg, out := filepath.Join(dir, "msg=file"), filepath.Join(dir, "out")
	secret := filepath.Join(dir, "secret")
	_ = os.WriteFile(secret, []byte("host secret"), 0o600)
	long := strings.Repeat("x", MaxMessageBytes+100)
	for _, c := range []struct {
		name, script, want string
		code               int
	}{
		{"copied", `printf 'it failed: "$x"' > "$1"; exit 3`, `it failed: "$x"`, 3},
		{"capped", `printf '%s' "$2" > "$1"`, long[:MaxMessageBytes], 0},
		{"missing", `rm -f "$1"`, "", 0},
		{"symlink", `rm -f "$1"; ln -s "$3" "$1"; exit 1`, "", 1},
		{"fifo", `rm -f "$1"; mkfifo "$1"; exit 2`, "", 2},
		{"signal", `kill -KILL $$`, "", 128 + 9},
	} {
		_ = os.WriteFile(out, []byte("an older message"), 0o644)
		_ = os.Remove(msg)
		got, code := run(t, "-t", msg+"="+out, env, "--", "/bin/sh", "-c", c.script, "sh", msg, long, secret)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d: %s", c.name, code, c.code, got)
		}
		b, err := os.ReadFile(out)
		if err != nil || string(b) != c.want {
			t.Errorf("%s: message %.40q (%v), want %.40q", c.name, b, err, c.want)
		}
	}
	// The child is confined as an exec'd command is.
	got, code := run(t, "-t", msg+"="+out, env, "--", "/bin/grep", "-E", "^(NoNewPrivs|CapEff)", "/proc/self/status")
	if code != 0 || !strings.Contains(got, "NoNewPrivs:\t1") || !strings.Contains(got, fmt.Sprintf("CapEff:\t%016x", keptMask())) {
		t.Errorf("child's status: %q (exit %d), want no_new_privs and only the kept capabilities", got, code)
	}
	_ = os.Remove(out)
	run(t, "-t", msg+"="+out, env, "--", "/bin/true")
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a new OUT: %v %v, want mode 0600", st, err)
	}
	// OUT itself is never followed through a symlink.
	_ = os.Remove(out)
	_ = os.Symlink(secret, out)
	run(t, "-t", msg+"="+out, env, "--", "/bin/sh", "-c", `echo overwritten > "$0"`, msg)
	if b, _ := os.ReadFile(secret); string(b) != "host secret" {
		t.Errorf("OUT was followed: %q", b)
	}
	for _, bad := range []string{"nothing", "=/out", msg + "=relative"} {
		if got, code := run(t, "-t", bad, env, "--", "/bin/true"); code != 1 || !strings.Contains(got, "usage") {
			t.Errorf("-t %q: exit %d %q", bad, code, got)
		}
	}
}

// TestTerminationSignals: the helper passes SIGTERM on; the command's
// trap decides the exit code, and the message is still copied.
func TestTerminationSignals(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "env")
	_ = os.WriteFile(env, nil, 0o600)
	msg, out, ready := filepath.Join(dir, "msg"), filepath.Join(dir, "out"), filepath.Join(dir, "ready")
	cmd := exec.Command(os.Args[0], "-t", msg+"="+out, env, "--", "/bin/sh", "-c",
		`trap 'echo terminated > "$0"; exit 42' TERM; touch "$1"; while :; do sleep 0.05; done`, msg, ready)
	cmd.Env = []string{"ENVEXEC_TEST_HELPER=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(end) {
			_ = cmd.Process.Kill()
			t.Fatal("the command did not start")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("exit: %v, want 42", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "terminated\n" {
		t.Errorf("message %q", b)
	}
}
