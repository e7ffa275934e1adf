package envexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// With -t PATH=OUT the helper, in the container, does not exec the
// command: it starts it as its child (with the same confinement: the
// thread that dropped the capabilities starts it), passes every signal
// it can catch on to it, waits for it, then copies the container's
// termination message (at most MaxMessageBytes of PATH, as the container
// sees it, only a regular file and never through a symlink at PATH) to
// OUT (0600, in the job's /.interlink/ bind, read by the sidecar), empty
// when there is none, and exits with the command's exit code (128+N when
// signal N killed it, as a shell tells). OUT holds no '=': PATH is what
// precedes the last one.

// MaxMessageBytes caps a termination message, as the kubelet's (and
// probe.MaxMessageBytes, which the helper does not import: it stays
// small).
const MaxMessageBytes = 4 << 10

// supervised are the signals passed on to the command: all that a
// process can catch, but for the Go runtime's own (SIGURG, SIGPROF) and
// the job-control stops, which stop the helper as they would the command.
var supervised = append([]os.Signal{unix.SIGWINCH, unix.SIGALRM, unix.SIGVTALRM, unix.SIGCONT,
	unix.SIGPWR, unix.SIGXCPU, unix.SIGXFSZ}, forwarded...)

// termination is the -t option.
type termination struct {
	path, out string
}

func parseTermination(v string) (*termination, error) {
	i := strings.LastIndexByte(v, '=')
	if i <= 0 || !strings.HasPrefix(v[i+1:], "/") {
		return nil, fmt.Errorf("-t %q: not PATH=OUT with an absolute OUT", v)
	}
	return &termination{path: v[:i], out: v[i+1:]}, nil
}

// supervise runs prog as a child, then keeps its termination message
// (see above), and returns its exit code. The calling goroutine must be
// locked to the thread that dropped the capabilities.
func supervise(prog string, argv []string, t *termination, stderr io.Writer) int {
	// The helper keeps capabilities in its other threads: the command
	// (same uid) must not trace it or read its memory.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(stderr, "interlink-envexec: %v\n", err)
		return codeError
	}
	// Inside the container: running the pod's command is the helper's job.
	proc, stop, fail := startPassingOn(prog, argv, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// A helper killed outright takes the command with it.
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}, supervised, stderr, "interlink-envexec")
	if proc == nil {
		return fail
	}
	state, err := proc.Wait()
	stop()
	code := codeError
	if err == nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok {
			code = waitCode(unix.WaitStatus(ws))
		}
	} else {
		fmt.Fprintf(stderr, "interlink-envexec: wait: %v\n", err)
	}
	if err := copyMessage(t.path, t.out); err != nil {
		fmt.Fprintf(stderr, "interlink-envexec: termination message: %v\n", err)
	}
	return code
}

// copyMessage writes at most MaxMessageBytes of the regular file from to
// the file to, or nothing when from is missing or no regular file.
func copyMessage(from, to string) error {
	msg, rerr := readMessage(from)
	fd, err := unix.Open(to, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return errors.Join(rerr, fmt.Errorf("open %s: %w", to, err))
	}
	f := os.NewFile(uintptr(fd), to)
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return errors.Join(rerr, fmt.Errorf("%s is not a regular file", to))
	}
	if _, err := f.Write(msg); err != nil {
		return errors.Join(rerr, err)
	}
	return rerr
}

// readMessage reads at most MaxMessageBytes of path: nothing when it is
// missing, an error when it is a symlink or no regular file.
func readMessage(path string) ([]byte, error) {
	// O_NONBLOCK: a FIFO does not block the open.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	msg, err := io.ReadAll(io.LimitReader(f, MaxMessageBytes))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return msg, nil
}
