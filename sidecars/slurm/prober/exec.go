package prober

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// execUsage is how the sidecar runs a command in a container of a running
// job (kubectl exec), through srun on the job's node: PIDFILE is the
// container's containers/NAME.pid, CONTAINER a JSON Container holding how
// to enter it (Name, Exec, Nsenter, Inner).
const execUsage = "usage: interlink-prober exec PIDFILE CONTAINER -- COMMAND [ARG...]"

// execMain runs a command inside the current run of a container, with its
// output on stdout and stderr, and returns the command's exit code (128+N
// for a signal N); 126 when the container cannot be entered.
func execMain(args []string, stdout, stderr io.Writer) int {
	if len(args) < 4 || args[2] != "--" {
		fmt.Fprintln(stderr, execUsage)
		return 2
	}
	var c Container
	if err := json.Unmarshal([]byte(args[1]), &c); err != nil {
		fmt.Fprintf(stderr, "interlink-prober: container: %v\n", err)
		return 2
	}
	if err := (Spec{Containers: []Container{c}}).Validate(); err != nil {
		fmt.Fprintf(stderr, "interlink-prober: %v\n", err)
		return 2
	}
	pid := readPID(args[0])
	if pid == 0 {
		fmt.Fprintf(stderr, "interlink-prober: container %s is not running\n", c.Name)
		return 126
	}
	argv, env, err := inContainer(&c, pid, hostProc, args[3:])
	if err != nil {
		fmt.Fprintf(stderr, "interlink-prober: container %s: %v\n", c.Name, err)
		return 126
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer stop()
	code, err := runStreaming(ctx, argv, env, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "interlink-prober: container %s: %v\n", c.Name, err)
		return 126
	}
	return code
}

// runStreaming runs argv in a process group of its own, its output going
// to stdout and stderr as it comes, killed whole when ctx ends (srun
// signals the step when the caller goes away).
func runStreaming(ctx context.Context, argv, env []string, stdout, stderr io.Writer) (int, error) {
	// argv is the sidecar's program followed by the command's words, each
	// one argv element: no shell ever reads them.
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) //nolint:gosec // see above
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}
