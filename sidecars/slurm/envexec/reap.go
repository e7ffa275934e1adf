package envexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// The helper's third use, on the host, by the job (never with pod data):
// run a runtime's program as a child subreaper.
//
//	interlink-envexec reap -- PROGRAM [ARG...]
//
// Podman's conmon, the parent of a container's processes, detaches from
// podman (it forks twice): it would become a child of init, outside the
// job's process tree, where Slurm's process tracking (proctrack/linuxproc)
// neither counts the container's memory nor signals it when the job is
// cancelled or over its memory limit. As a child subreaper
// (PR_SET_CHILD_SUBREAPER) the helper adopts what its descendants leave
// behind, so the container stays in the job. It forwards SIGTERM, SIGINT,
// SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to PROGRAM, waits for it, then for
// what it adopted (up to ReapGrace), and exits with PROGRAM's exit code
// (128+N when signal N killed it, as a shell tells).

// ReapMode is the first argument of the subreaper mode.
const ReapMode = "reap"

// ReapGrace bounds the wait for adopted processes once PROGRAM ended
// (conmon runs podman's cleanup after the container's end).
const ReapGrace = 30 * time.Second

// forwarded are the signals passed on to PROGRAM.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

// reapMain runs the subreaper mode with args (after "reap").
func reapMain(args []string, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintf(stderr, "interlink-envexec reap: missing -- PROGRAM\nusage: interlink-envexec reap -- PROGRAM [ARG...]\n")
		return codeError
	}
	argv := args[1:]
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(stderr, "interlink-envexec reap: become a subreaper: %v\n", err)
		return codeError
	}
	// The job's own program (the runtime, by absolute path), never pod data.
	proc, stop, fail := startPassingOn(argv[0], argv, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}},
		forwarded, stderr, "interlink-envexec reap")
	if proc == nil {
		return fail
	}
	defer stop()
	code := -1
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break // ECHILD: nothing left to wait for
		}
		if pid != proc.Pid || !ws.Exited() && !ws.Signaled() {
			continue
		}
		code = waitCode(ws)
		c := code
		// What PROGRAM left behind may take its time; the job goes on.
		time.AfterFunc(ReapGrace, func() { os.Exit(c) })
	}
	if code < 0 {
		return codeError // never seen: PROGRAM was not ours to wait for
	}
	return code
}

// startPassingOn starts prog as a child and passes the signals sigs the
// helper gets on to it until stop is called. It returns a nil process,
// and the exit code to give (127: not found; 126: not runnable), when
// prog does not start; the failure is written to stderr after prefix.
func startPassingOn(prog string, argv []string, attr *os.ProcAttr, sigs []os.Signal, stderr io.Writer, prefix string) (proc *os.Process, stop func(), fail int) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, sigs...)
	proc, err := os.StartProcess(prog, argv, attr) //nolint:gosec // the callers say whose program it is
	if err != nil {
		signal.Stop(ch)
		fmt.Fprintf(stderr, "%s: %s: %v\n", prefix, argv[0], err)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, codeNotFound
		}
		return nil, nil, codeNotRunnable
	}
	go func() {
		for s := range ch {
			_ = proc.Signal(s)
		}
	}()
	return proc, func() { signal.Stop(ch) }, 0
}

// waitCode is a wait status as a shell gives it: the exit code, or 128+N
// for signal N.
func waitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
