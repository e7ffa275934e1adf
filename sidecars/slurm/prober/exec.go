package prober

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// execUsage is how the sidecar runs a command in a container of a running
// job (kubectl exec), through srun on the job's node: PIDFILE is the
// container's containers/NAME.pid, CONTAINER a JSON Container holding how
// to enter it (Name, Exec, Nsenter, Inner).
// -i passes standard input on to the command; -t tells it is a terminal,
// whose foreground the command then holds.
const execUsage = "usage: interlink-prober exec [-i] [-t] PIDFILE CONTAINER -- COMMAND [ARG...]"

// execMain runs a command inside the current run of a container, with its
// output on stdout and stderr, and returns the command's exit code (128+N
// for a signal N); 126 when the container cannot be entered.
func execMain(args []string, stdout, stderr io.Writer) int {
	var stdin, tty bool
	for len(args) > 0 && (args[0] == "-i" || args[0] == "-t") {
		stdin = stdin || args[0] == "-i"
		tty = tty || args[0] == "-t"
		args = args[1:]
	}
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
	switch {
	case tty && len(c.ExecTTY) > 0:
		c.Exec = c.ExecTTY
	case stdin && len(c.ExecStdin) > 0:
		c.Exec = c.ExecStdin
	}
	argv, env, err := inContainer(&c, pid, hostProc, args[3:])
	if err != nil {
		fmt.Fprintf(stderr, "interlink-prober: container %s: %v\n", c.Name, err)
		return 126
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer stop()
	cmd := command(ctx, argv, env)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if stdin {
		cmd.Stdin = os.Stdin
	}
	if tty {
		// The command's group takes the terminal's foreground, so that it
		// reads it and gets its ^C (the prober's group stays behind).
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = int(os.Stdin.Fd())
		// A terminal's process keeps running when the prober is told to
		// stop by its hang-up; srun ends the step.
	}
	code, err := exitCode(cmd.Run())
	if err != nil {
		fmt.Fprintf(stderr, "interlink-prober: container %s: %v\n", c.Name, err)
		return 126
	}
	return code
}

// dialMain joins its standard input and output to a TCP connection to
// addr (kubectl port-forward tunneled through the job, where the node
// cannot be reached from the sidecar): what comes in goes to the port, what
// the port answers comes out, until either side ends.
func dialMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: interlink-prober dial HOST:PORT")
		return 2
	}
	conn, err := net.DialTimeout("tcp", args[0], 10*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "interlink-prober: dial %s: %v\n", args[0], err)
		return 1
	}
	go func() {
		// The input's end is passed on as a half close: the port may still
		// answer. The sidecar ends the step when its client goes.
		_, _ = io.Copy(conn, stdin)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(stdout, conn)
	_ = conn.Close()
	return 0
}
