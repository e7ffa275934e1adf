package envexec

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Before it runs the pod's command, the helper confines the container, as
// a container runtime does and the HPC runtimes do not: it makes each
// read-only bind (-r PATH) read-only, since Charliecloud's ch-run binds
// only read-write, then drops the capabilities that could undo that or
// reach the host. The job starts it as uid 0 of the container's user
// namespace (ch-run --uid=0 --gid=0): it holds every capability there,
// over the mounts of the container's mount namespace only.

// stNoSymFollow is ST_NOSYMFOLLOW (Linux 5.10), which x/sys/unix lacks.
const stNoSymFollow = 0x2000

// mountFlagsOfStatfs maps the per-mount flags statfs(2) reports (ST_*) to
// mount(2)'s (MS_*). A bind made in a user namespace from a mount of a more
// privileged one has them locked: a remount that would clear one fails
// with EPERM, so the remount repeats them (as runc does).
var mountFlagsOfStatfs = [...]struct {
	st int64
	ms uintptr
}{
	{unix.ST_NOSUID, unix.MS_NOSUID},
	{unix.ST_NODEV, unix.MS_NODEV},
	{unix.ST_NOEXEC, unix.MS_NOEXEC},
	{unix.ST_NOATIME, unix.MS_NOATIME},
	{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
	{unix.ST_RELATIME, unix.MS_RELATIME},
	{stNoSymFollow, unix.MS_NOSYMFOLLOW},
}

// remountFlags are the flags of the read-only remount of a bind whose
// statfs flags are st: read-only plus the per-mount flags it has. A mount
// with neither noatime nor relatime is strictatime: without MS_STRICTATIME
// the kernel would make it relatime, a change refused when locked.
func remountFlags(st int64) uintptr {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
	for _, f := range mountFlagsOfStatfs {
		if st&f.st != 0 {
			flags |= f.ms
		}
	}
	if st&(unix.ST_NOATIME|unix.ST_RELATIME) == 0 {
		flags |= unix.MS_STRICTATIME
	}
	return flags
}

// remountReadOnly makes the bind mounted at p read-only, and checks that
// it now is.
func remountReadOnly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return fmt.Errorf("read-only bind %s: %w", p, err)
	}
	if err := unix.Mount("", p, "", remountFlags(int64(st.Flags)), ""); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("make %s read-only: %w (is it a bind mount point?)", p, err)
		}
		return fmt.Errorf("make %s read-only: %w", p, err)
	}
	if err := unix.Statfs(p, &st); err != nil {
		return fmt.Errorf("read-only bind %s: %w", p, err)
	}
	if st.Flags&unix.ST_RDONLY == 0 {
		return fmt.Errorf("%s is still writable after its read-only remount", p)
	}
	return nil
}

// keptCaps are the capabilities the pod's command may keep: Docker's
// default set. CAP_SYS_ADMIN (mount, remount) is not one of them.
var keptCaps = [...]int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
	unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
	unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// keptMask is keptCaps as a bit mask.
func keptMask() uint64 {
	var m uint64
	for _, c := range keptCaps {
		m |= 1 << c
	}
	return m
}

// dropCapabilities leaves the calling thread no capability outside
// keptCaps and sets no_new_privs, so that the program it execs has none
// either and gains none (setuid bits and file capabilities are ignored),
// whatever its uid:
//   - the bounding set loses every other capability (when the thread may
//     change it: CAP_SETPCAP; a runtime that starts the helper without it
//     gave it fewer capabilities already);
//   - the ambient set is cleared; permitted, effective and inheritable
//     keep only keptCaps.
//
// With no_new_privs the new program's permitted set is within the
// thread's permitted set, so the second step alone bounds it, and the
// first one makes it so for every later execve too.
//
// Capabilities and no_new_privs belong to a thread, not to the process:
// capset(2) and prctl(2) change the calling thread only, and execve(2)
// gives the new program the credentials of the thread that calls it
// (every other thread ends). The caller therefore locks its goroutine to
// its OS thread (runtime.LockOSThread) before this call and keeps it
// locked until it calls syscall.Exec: the thread that dropped them is the
// one that execs. The Go runtime's other threads keep theirs meanwhile,
// but they run none of the pod's code and vanish at the execve.
func dropCapabilities() error {
	keep := keptMask()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		for c := range 64 {
			if keep&(1<<c) != 0 {
				continue
			}
			err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			if err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	// EINVAL: a kernel before 4.3, which has no ambient set.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	for i := range data {
		k := uint32(keep >> (32 * i) & 0xffffffff) //nolint:gosec // masked to 32 bits
		data[i].Effective &= k
		data[i].Permitted &= k
		data[i].Inheritable &= k
	}
	hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}
