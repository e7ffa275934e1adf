package prober

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// procFS reads the processes the prober looks at from a proc file system
// (/proc; a fake tree in tests).
type procFS struct {
	// root is the proc file system's mount point.
	root string
	// self is the name of the prober's own entry ("self").
	self string
	// userNSDepth tells how deep pid's user namespace is nested in the
	// prober's (0: the same); false when it is not within it.
	userNSDepth func(pid int) (int, bool)
	// rootHolds tells whether name exists under pid's root (nil: always).
	rootHolds func(pid int, name string) bool
}

// hostProc is the real /proc.
var hostProc = procFS{root: "/proc", self: "self", userNSDepth: userNSDepth, rootHolds: rootHolds}

// procID tells one process apart from an earlier one of the same pid.
type procID struct {
	pid   int
	start uint64 // starttime of /proc/PID/stat, in clock ticks since boot
}

// procStat reads /proc/PID/stat; a missing process is fs.ErrNotExist.
func (p procFS) procStat(pid int) (procfs.ProcStat, error) {
	fs, err := procfs.NewFS(p.root)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	proc, err := fs.Proc(pid)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	st, err := proc.Stat()
	if err != nil {
		return procfs.ProcStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// gone tells whether a process's stat is a zombie's (or a dead one's).
func gone(st procfs.ProcStat) bool { return st.State == "Z" || st.State == "X" }

// stat reads a process's parent and start time; a missing process is
// fs.ErrNotExist. A zombie counts as gone.
func (p procFS) stat(pid int) (ppid int, start uint64, err error) {
	st, err := p.procStat(pid)
	if err != nil {
		return 0, 0, err
	}
	if gone(st) {
		return 0, 0, fmt.Errorf("process %d: %w (a zombie)", pid, os.ErrNotExist)
	}
	return st.PPID, st.Starttime, nil
}

// current is the live process a pid file names.
func (p procFS) current(pidPath string) (procID, bool) {
	pid := readPID(pidPath)
	if pid == 0 {
		return procID{}, false
	}
	_, start, err := p.stat(pid)
	if err != nil {
		return procID{}, false
	}
	return procID{pid: pid, start: start}, true
}

// alive tells whether id is still the process it was.
func (p procFS) alive(id procID) bool {
	_, start, err := p.stat(id.pid)
	return err == nil && start == id.start
}

// snapshot reads the stat of every process, zombies included: one pass
// over the proc file system. A process that ends during the pass is left
// out.
func (p procFS) snapshot() map[int]procfs.ProcStat {
	fs, err := procfs.NewFS(p.root)
	if err != nil {
		return nil
	}
	all, err := fs.AllProcs()
	if err != nil {
		return nil
	}
	m := make(map[int]procfs.ProcStat, len(all))
	for _, proc := range all {
		if proc.PID <= 0 {
			continue
		}
		if st, err := proc.Stat(); err == nil {
			m[proc.PID] = st
		}
	}
	return m
}

// parents maps each live process to its parent.
func (p procFS) parents() map[int]int {
	return parentsOf(p.snapshot(), false)
}

// parentsOf maps each process of a snapshot to its parent, zombies only
// with withZombies.
func parentsOf(snap map[int]procfs.ProcStat, withZombies bool) map[int]int {
	m := make(map[int]int, len(snap))
	for pid, st := range snap {
		if withZombies || !gone(st) {
			m[pid] = st.PPID
		}
	}
	return m
}

// descendants lists pid's descendants breadth first, lower pids first
// among the children of one process.
func descendants(parents map[int]int, pid int) []int {
	children := map[int][]int{}
	for c, pp := range parents {
		if c != pp {
			children[pp] = append(children[pp], c)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) <= len(parents) {
		kids := children[queue[0]]
		slices.Sort(kids)
		out = append(out, kids...)
		queue = append(queue[1:], kids...)
	}
	return out
}

// ns reads which namespace of kind (mnt, user, pid…) pid is in, as the
// link /proc/PID/ns/KIND names it; pid 0 is the prober's own.
func (p procFS) ns(pid int, kind string) (string, error) {
	name := p.self
	if pid != 0 {
		name = strconv.Itoa(pid)
	}
	return os.Readlink(filepath.Join(p.root, name, "ns", kind))
}

// nsGetParent is NS_GET_PARENT, _IO(0xb7, 0x2), which x/sys/unix lacks.
const nsGetParent = 0xb702

// maxUserNSDepth is the kernel's limit of nested user namespaces.
const maxUserNSDepth = 32

// userNSDepth counts the steps from pid's user namespace up to the
// prober's.
func userNSDepth(pid int) (int, bool) {
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &own); err != nil {
		return 0, false
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer func() { _ = unix.Close(fd) }()
	for depth := 0; depth <= maxUserNSDepth; depth++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, false
		}
		if st.Dev == own.Dev && st.Ino == own.Ino {
			return depth, true
		}
		parent, err := unix.IoctlRetInt(fd, nsGetParent)
		if err != nil { // EPERM: past the prober's own
			return 0, false
		}
		_ = unix.Close(fd)
		fd = parent
	}
	return 0, false
}

// owner is the uid that owns /proc/PID: the process's effective uid.
func (p procFS) owner(pid int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(p.root, strconv.Itoa(pid)), &st); err != nil {
		return 0, err
	}
	return st.Uid, nil
}

// jobRoot is the first of pid's ancestors (pid itself included) whose
// parent is not the user's: in a Slurm job, the batch script, of which
// every container of the job descends (slurmstepd runs as root).
func (p procFS) jobRoot(pid int) int {
	uid, err := p.owner(pid)
	if err != nil {
		return pid
	}
	for range 1 << 16 {
		ppid, _, err := p.stat(pid)
		if err != nil || ppid <= 1 {
			return pid
		}
		if u, err := p.owner(ppid); err != nil || u != uid {
			return pid
		}
		pid = ppid
	}
	return pid
}

// descends tells whether pid is ancestor or one of its descendants,
// walking up from pid.
func (p procFS) descends(pid, ancestor int) bool {
	for range 1 << 16 {
		if pid == ancestor {
			return true
		}
		ppid, _, err := p.stat(pid)
		if err != nil || ppid <= 0 || ppid == pid {
			return false
		}
		pid = ppid
	}
	return false
}

// userHZ is the kernel's clock tick for /proc/PID/stat's starttime:
// USER_HZ, 100 on every architecture Linux and Go share.
const userHZ = 100

// startedAt is the wall time process start (a procID's) began, from the
// boot time of the proc file system's stat.
func (p procFS) startedAt(start uint64) (time.Time, error) {
	fs, err := procfs.NewFS(p.root)
	if err != nil {
		return time.Time{}, err
	}
	st, err := fs.Stat()
	if err != nil {
		return time.Time{}, err
	}
	if st.BootTime == 0 {
		return time.Time{}, fmt.Errorf("%s/stat: no btime", p.root)
	}
	boot := int64(st.BootTime) //nolint:gosec // seconds since 1970: far below 2^63
	return time.Unix(boot, 0).Add(ticks(start)), nil
}

// ticks is n clock ticks of /proc/PID/stat as a duration.
func ticks(n uint64) time.Duration {
	return time.Duration(n) * (time.Second / userHZ) //nolint:gosec // clock ticks: far below 2^63 ns
}
