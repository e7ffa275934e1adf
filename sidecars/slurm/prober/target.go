package prober

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-3f807049/interlink/sidecars/probe"
	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
)

// DefaultHost is where network probes connect when neither the handler
// nor the Spec names a host.
const DefaultHost = "127.0.0.1"

// execWaitDelay bounds the wait for a killed command's output.
const execWaitDelay = 2 * time.Second

// errNotRunning: the container has no process in a namespace of its own.
var errNotRunning = errors.New("container not running")

// target is where c's probes and hooks act during the run of pid.
func target(c *Container, pid int, proc procFS) probe.Target {
	t := probe.Target{Host: c.Host, Ports: c.Ports}
	if t.Host == "" {
		t.Host = DefaultHost
	}
	if len(c.Exec) > 0 || c.Nsenter != "" {
		t.Exec = func(ctx context.Context, cmd []string) (int, []byte, error) {
			argv, env, err := inContainer(c, pid, proc, cmd)
			if err != nil {
				return 0, nil, err
			}
			return runCapped(ctx, argv, env)
		}
	}
	return t
}

// inContainer is the command line, and its env (nil: the prober's), that
// runs cmd inside c's container during the run of pid: the runtime's own
// exec (podman exec), with the prober's env; or nsenter, with none of the
// job's variables (the helper, Inner, sets the container's).
func inContainer(c *Container, pid int, proc procFS, cmd []string) ([]string, []string, error) {
	switch {
	case len(c.Exec) > 0:
		return execArgv(c.Exec, pid, cmd), nil, nil
	case c.Nsenter != "":
		argv, err := nsenterArgv(c, pid, proc, cmd)
		return argv, []string{"PATH=" + envexec.DefaultPath}, err
	}
	return nil, nil, probe.ErrNoExec
}

// execArgv is exec + cmd, each word of exec equal to PIDPlaceholder
// replaced by pid. The command's words stay argv elements.
func execArgv(exec []string, pid int, cmd []string) []string {
	argv := make([]string, 0, len(exec)+len(cmd))
	for _, w := range exec {
		if w == PIDPlaceholder {
			w = strconv.Itoa(pid)
		}
		argv = append(argv, w)
	}
	return append(argv, cmd...)
}

// containerProcess finds the container's first process among pid and
// its descendants: one in a mount namespace other than the prober's whose
// root holds the helper c runs inside (Inner's program), so that its root
// is the container's (ch-run execs the container in pid itself; Apptainer's
// starter, in a mount namespace of its own, runs the container as a child,
// whose root is the image). Of those, the one in the least nested user
// namespace, the first breadth first among them: a user namespace that a
// container's process made within the container's (where its root could
// trace what enters) is always more nested than the container's own.
func containerProcess(proc procFS, pid int, c *Container) (int, error) {
	own, err := proc.ns(0, "mnt")
	if err != nil {
		return 0, fmt.Errorf("own mount namespace: %w", err)
	}
	depth := func(p int) (int, bool) {
		mnt, err := proc.ns(p, "mnt")
		if err != nil || mnt == own || !proc.holds(p, c) {
			return 0, false
		}
		if proc.userNSDepth == nil {
			return 0, true
		}
		return proc.userNSDepth(p)
	}
	best, bestDepth := 0, maxUserNSDepth+1
	for _, p := range append([]int{pid}, descendants(proc.parents(), pid)...) {
		if d, ok := depth(p); ok && d < bestDepth {
			best, bestDepth = p, d
		}
	}
	if best == 0 {
		return 0, errNotRunning
	}
	return best, nil
}

// holds tells whether the root of process pid holds the program c runs
// inside the container (Inner's first word): the process has entered the
// image. An entry without Inner, or a proc tree without rootHolds
// (tests), holds anything.
func (p procFS) holds(pid int, c *Container) bool {
	if c == nil || len(c.Inner) == 0 || !filepath.IsAbs(c.Inner[0]) || p.rootHolds == nil {
		return true
	}
	return p.rootHolds(pid, c.Inner[0])
}

// rootHolds tells whether name exists under the root of process pid.
func rootHolds(pid int, name string) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "root", name))
	return err == nil
}

// nsFlags are the namespaces entered only when the container's differs
// from the prober's, with nsenter's options for each.
var nsFlags = []struct {
	kind  string
	flags []string
}{
	// Joining the container's user namespace keeps the prober's uid and
	// gids, as they are mapped there (ch-run maps the user to 0).
	{"user", []string{"--user", "--preserve-credentials"}},
	{"ipc", []string{"--ipc"}},
	{"uts", []string{"--uts"}},
	{"net", []string{"--net"}},
	// nsenter forks by itself once it has entered a pid namespace.
	{"pid", []string{"--pid"}},
}

// nsenterArgv is the nsenter command that runs cmd in the container of
// the run of pid: in the namespaces of its first process, at that
// process's root and working directory, behind c.Inner.
func nsenterArgv(c *Container, pid int, proc procFS, cmd []string) ([]string, error) {
	p, err := containerProcess(proc, pid, c)
	if err != nil {
		return nil, err
	}
	// --root and --wd without a value: the target's root and directory.
	argv := []string{c.Nsenter, "--target=" + strconv.Itoa(p), "--mount", "--root", "--wd"}
	for _, n := range nsFlags {
		theirs, err1 := proc.ns(p, n.kind)
		ours, err2 := proc.ns(0, n.kind)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s namespace of process %d: %w", n.kind, p, err)
		}
		if theirs != ours {
			argv = append(argv, n.flags...)
		}
	}
	argv = append(argv, "--")
	argv = append(argv, c.Inner...)
	return append(argv, cmd...), nil
}

// runCapped runs argv (command) and returns its exit code and the first
// probe.MaxOutputBytes of its output.
func runCapped(ctx context.Context, argv []string, env []string) (int, []byte, error) {
	cmd := command(ctx, argv, env)
	out := &capped{max: probe.MaxOutputBytes}
	cmd.Stdout, cmd.Stderr = out, out
	code, err := exitCode(cmd.Run())
	return code, out.b, err
}

// command runs argv (env nil: the prober's) at /, in a process group of
// its own killed whole when ctx ends, and killed when the prober dies.
func command(ctx context.Context, argv []string, env []string) *exec.Cmd {
	// argv is the sidecar's program followed by the command's words, each
	// one argv element: no shell ever reads them.
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) //nolint:gosec // see above
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	return cmd
}

// exitCode is the exit code of a command that ran with error err: its
// own, 128+N for a signal N; err when it did not run.
func exitCode(err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

// capped keeps the first max bytes written to it.
type capped struct {
	b   []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
