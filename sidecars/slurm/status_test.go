package slurm

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestContainerStatus(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	started := ctrFiles{started: at}
	exited := func(code int32) ctrFiles {
		return ctrFiles{started: at, exited: true, code: code, finished: at.Add(time.Second)}
	}
	tests := []struct {
		name     string
		js       jobState
		f        ctrFiles
		output   string
		initDone bool
		want     string // waiting reason, "running", or terminated reason
		wantCode int32
	}{
		{"pending with the Slurm reason", jobState{State: "PENDING", Reason: "Resources"}, ctrFiles{}, "", true, "Resources", 0},
		{"held", jobState{State: "PENDING", Reason: "JobHeldUser"}, ctrFiles{}, "", true, "JobHeldUser", 0},
		{"running, not started yet", jobState{State: "RUNNING"}, ctrFiles{}, "", true, "ContainerCreating", 0},
		{"running, init not done", jobState{State: "RUNNING"}, ctrFiles{}, "", false, "PodInitializing", 0},
		{"running", jobState{State: "RUNNING"}, started, "", true, "running", 0},
		{"completed", jobState{State: "COMPLETED"}, exited(0), "", true, "Completed", 0},
		{"own exit code", jobState{State: "FAILED"}, exited(3), "", true, "Error", 3},
		{"time limit, no exit file", jobState{State: "TIMEOUT", At: at}, started, "", true, "DeadlineExceeded", 137},
		{"time limit, killed by TERM", jobState{State: "TIMEOUT", At: at}, exited(143), "", true, "DeadlineExceeded", 143},
		{"killed by TERM, job still completing: not ended yet", jobState{State: "COMPLETING", At: at.Add(2 * time.Second)}, exited(143), "", true, "running", 0},
		{"killed by TERM, then cancelled", jobState{State: "CANCELLED", At: at.Add(3 * time.Second)}, exited(143), "", true, "Cancelled", 143},
		{"killed by a signal, job runs on for long", jobState{State: "RUNNING", At: at.Add(time.Minute)}, exited(137), "", true, "Error", 137},
		{"own exit code, job still completing", jobState{State: "COMPLETING", At: at.Add(2 * time.Second)}, exited(3), "", true, "Error", 3},
		{"memory, as slurmstepd says", jobState{State: "FAILED", At: at}, started, "error: Exceeded job memory limit", true, "OOMKilled", 137},
		{"memory, slurmstepd's first line", jobState{State: "FAILED", At: at}, started, "slurmstepd-localhost: error: StepId=16.batch exceeded memory limit (330436608 > 52428800), being killed", true, "OOMKilled", 137},
		{"OUT_OF_MEMORY state", jobState{State: "OUT_OF_MEMORY", At: at}, started, "", true, "OOMKilled", 137},
		{"cancelled", jobState{State: "CANCELLED", At: at}, started, "", true, "Cancelled", 143},
		{"preempted", jobState{State: "PREEMPTED", At: at}, started, "", true, "Preempted", 143},
		{"node failure", jobState{State: "NODE_FAIL", At: at}, started, "", true, "NodeFail", 137},
		{"failed before the containers, sacct's code", jobState{State: "FAILED", ExitCode: 2, At: at}, ctrFiles{}, "module: not found", true, "Error", 2},
		{"lost", jobState{State: stateLost, At: at}, started, "", true, "JobLost", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := containerStatus("main", "7", tt.js, tt.f, func() string { return tt.output }, tt.initDone)
			var got string
			var code int32
			switch st := cs.State; {
			case st.Waiting != nil:
				got = st.Waiting.Reason
			case st.Running != nil:
				got = "running"
			case st.Terminated != nil:
				got, code = st.Terminated.Reason, st.Terminated.ExitCode
			}
			if got != tt.want || code != tt.wantCode {
				t.Errorf("got %s (%d), want %s (%d): %+v", got, code, tt.want, tt.wantCode, cs.State)
			}
		})
	}
}

// TestContainerStatusRestarts: a container that ran and starts again (its
// exit file has a back-off) waits in CrashLoopBackOff with that run as its
// last state; once restarted, its count and previous run are reported
// whatever its current state.
func TestContainerStatusRestarts(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := runEnd(1, at, at.Add(time.Second))
	// waiting: the first run ended with code and waits delay.
	waiting := func(code int32, delay time.Duration) ctrFiles {
		return ctrFiles{started: at, exited: true, code: code, finished: at.Add(time.Second), backoff: at.Add(time.Second + delay), delay: delay}
	}
	again := at.Add(20 * time.Second) // the second run's start
	tests := []struct {
		name        string
		js          jobState
		f           ctrFiles
		want        string // waiting reason, "running", or terminated reason
		wantCode    int32
		wantMessage string
		restarts    int32
		last        *corev1.ContainerStateTerminated
	}{
		{"waits to restart", jobState{State: "RUNNING", At: at.Add(2 * time.Second)}, waiting(1, 10*time.Second),
			"CrashLoopBackOff", 0, "back-off 10s restarting failed container main", 0, first},
		{"waits to restart after a success (Always)", jobState{State: "RUNNING", At: at.Add(2 * time.Second)}, waiting(0, 10*time.Second),
			"CrashLoopBackOff", 0, "back-off 10s restarting failed container main", 0, runEnd(0, at, at.Add(time.Second))},
		{"killed by a signal, waits to restart: no settling", jobState{State: "RUNNING", At: at.Add(2 * time.Second)}, waiting(137, 5*time.Minute),
			"CrashLoopBackOff", 0, "back-off 5m0s restarting failed container main", 0, runEnd(137, at, at.Add(time.Second))},
		{"restarted, running", jobState{State: "RUNNING"}, ctrFiles{started: again, restarts: 1, last: first},
			"running", 0, "", 1, first},
		{"restarted, succeeded", jobState{State: "COMPLETED", At: again.Add(time.Minute)},
			ctrFiles{started: again, exited: true, finished: again.Add(time.Second), restarts: 1, last: first},
			"Completed", 0, "", 1, first},
		{"restarted, waits again", jobState{State: "RUNNING", At: again.Add(2 * time.Second)},
			ctrFiles{started: again, exited: true, code: 2, finished: again.Add(time.Second), restarts: 1, last: first,
				backoff: again.Add(21 * time.Second), delay: 20 * time.Second},
			"CrashLoopBackOff", 0, "back-off 20s restarting failed container main", 1, runEnd(2, again, again.Add(time.Second))},
		{"time limit while waiting", jobState{State: "TIMEOUT", At: at.Add(5 * time.Second)}, waiting(1, 10*time.Second),
			"DeadlineExceeded", 137, "Slurm job 7 ended TIMEOUT while the container waited to restart", 0, first},
		{"time limit, restarted and running", jobState{State: "TIMEOUT", At: again.Add(time.Minute)}, ctrFiles{started: again, restarts: 1, last: first},
			"DeadlineExceeded", 137, "Slurm job 7 ended TIMEOUT", 1, first},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := containerStatus("main", "7", tt.js, tt.f, func() string { return "" }, true)
			var got, msg string
			var code int32
			switch st := cs.State; {
			case st.Waiting != nil:
				got, msg = st.Waiting.Reason, st.Waiting.Message
			case st.Running != nil:
				got = "running"
			case st.Terminated != nil:
				got, code, msg = st.Terminated.Reason, st.Terminated.ExitCode, st.Terminated.Message
			}
			if got != tt.want || code != tt.wantCode || msg != tt.wantMessage {
				t.Errorf("got %s (%d) %q, want %s (%d) %q", got, code, msg, tt.want, tt.wantCode, tt.wantMessage)
			}
			if cs.RestartCount != tt.restarts {
				t.Errorf("restart count %d, want %d", cs.RestartCount, tt.restarts)
			}
			if diff := cmp.Diff(tt.last, cs.LastTerminationState.Terminated); diff != "" {
				t.Errorf("last state (-want +got):\n%s", diff)
			}
			if cs.State.Waiting != nil && cs.Ready {
				t.Error("a waiting container is ready")
			}
		})
	}
}

// TestJobChunks checks that the --jobs= argument of one call stays under
// the kernel's limit on one argument, in one call up to thousands of jobs.
func TestJobChunks(t *testing.T) {
	var ids []string
	for i := range 20000 {
		ids = append(ids, strconv.Itoa(1000000+i))
	}
	if got := jobChunks(ids[:10000]); len(got) != 1 {
		t.Errorf("10,000 jobs in %d calls, want 1", len(got))
	}
	chunks := jobChunks(ids)
	if len(chunks) != 2 {
		t.Errorf("20,000 jobs of 7 digits in %d calls, want 2", len(chunks))
	}
	var all []string
	for _, c := range chunks {
		if n := len(strings.Join(c, ",")); n > maxJobsArg || len(c) == 0 {
			t.Errorf("a chunk of %d jobs, %d bytes (limit %d)", len(c), n, maxJobsArg)
		}
		all = append(all, c...)
	}
	if !slices.Equal(all, ids) {
		t.Error("the chunks do not hold the jobs in order, each once")
	}
}

// TestReadLineIsBounded: 100 MiB without a newline come in pieces of at
// most maxLogLine bytes, never read whole.
func TestReadLineIsBounded(t *testing.T) {
	const size = 100 << 20
	r := bufio.NewReaderSize(io.LimitReader(repeatReader('x'), size), maxLogLine)
	pieces, total := 0, 0
	for {
		line, err := readLine(r)
		if len(line) > maxLogLine+1 {
			t.Fatalf("a piece of %d bytes", len(line))
		}
		total += len(strings.TrimSuffix(line, "\n"))
		if line != "" {
			pieces++
		}
		if err != nil {
			break
		}
	}
	if total != size || pieces != size/maxLogLine {
		t.Errorf("%d bytes in %d pieces, want %d in %d", total, pieces, size, size/maxLogLine)
	}
}

type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}
