package prober

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// newProber is a prober of spec over the real /proc, whose containers
// are the test's children, in a temporary pod directory.
func newProber(t *testing.T, spec Spec) *prober {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "containers")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &prober{spec: spec, dir: dir, proc: hostProc, ancestor: os.Getpid(), poll: 20 * time.Millisecond,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// start starts a container's process and records it, as the job does.
func (p *prober) startProcess(t *testing.T, name string, argv ...string) *exec.Cmd {
	t.Helper()
	// As il_run: the run's start, then its process, then its pid file.
	_ = os.Remove(filepath.Join(p.dir, name+exitSuffix))
	started := time.Now().UTC().Format(time.RFC3339Nano) + "\n"
	if err := os.WriteFile(filepath.Join(p.dir, name+startedSuffix), []byte(started), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	tmp := filepath.Join(p.dir, name+".pid.tmp")
	_ = os.WriteFile(tmp, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	if err := os.Rename(tmp, filepath.Join(p.dir, name+pidSuffix)); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitState waits until the container's state satisfies ok.
func (p *prober) waitState(t *testing.T, name string, ok func(State) bool) State {
	t.Helper()
	var st State
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(p.dir, name+stateSuffix))
		st = State{}
		if err == nil && json.Unmarshal(b, &st) == nil && ok(st) {
			return st
		}
	}
	t.Fatalf("state of %s: %+v", name, st)
	return st
}

// withPID runs a command with the pid in RUN.
var withPID = []string{"/bin/sh", "-c", `RUN="$0" exec "$@"`, PIDPlaceholder}

// execProbe probes with sh -c script (period 1 s, failure threshold 1).
func execProbe(script string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", script}}},
		PeriodSeconds: 1, FailureThreshold: 1}
}

// runProber runs p until the test ends.
func runProber(t *testing.T, p *prober) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// signalOf is the signal that ended cmd (0: none).
func signalOf(cmd *exec.Cmd) syscall.Signal {
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// TestNewRunResetsState: a new pid in the pid file is a new run; nothing
// of the earlier run's readiness reaches it. The exec argv gets the pid.
func TestNewRunResetsState(t *testing.T) {
	p := newProber(t, Spec{Containers: []Container{{Name: "app", Exec: withPID}}})
	first := p.startProcess(t, "app", "sleep", "100")
	c := &p.spec.Containers[0]
	c.ReadinessProbe = execProbe(`test "$RUN" = ` + strconv.Itoa(first.Process.Pid))
	runProber(t, p)
	st := p.waitState(t, "app", func(s State) bool { return s.Ready })
	if st.PID != first.Process.Pid || !st.Started || st.Since == "" || st.Killed != "" {
		t.Fatalf("first run: %+v", st)
	}
	second := p.startProcess(t, "app", "sleep", "100")
	p.waitState(t, "app", func(s State) bool { return s.PID == second.Process.Pid && s.Started })
	time.Sleep(1500 * time.Millisecond) // a period and more: the readiness probe fails for it
	st = p.waitState(t, "app", func(State) bool { return true })
	if st != (State{PID: second.Process.Pid, Started: true}) {
		t.Errorf("second run: %+v, want started and not ready", st)
	}
}

// TestUnconfirmedRunCheckedAgain: a run whose record does not match its
// process when the prober first reads it (its start recorded an hour
// off) is not probed then, but is once the record matches: it is checked
// at each poll, not ignored for good.
func TestUnconfirmedRunCheckedAgain(t *testing.T) {
	p := newProber(t, Spec{Containers: []Container{{Name: "app", Exec: []string{"/usr/bin/env"},
		ReadinessProbe: execProbe(`true`)}}})
	p.startProcess(t, "app", "sleep", "100")
	started := filepath.Join(p.dir, "app"+startedSuffix)
	right, err := os.ReadFile(started)
	if err != nil {
		t.Fatal(err)
	}
	off := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano) + "\n"
	if err := os.WriteFile(started, []byte(off), 0o600); err != nil {
		t.Fatal(err)
	}
	runProber(t, p)
	time.Sleep(10 * p.poll)
	if _, err := os.Stat(filepath.Join(p.dir, "app"+stateSuffix)); err == nil {
		t.Fatal("a run its record does not confirm was probed")
	}
	if err := os.WriteFile(started, right, 0o600); err != nil { //nolint:gosec // the test's own temporary directory
		t.Fatal(err)
	}
	p.waitState(t, "app", func(s State) bool { return s.Ready })
}

// TestLivenessFailureKills: a failing liveness probe stops the run with
// SIGTERM and says why.
func TestLivenessFailureKills(t *testing.T) {
	p := newProber(t, Spec{Containers: []Container{{Name: "app", Exec: []string{"/usr/bin/env"},
		LivenessProbe: execProbe(`echo sick; exit 1`)}}})
	cmd := p.startProcess(t, "app", "sleep", "100")
	runProber(t, p)
	st := p.waitState(t, "app", func(s State) bool { return s.Killed != "" })
	if !strings.HasPrefix(st.Killed, "Liveness probe failed: ") || !strings.Contains(st.Killed, "sick") || st.Ready {
		t.Errorf("state %+v", st)
	}
	if s := signalOf(cmd); s != syscall.SIGTERM {
		t.Errorf("the container ended with signal %v, want SIGTERM", s)
	}
}

// TestPostStartFailureKills: a failing postStart hook stops the run
// before any probe; the container never counts as started.
func TestPostStartFailureKills(t *testing.T) {
	p := newProber(t, Spec{Containers: []Container{{Name: "app", Exec: []string{"/usr/bin/env"},
		ReadinessProbe: execProbe("true"),
		Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
			Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo no config; exit 2"}}}}}}})
	cmd := p.startProcess(t, "app", "sleep", "100")
	runProber(t, p)
	st := p.waitState(t, "app", func(s State) bool { return s.Killed != "" })
	if !strings.HasPrefix(st.Killed, "FailedPostStartHook: ") || !strings.Contains(st.Killed, "no config") || st.Started || st.Ready {
		t.Errorf("state %+v", st)
	}
	if s := signalOf(cmd); s != syscall.SIGTERM {
		t.Errorf("the container ended with signal %v, want SIGTERM", s)
	}
}

// TestStop: preStop runs first, then SIGTERM; a container that ignores
// it gets SIGKILL once the grace period (and the 2 s after preStop) have
// passed. A container without a live process is left alone.
func TestStop(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "prestop")
	p := newProber(t, Spec{GracePeriodSeconds: 1, Containers: []Container{
		{Name: "stubborn", Exec: withPID, Lifecycle: &corev1.Lifecycle{
			PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", `echo "$RUN" > "$0"`, marker}}}}},
		{Name: "gentle"},
		{Name: "gone"},
	}})
	trapped := filepath.Join(t.TempDir(), "trapped")
	stubborn := p.startProcess(t, "stubborn", "/bin/sh", "-c", `trap "" TERM; : >"$0"; while :; do sleep 0.1; done`, trapped)
	gentle := p.startProcess(t, "gentle", "sleep", "100")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(trapped); err == nil {
			break // the shell has set its trap
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell never set its trap")
		}
	}
	began := time.Now()
	ended := make(chan syscall.Signal, 2)
	go func() { ended <- signalOf(gentle) }()
	go func() { ended <- signalOf(stubborn) }()
	if err := p.stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if b, _ := os.ReadFile(marker); strings.TrimSpace(string(b)) != strconv.Itoa(stubborn.Process.Pid) {
		t.Errorf("preStop wrote %q, want the pid", b)
	}
	got := fmt.Sprint(<-ended, ", ", <-ended)
	if got != "terminated, killed" {
		t.Errorf("signals %s, want terminated (gentle) then killed (stubborn)", got)
	}
	if took < minGraceAfterPreStop || took > minGraceAfterPreStop+2*time.Second {
		t.Errorf("stop took %v", took)
	}
}
