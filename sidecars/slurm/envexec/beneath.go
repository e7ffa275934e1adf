package envexec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The helper's second use, on the host, by the job (never by a container,
// never with the pod's environment): when a container starts, open each of
// its subPath and hostPath binds beneath its volume or allowed directory
// without following any symlink (as the kubelet does), and hand the runtime
// the path of what was opened, symlink-free. A runtime that binds in a
// mount namespace of its own cannot bind a descriptor opened outside it
// (mount(2) says EINVAL), so the runtime gets that path, not
// /proc/self/fd/N: a container running beside it that swaps a directory
// in the instant between the two is the race left.
//
//	interlink-envexec bind GROUP... -- PROGRAM [ARG...]
//
// A GROUP is six words: INDEX ROOT REL MKDIR PREFIX SUFFIX. REL (a
// slash-separated path, "." for ROOT itself) is opened beneath the
// directory ROOT; with MKDIR "1" its missing directories are made (an
// emptyDir's subPath, as Kubernetes makes it). ARG number INDEX (0 is
// PROGRAM) becomes PREFIX + the opened path + SUFFIX.

// BindMode is the first argument of the host mode.
const BindMode = "bind"

// bindGroup is one GROUP.
type bindGroup struct {
	index          int
	root, rel      string
	mkdir          bool
	prefix, suffix string
}

func parseBind(args []string) ([]bindGroup, []string, error) {
	var groups []bindGroup
	for len(args) > 0 && args[0] != "--" {
		if len(args) < 6 {
			return nil, nil, errors.New("a bind group needs INDEX ROOT REL MKDIR PREFIX SUFFIX")
		}
		i, err := strconv.Atoi(args[0])
		if err != nil || i < 0 {
			return nil, nil, fmt.Errorf("bind index %q is not a number", args[0])
		}
		groups = append(groups, bindGroup{index: i, root: args[1], rel: args[2], mkdir: args[3] == "1", prefix: args[4], suffix: args[5]})
		args = args[6:]
	}
	if len(args) < 2 {
		return nil, nil, errors.New("missing -- PROGRAM")
	}
	argv := args[1:]
	for _, g := range groups {
		if g.index >= len(argv) {
			return nil, nil, fmt.Errorf("bind index %d is past the program's %d arguments", g.index, len(argv))
		}
	}
	return groups, argv, nil
}

// bindMain runs the host mode with args (after "bind").
func bindMain(args []string, stderr io.Writer) int {
	groups, argv, err := parseBind(args)
	if err != nil {
		fmt.Fprintf(stderr, "interlink-envexec bind: %v\n", err)
		return codeError
	}
	for _, g := range groups {
		p, err := ResolveBeneath(g.root, g.rel, g.mkdir)
		if err != nil {
			fmt.Fprintf(stderr, "interlink-envexec: %v\n", err)
			return codeError
		}
		argv[g.index] = g.prefix + p + g.suffix
	}
	err = syscall.Exec(argv[0], argv, os.Environ()) //nolint:gosec // the job's own program, by absolute path
	fmt.Fprintf(stderr, "interlink-envexec: %s: %v\n", argv[0], err)
	return codeNotRunnable
}

// ResolveBeneath opens rel beneath root (OpenBeneath) and returns the path
// of what it opened, which holds no symlink below root.
func ResolveBeneath(root, rel string, mkdir bool) (string, error) {
	fd, err := OpenBeneath(root, rel, mkdir)
	if err != nil {
		return "", err
	}
	defer func() { _ = unix.Close(fd) }()
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("%s beneath %s: %w", rel, root, err)
	}
	if strings.ContainsAny(p, ":,\n") {
		return "", fmt.Errorf("%s beneath %s: its path %q holds ':', ',' or a newline", rel, root, p)
	}
	return p, nil
}

// maxDepth bounds the components of a path opened beneath a root.
const maxDepth = 256

// OpenBeneath opens rel beneath the directory root without following a
// symlink in rel (root itself may be one: it is the sidecar's or the
// operator's), making missing directories when mkdir is set, and returns an
// O_PATH descriptor (close-on-exec).
func OpenBeneath(root, rel string, mkdir bool) (int, error) {
	if path.IsAbs(rel) || strings.ContainsRune(rel, 0) {
		return -1, fmt.Errorf("%q is not a relative path", rel)
	}
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", root, err)
	}
	parts := strings.Split(rel, "/")
	if len(parts) > maxDepth {
		_ = unix.Close(dir)
		return -1, fmt.Errorf("%q has too many components", rel)
	}
	for _, name := range parts {
		switch name {
		case "", ".":
			continue
		case "..":
			_ = unix.Close(dir)
			return -1, fmt.Errorf("%q leaves %s", rel, root)
		}
		next, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && mkdir {
			if err = unix.Mkdirat(dir, name, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		_ = unix.Close(dir)
		if err != nil {
			return -1, fmt.Errorf("open %s beneath %s: %w", rel, root, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			_ = unix.Close(next)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			_ = unix.Close(next)
			return -1, fmt.Errorf("%s beneath %s crosses a symlink (%s): refused, as a kubelet refuses it", rel, root, name)
		}
		dir = next
	}
	return dir, nil
}

// LogMode is the first argument of the log mode: the job pipes a
// container's output through it, and it writes each line prefixed with the
// time it was read (RFC 3339, UTC), a line longer than LogPiece bytes in
// pieces, each one a line, as the CRI splits long lines. It reads with one
// buffer whatever the container writes.
const LogMode = "log"

// LogPiece is the longest line the log mode writes.
const LogPiece = 16 << 10

// Log copies in to out as timestamped lines.
func Log(in io.Reader, out io.Writer, now func() time.Time) error {
	r := bufio.NewReaderSize(in, LogPiece)
	buf := make([]byte, 0, LogPiece+64)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			buf = now().UTC().AppendFormat(buf[:0], time.RFC3339Nano)
			buf = append(buf, ' ')
			buf = append(buf, line...)
			if buf[len(buf)-1] != '\n' {
				buf = append(buf, '\n')
			}
			if _, werr := out.Write(buf); werr != nil {
				return werr
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
}
