package envexec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// MaxFileBytes caps the env file the helper reads.
const MaxFileBytes = 8 << 20

// DefaultPath is the PATH of a container whose pod and runtime set none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Encode writes env as NUL-separated NAME=VALUE entries. A name must be
// non-empty and hold neither '=' nor NUL; a value must not hold NUL (a C
// environment cannot carry it).
func Encode(env [][2]string) ([]byte, error) {
	var b bytes.Buffer
	for _, kv := range env {
		switch {
		case kv[0] == "" || strings.ContainsAny(kv[0], "=\x00"):
			return nil, fmt.Errorf("env name %q is empty or holds '=' or NUL", kv[0])
		case strings.ContainsRune(kv[1], 0):
			return nil, fmt.Errorf("env %s holds a NUL byte, which no environment can carry", kv[0])
		}
		b.WriteString(kv[0] + "=" + kv[1])
		b.WriteByte(0)
	}
	return b.Bytes(), nil
}

// Decode reads what Encode wrote.
func Decode(data []byte) ([][2]string, error) {
	var env [][2]string
	for len(data) > 0 {
		entry, rest, ok := bytes.Cut(data, []byte{0})
		if !ok {
			return nil, errors.New("env file: the last entry is not NUL-terminated")
		}
		name, value, ok := strings.Cut(string(entry), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("env file: entry %q is not NAME=VALUE", entry)
		}
		env = append(env, [2]string{name, value})
		data = rest
	}
	return env, nil
}

// usage is how the job calls the helper: -C changes to DIR (made when
// missing, as container runtimes make a container's working directory),
// each -r makes the bind mounted at PATH read-only (see remountReadOnly),
// -t PATH=OUT runs the command as a child and keeps its termination
// message (see termination.go).
const usage = "usage: interlink-envexec [-C DIR] [-r PATH]... [-t PATH=OUT] ENVFILE -- COMMAND [ARG...]"

// Exit codes, as a shell gives them.
const (
	codeError       = 1
	codeNotRunnable = 126
	codeNotFound    = 127
)

// Main runs the helper with args (os.Args) and returns the exit code of a
// failure to start the command; on success it does not return.
func Main(args []string, stderr io.Writer) int {
	if len(args) > 1 && args[1] == BindMode {
		return bindMain(args[2:], stderr)
	}
	if len(args) > 1 && args[1] == ReapMode {
		return reapMain(args[2:], stderr)
	}
	if len(args) == 2 && args[1] == LogMode {
		if err := Log(os.Stdin, os.Stdout, time.Now); err != nil {
			fmt.Fprintf(stderr, "interlink-envexec log: %v\n", err)
			return codeError
		}
		return 0
	}
	a, err := parseArgs(args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "interlink-envexec: %v\n%s\n", err, usage)
		return codeError
	}
	argv := a.argv
	if err := setEnv(a.file); err != nil {
		fmt.Fprintf(stderr, "interlink-envexec: %v\n", err)
		return codeError
	}
	// A bind that should be read-only and is not stops the container.
	for _, p := range a.readOnly {
		if err := remountReadOnly(p); err != nil {
			fmt.Fprintf(stderr, "interlink-envexec: %v: the container does not start with it writable\n", err)
			return codeError
		}
	}
	if a.dir != "" {
		err := os.Chdir(a.dir)
		if errors.Is(err, fs.ErrNotExist) {
			if err = os.MkdirAll(a.dir, 0o755); err == nil { //nolint:gosec // a working directory, as runtimes make it
				err = os.Chdir(a.dir)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "interlink-envexec: working directory: %v\n", err)
			return codeError
		}
	}
	// Locked until the exec, never unlocked: see dropCapabilities.
	runtime.LockOSThread()
	if err := dropCapabilities(); err != nil {
		fmt.Fprintf(stderr, "interlink-envexec: %v\n", err)
		return codeError
	}
	prog, err := lookPath(argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "interlink-envexec: %s: %v\n", argv[0], err)
		if errors.Is(err, fs.ErrPermission) {
			return codeNotRunnable
		}
		return codeNotFound
	}
	if a.term != nil {
		return supervise(prog, argv, a.term, stderr)
	}
	// Inside the container: running the pod's command is the helper's job.
	err = syscall.Exec(prog, argv, os.Environ()) //nolint:gosec // see above

	fmt.Fprintf(stderr, "interlink-envexec: %s: %v\n", argv[0], err)
	if errors.Is(err, syscall.ENOENT) {
		return codeNotFound
	}
	return codeNotRunnable
}

// containerArgs are the arguments of the helper in a container.
type containerArgs struct {
	dir      string       // -C
	readOnly []string     // each -r, in order
	term     *termination // -t
	file     string       // ENVFILE
	argv     []string     // COMMAND [ARG...]
}

func parseArgs(args []string) (containerArgs, error) {
	var a containerArgs
	for len(args) > 1 && (args[0] == "-C" || args[0] == "-r" || args[0] == "-t") {
		switch args[0] {
		case "-C":
			a.dir = args[1]
		case "-t":
			t, err := parseTermination(args[1])
			if err != nil {
				return containerArgs{}, err
			}
			a.term = t
		default:
			if !path.IsAbs(args[1]) {
				return containerArgs{}, fmt.Errorf("-r %q: not an absolute path", args[1])
			}
			a.readOnly = append(a.readOnly, args[1])
		}
		args = args[2:]
	}
	if len(args) < 3 || args[1] != "--" {
		return containerArgs{}, errors.New("missing ENVFILE, -- or COMMAND")
	}
	a.file, a.argv = args[0], args[2:]
	return a, nil
}

// setEnv replaces the environment with the runtime's, overlaid by the
// file's entries; PATH defaults to DefaultPath.
func setEnv(file string) error {
	f, err := os.Open(file) //nolint:gosec // the job names the file, inside the container
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	if len(data) > MaxFileBytes {
		return fmt.Errorf("env file: larger than %d bytes", MaxFileBytes)
	}
	env, err := Decode(data)
	if err != nil {
		return err
	}
	if _, ok := os.LookupEnv("PATH"); !ok {
		_ = os.Setenv("PATH", DefaultPath)
	}
	for _, kv := range env {
		if err := os.Setenv(kv[0], kv[1]); err != nil {
			return fmt.Errorf("env %s: %w", kv[0], err)
		}
	}
	return nil
}

// lookPath finds name as a shell would: a name with a slash as it is,
// otherwise the first executable in PATH (relative entries included, as
// the pod asked for them).
func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		return p, nil
	}
	return p, err
}
