package prober

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestIsRun: a pid file counts only while its run is current: no NAME.exit,
// and the process began when the job recorded the run's start. A pid file
// left by a run that ended may name another pod's process by then.
func TestIsRun(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	_, start, err := hostProc.stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id := procID{pid: cmd.Process.Pid, start: start}
	began, err := hostProc.startedAt(start)
	if d := time.Since(began); err != nil || d < -2*time.Second || d > 5*time.Second {
		t.Fatalf("the process began %v ago (%v): /proc's times are misread", d, err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, c := range []struct {
		name    string
		started string
		exit    bool
		ok      bool
	}{
		{"current run", now + "\n", false, true},
		{"current run, restarted", now + " 2 1 2026-12-05T10:00:00Z 2026-12-05T10:01:00Z\n", false, true},
		{"the run ended", now + "\n", true, false},
		{"a run of an hour ago: the pid is another's", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano) + "\n", false, false},
		{"no start recorded", "", false, false},
		{"garbage", "yesterday\n", false, false},
	} {
		_ = os.Remove(filepath.Join(dir, "c.exit"))
		_ = os.Remove(filepath.Join(dir, "c.started"))
		if c.started != "" {
			write("c.started", c.started)
		}
		if c.exit {
			write("c.exit", "0 "+now+"\n")
		}
		err := hostProc.isRun(dir, "c", id)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, errNotTheRun)) {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
