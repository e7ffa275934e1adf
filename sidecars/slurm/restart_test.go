package slurm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// jobFunctions returns il_now and il_run as a job script defines them.
func jobFunctions(t *testing.T) string {
	t.Helper()
	cfg := testConfig(t)
	j, err := buildJob(&cfg, nil, testPod(), "/d")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(j.script, "# il_now ")
	run := strings.Index(j.script, "\nil_run() {\n")
	if start < 0 || run < start {
		t.Fatal("the job script has no il_now and il_run")
	}
	end := strings.Index(j.script[run:], "\n}\n")
	return j.script[start : run+end+3]
}

// TestRestartLoop runs il_run with a fake container, a fake log helper and
// a sleep that only records its delay, and reads what it wrote as the
// sidecar's status does.
func TestRestartLoop(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		e2eenv.Prerequisite(t, "bash")
	}
	funcs := jobFunctions(t)
	tests := []struct {
		name, policy string
		// container is the fake container's body; $n is its run, from 1.
		container string
		// sleeps is how many sleeps end the shell (0: none does).
		sleeps   int
		wantRC   string
		want     []string // the delays slept
		restarts int32
		code     int32
		last     int32 // the previous run's exit code, when restarted
		waiting  string
	}{
		{"never", "Never", `exit 3`, 0, "3", nil, 0, 3, 0, ""},
		{"on failure, fails twice", "OnFailure", `[ "$n" -gt 2 ]`, 0, "0", []string{"10", "20"}, 2, 0, 1, ""},
		{"on failure, succeeds", "OnFailure", `exit 0`, 0, "0", nil, 0, 0, 0, ""},
		{"always, capped at 5 min", "Always", `exit 0`, 7, "", []string{"10", "20", "40", "80", "160", "300", "300"}, 6, 0, 0,
			"back-off 5m0s restarting failed container main"},
		{"always, waiting after a failure", "Always", `exit 5`, 1, "", []string{"10"}, 0, 5, 0,
			"back-off 10s restarting failed container main"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "envexec"), []byte("#!/bin/sh\nwhile IFS= read -r l; do echo \"T $l\"; done\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			harness := funcs + `
IL_DIR=$1 IL_ENVEXEC=$1/envexec
mkdir -p "$IL_DIR/containers"
ctr() {
	read -r n 2>/dev/null <"$IL_DIR/runs" || n=0
	n=$((n + 1))
	echo "$n" >"$IL_DIR/runs"
	echo "run $n"
	` + tt.container + `
}
cleanup() { echo cleaned >>"$IL_DIR/cleanups"; }
sleep() {
	echo "$1" >>"$IL_DIR/sleeps"
	read -r k 2>/dev/null <"$IL_DIR/sleeps.n" || k=0
	echo $((k + 1)) >"$IL_DIR/sleeps.n"
	[[ $((k + 1)) -ne ` + strconv.Itoa(tt.sleeps) + ` ]] || exit 99
}
il_run main ctr "$2" cleanup
echo "$?" >"$IL_DIR/rc"
`
			cmd := exec.Command(bash, "-c", harness, "harness", dir, tt.policy)
			// With Always, the last sleep ends the shell with 99.
			if out, err := cmd.CombinedOutput(); err != nil && (tt.sleeps == 0 || cmd.ProcessState.ExitCode() != 99) {
				t.Fatalf("%v\n%s", err, out)
			}
			read := func(name string) string {
				b, _ := os.ReadFile(filepath.Join(dir, name))
				return strings.TrimSpace(string(b))
			}
			if rc := read("rc"); rc != tt.wantRC {
				t.Errorf("il_run returned %q, want %q", rc, tt.wantRC)
			}
			if got := read("sleeps"); got != strings.Join(tt.want, "\n") {
				t.Errorf("slept %q, want %q", got, tt.want)
			}
			runs := len(tt.want) + 1
			if tt.sleeps > 0 {
				runs = tt.sleeps
			}
			if got := strings.Count(read("cleanups"), "cleaned"); got != runs {
				t.Errorf("%d cleanups, want one per run (%d)", got, runs)
			}
			var wantLog []string
			for i := 1; i <= runs; i++ {
				wantLog = append(wantLog, "T run "+strconv.Itoa(i))
			}
			if got := read("containers/main.log"); got != strings.Join(wantLog, "\n") {
				t.Errorf("log %q, want every run's lines %q", got, wantLog)
			}
			root, err := poddata.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = root.Close() }()
			f := readCtrFiles(root, ".", "main")
			if !f.exited || f.code != tt.code || f.restarts != tt.restarts || f.started.After(f.finished) || f.started.IsZero() {
				t.Errorf("files %+v: want exit code %d after %d restarts", f, tt.code, tt.restarts)
			}
			if (f.last != nil) != (tt.restarts > 0) || f.last != nil && (f.last.ExitCode != tt.last || f.last.FinishedAt.After(f.started)) {
				t.Errorf("previous run %+v, want exit code %d before %s", f.last, tt.last, f.started)
			}
			if tt.waiting == "" && f.restarting() {
				t.Errorf("files %+v: waiting to restart, want an end", f)
			}
			if tt.waiting != "" {
				if d := f.backoff.Sub(f.finished) - f.delay; d < -time.Second || d > time.Second {
					t.Errorf("due at %s, %s after the end, want %s after", f.backoff, f.backoff.Sub(f.finished), f.delay)
				}
				cs := containerStatus("main", "7", jobState{State: "RUNNING", At: time.Now()}, f, func() string { return "" }, true)
				if w := cs.State.Waiting; w == nil || w.Reason != "CrashLoopBackOff" || w.Message != tt.waiting || cs.RestartCount != tt.restarts ||
					cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != tt.code {
					t.Errorf("status %+v, want CrashLoopBackOff %q", cs, tt.waiting)
				}
			}
		})
	}
}
