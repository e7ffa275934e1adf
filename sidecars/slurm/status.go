package slurm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// jobState is a job's state as Slurm reports it.
type jobState struct {
	State    string    `json:"state"`            // PENDING, RUNNING, COMPLETED, ...
	Reason   string    `json:"reason,omitempty"` // why it waits (squeue's %r)
	Node     string    `json:"node,omitempty"`   // the node running its batch script (squeue's %B)
	ExitCode int32     `json:"exitCode,omitempty"`
	At       time.Time `json:"at"` // when the sidecar first saw this state
}

// stateLost is the state of a job Slurm no longer knows, whose containers
// did not all record an exit code.
const stateLost = "LOST"

// stateUnknown is the state of a job Slurm did not list in fewer than
// lostAfterPolls polls in a row: its pod keeps what its files say.
const stateUnknown = "UNKNOWN"

// lostAfterPolls is how many polls in a row Slurm must say it does not know
// a job before its pod is lost: one answer never decides a pod's fate.
const lostAfterPolls = 3

// jobIDPattern is what sbatch --parsable prints: a job ID, and a cluster
// name after ';' on a federation.
var jobIDPattern = regexp.MustCompile(`^([0-9]+)(;[A-Za-z0-9_-]+)?$`)

// parseJobID reads sbatch's reply: a job ID, or false.
func parseJobID(reply []byte) (string, bool) {
	m := jobIDPattern.FindStringSubmatch(strings.TrimSpace(string(reply)))
	if m == nil {
		return "", false
	}
	return m[1], true
}

func (j jobState) pending() bool {
	switch j.State {
	case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD":
		return true
	}
	return false
}

func (j jobState) terminal() bool {
	switch j.State {
	case "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL",
		"DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT", stateLost:
		return true
	}
	return false
}

// squeueFormat is asked of squeue: job ID, state, reason, and the node
// running the batch script (where the containers are). None of them holds a
// '|'.
const squeueFormat = "%i|%T|%r|%B"

// queryJobs asks Slurm the state of jobs: one squeue call, and one sacct
// call (when Accounting is on) for the jobs squeue no longer lists. Jobs
// neither knows are left out of the result; definite tells whether Slurm
// was fully asked, so that a job left out is one it does not know (a
// failed sacct call leaves that open).
func (s *Sidecar) queryJobs(ctx context.Context, ids []string) (states map[string]jobState, definite bool, err error) {
	out := make(map[string]jobState, len(ids))
	if len(ids) == 0 {
		return out, true, nil
	}
	now := time.Now()
	for _, chunk := range jobChunks(ids) {
		stdout, err := s.cmd.run(ctx, s.cfg.SqueuePath, "--noheader", "--states=all", "--jobs="+strings.Join(chunk, ","), "--format="+squeueFormat)
		var ce *cmdError
		switch {
		case errors.As(err, &ce) && strings.Contains(ce.stderr, "Invalid job id"):
			// Every job asked is gone from squeue.
		case err != nil:
			return nil, false, fmt.Errorf("squeue: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(stdout))
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), "|", 4)
			if len(f) < 3 {
				continue
			}
			js := jobState{State: f[1], At: now}
			if js.pending() && f[2] != "None" {
				js.Reason = f[2]
			}
			if len(f) == 4 && js.State == "RUNNING" && nodeName.MatchString(f[3]) {
				js.Node = f[3]
			}
			out[f[0]] = js
		}
	}
	if !s.cfg.Accounting {
		return out, true, nil
	}
	var missing []string
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, true, nil
	}
	for _, chunk := range jobChunks(missing) {
		args := append([]string{s.cfg.SacctPath}, s.cfg.SacctArgs...)
		args = append(args, "--noheader", "--parsable2", "--allocations", "--jobs="+strings.Join(chunk, ","), "--format=JobIDRaw,State,ExitCode")
		stdout, err := s.cmd.run(ctx, args...)
		if err != nil {
			// squeue's answer stands; the jobs it left out stay open.
			s.log.Warn("sacct failed: jobs squeue no longer lists are not declared lost this poll", "jobs", len(chunk), "err", err)
			return out, false, nil
		}
		sc := bufio.NewScanner(bytes.NewReader(stdout))
		for sc.Scan() {
			f := strings.Split(sc.Text(), "|")
			if len(f) != 3 {
				continue
			}
			state, _, _ := strings.Cut(f[1], " ") // "CANCELLED by 0"
			code, _, _ := strings.Cut(f[2], ":")
			n, _ := strconv.ParseInt(code, 10, 32)
			out[f[0]] = jobState{State: state, ExitCode: int32(n), At: now}
		}
	}
	return out, true, nil
}

// maxJobsArg bounds the --jobs= argument of one squeue or sacct call: Linux
// refuses a single argument over 128 KiB (MAX_ARG_STRLEN), about 14,000 job
// IDs. Up to that, a poll is one call; beyond, one call per chunk.
const maxJobsArg = 96 << 10

// jobChunks splits ids into lists whose comma-joined length stays within
// maxJobsArg.
func jobChunks(ids []string) [][]string {
	var chunks [][]string
	start, n := 0, 0
	for i, id := range ids {
		if n > 0 && n+1+len(id) > maxJobsArg {
			chunks = append(chunks, ids[start:i])
			start, n = i, 0
		}
		if n > 0 {
			n++
		}
		n += len(id)
	}
	return append(chunks, ids[start:])
}

// ctrFiles is what a container's files in the pod directory say: its
// current run (started, and its end once exited) and its restarts.
type ctrFiles struct {
	started  time.Time
	exited   bool
	code     int32
	finished time.Time
	// restarts is how many times the container was started again, last how
	// its previous run ended (nil before a restart).
	restarts int32
	last     *corev1.ContainerStateTerminated
	// delay is set when the run that ended is followed by another one, due
	// at backoff.
	delay   time.Duration
	backoff time.Time
	// probed: the container has probes or hooks, and ready and
	// startedProbe are what the prober says of the current run.
	probed, ready, startedProbe bool
	// message is the termination message of the run that ended (the
	// current one once exited): its own, or why the prober stopped it;
	// lastMessage why the prober stopped the previous run.
	message, lastMessage string
}

// restarting tells whether the container's run ended and it waits to start
// again.
func (f ctrFiles) restarting() bool { return f.exited && f.delay > 0 }

// readCtrFiles reads a container's files, through the data root: the job
// writes them, so they must not lead outside it. Each file is written
// whole (a temporary file renamed), in the formats il_run's comment gives.
func readCtrFiles(root *poddata.Dir, dir, name string) ctrFiles {
	var f ctrFiles
	if b, err := readSmall(root, path.Join(dir, containersDir, name+".started")); err == nil {
		w := strings.Fields(string(b))
		if len(w) > 0 {
			f.started, _ = time.Parse(time.RFC3339Nano, w[0])
		}
		if len(w) == 5 {
			n, err1 := strconv.ParseInt(w[1], 10, 32)
			code, err2 := strconv.ParseInt(w[2], 10, 32)
			started, err3 := time.Parse(time.RFC3339Nano, w[3])
			finished, err4 := time.Parse(time.RFC3339Nano, w[4])
			if errors.Join(err1, err2, err3, err4) == nil && n > 0 {
				f.restarts, f.last = int32(n), runEnd(int32(code), started, finished)
			}
		}
	}
	if b, err := readSmall(root, path.Join(dir, containersDir, name+".exit")); err == nil {
		w := strings.Fields(string(b))
		if len(w) > 0 {
			if n, err := strconv.ParseInt(w[0], 10, 32); err == nil {
				f.exited, f.code = true, int32(n)
			}
		}
		if f.exited && len(w) > 1 {
			f.finished, _ = time.Parse(time.RFC3339Nano, w[1])
		}
		if f.exited && len(w) == 4 {
			due, err1 := time.Parse(time.RFC3339Nano, w[2])
			secs, err2 := strconv.ParseInt(w[3], 10, 32)
			if err1 == nil && err2 == nil && secs > 0 {
				f.backoff, f.delay = due, time.Duration(secs)*time.Second
			}
		}
	}
	return f
}

// runEnd is the state of a run that recorded its exit code.
func runEnd(code int32, started, finished time.Time) *corev1.ContainerStateTerminated {
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	return &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
		StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(finished)}
}

// signalSettle is how long a container killed by a signal waits for its
// job's end to show in Slurm, which tells why it was killed.
const signalSettle = 10 * time.Second

// oomMarkers are what slurmstepd and the kernel write when a job is killed
// for its memory (without cgroups Slurm does not report OUT_OF_MEMORY).
// slurmstepd first writes "StepId=N.batch exceeded memory limit (X > Y),
// being killed", then "Exceeded job memory limit": matched in lower case.
var oomMarkers = []string{"exceeded memory limit", "exceeded job memory limit", "oom-kill", "out of memory"}

// openJobFile opens for reading name (slash-separated, relative to root), a
// file the job writes, following no symlink on the way: with sbatch --uid
// the job's account owns the pod's directory and could plant one leading to
// another pod's data, which os.Root would follow (it stays inside the root,
// and os.Root ignores O_NOFOLLOW). Anything but a regular file (a FIFO,
// say) is refused too.
func openJobFile(root *poddata.Dir, name string) (*os.File, error) {
	parts := strings.Split(name, "/")
	if slices.ContainsFunc(parts, func(p string) bool { return p == "" || p == "." || p == ".." }) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	top, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	defer func() { _ = top.Close() }()
	fd, owned := int(top.Fd()), -1 //nolint:gosec // a descriptor fits an int
	for i, p := range parts {
		flags := syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= syscall.O_DIRECTORY
		} else {
			flags |= syscall.O_NONBLOCK // a FIFO must not block the open
		}
		next, err := syscall.Openat(fd, p, flags, 0)
		if owned >= 0 {
			_ = syscall.Close(owned)
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		fd, owned = next, next
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		_ = syscall.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name) //nolint:gosec // fd is a descriptor, not negative
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("not a regular file")}
	}
	return f, nil
}

// readSmall reads at most 4 KiB of a file the job writes under root.
func readSmall(root *poddata.Dir, name string) ([]byte, error) { return readUpTo(root, name, 4096) }

// readUpTo reads at most n bytes of a job's file, as readSmall.
func readUpTo(root *poddata.Dir, name string, n int64) ([]byte, error) {
	f, err := openJobFile(root, name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, n))
}

// outputTail returns the end of the job's output, for messages.
func outputTail(root *poddata.Dir, dir string, n int64) string {
	f, err := openJobFile(root, dir+outputSuffix)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.TrimSpace(string(b))
}

// ending is how a job's end is told to a container that recorded no exit
// code of its own: reason and exit code.
func ending(js jobState, output string) (reason string, code int32) {
	lower := strings.ToLower(output)
	for _, m := range oomMarkers {
		if strings.Contains(lower, m) {
			return "OOMKilled", 137
		}
	}
	switch js.State {
	case "OUT_OF_MEMORY":
		return "OOMKilled", 137
	case "TIMEOUT", "DEADLINE":
		return "DeadlineExceeded", 137
	case "CANCELLED":
		return "Cancelled", 143
	case "PREEMPTED":
		return "Preempted", 143
	case "NODE_FAIL":
		return "NodeFail", 137
	case "BOOT_FAIL":
		return "BootFail", 1
	case "COMPLETED":
		return "Completed", 0
	case stateLost:
		return "JobLost", 1
	}
	if js.ExitCode != 0 {
		return "Error", js.ExitCode
	}
	return "Error", 1
}

// containerStatus is one container's status from its job's state and its
// own files.
func containerStatus(name, jobID string, js jobState, f ctrFiles, output func() string, initDone bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: name, ContainerID: "slurm://" + jobID + "/" + name, RestartCount: f.restarts}
	cs.LastTerminationState.Terminated = f.last
	if f.last != nil && f.lastMessage != "" {
		last := *f.last
		last.Message = f.lastMessage
		cs.LastTerminationState.Terminated = &last
	}
	switch {
	case f.restarting() && !js.terminal():
		// Its run ended and it waits to start again, as in the kubelet's
		// CrashLoopBackOff.
		cs.LastTerminationState.Terminated = runEnd(f.code, f.started, f.finished)
		cs.LastTerminationState.Terminated.Message = f.message
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container %s", f.delay, name)}
	case f.exited && f.code > 128 && !js.terminal() && !js.At.IsZero() && js.At.Sub(f.finished) < signalSettle:
		// Killed by a signal while Slurm does not show the job ended yet
		// (scancel, a time limit: the job is still COMPLETING): report
		// its end once Slurm says why, or after signalSettle.
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(f.started)}
		cs.Started = ptr(true)
	case f.exited && !f.restarting():
		cs.State.Terminated = runEnd(f.code, f.started, f.finished)
		cs.State.Terminated.Message = f.message
		if f.code > 128 && js.terminal() {
			// Killed by a signal as its job ended: Slurm's reason (time
			// limit, memory, cancellation) says why.
			if r, _ := ending(js, output()); r != "Error" && r != "Completed" {
				cs.State.Terminated.Reason = r
			}
		}
	case js.terminal():
		out := output()
		reason, code := ending(js, out)
		msg := fmt.Sprintf("Slurm job %s ended %s", jobID, js.State)
		if js.State == stateLost {
			msg = fmt.Sprintf("Slurm job %s is no longer known to Slurm", jobID)
		}
		started := f.started
		if f.restarting() {
			// The job ended while the container waited to start again.
			cs.LastTerminationState.Terminated = runEnd(f.code, f.started, f.finished)
			cs.LastTerminationState.Terminated.Message = f.message
			started = f.finished
			msg += " while the container waited to restart"
		}
		if code != 0 && out != "" {
			msg += "; job output: " + out
		}
		if started.IsZero() {
			started = js.At
		}
		cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg,
			StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(js.At)}
	case js.pending():
		reason := js.Reason
		if reason == "" {
			reason = "Pending"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason,
			Message: fmt.Sprintf("Slurm job %s is %s (%s)", jobID, js.State, reason)}
	case !f.started.IsZero():
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(f.started)}
		cs.Ready, cs.Started = true, ptr(true)
		if f.probed {
			// As the prober says of this run (nothing yet: neither).
			cs.Ready, cs.Started = f.ready, ptr(f.startedProbe)
		}
	case !initDone:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating",
			Message: fmt.Sprintf("Slurm job %s is %s", jobID, js.State)}
	}
	return cs
}

func ptr[T any](v T) *T { return &v }
