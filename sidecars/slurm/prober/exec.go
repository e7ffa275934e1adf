package prober

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"

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
	// The run the pid file names, if it is still the current one: once a
	// run ended, its pid may be another process's, another pod's even.
	pid := readPID(args[0])
	_, start, err := hostProc.stat(pid)
	if err == nil {
		err = hostProc.isRun(filepath.Dir(args[0]), c.Name, procID{pid: pid, start: start})
	}
	if pid == 0 || err != nil {
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

// runStreaming runs argv (command), its output going to stdout and stderr
// as it comes (srun signals the step when the caller goes away).
func runStreaming(ctx context.Context, argv, env []string, stdout, stderr io.Writer) (int, error) {
	cmd := command(ctx, argv, env)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return exitCode(cmd.Run())
}
