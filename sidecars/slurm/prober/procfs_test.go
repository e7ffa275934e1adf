package prober

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// statFields are a process's figures in a fake /proc/PID/stat.
type statFields struct {
	ppid                         int
	state                        string // "S" when empty
	utime, stime, cutime, cstime uint64
	start                        uint64 // clock ticks since boot
	rss                          uint64 // pages
}

// statLine is a /proc/PID/stat line as the kernel writes it (52 fields),
// with a command name that holds ") " as a hostile one may.
func statLine(pid int, f statFields) string {
	state := f.state
	if state == "" {
		state = "S"
	}
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	return strconv.Itoa(pid) + " (a) b) " + state + " " + strconv.Itoa(f.ppid) + " 1 1 0 -1 4194304 101 0 0 0 " +
		u(f.utime) + " " + u(f.stime) + " " + u(f.cutime) + " " + u(f.cstime) + " 20 0 1 0 " + u(f.start) +
		" 3133440 " + u(f.rss) + " 18446744073709551615 94131994357760 94131994377641 140724997278976 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0" +
		" 94131994393648 94131994395264 94132557414400 140724997286399 140724997286419 140724997286419 140724997287915 0\n"
}

// writeProc writes a fake proc file system: each process's stat, and the
// boot time.
func writeProc(t *testing.T, root string, btime int64, procs map[int]statFields) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("cpu  1 2 3 4 5 6 7 0 0 0\nbtime "+strconv.FormatInt(btime, 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for pid, f := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(pid, f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStat: /proc/PID/stat's parent and start, whatever the command name
// holds; a zombie and a missing process are gone; the start's wall time
// comes from the boot time.
func TestStat(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 1_700_000_000, map[int]statFields{
		10: {ppid: 1, start: 250},
		11: {ppid: 10, state: "Z", start: 300},
	})
	p := procFS{root: root, self: "self"}
	if ppid, start, err := p.stat(10); err != nil || ppid != 1 || start != 250 {
		t.Errorf("stat(10): %d %d %v", ppid, start, err)
	}
	for _, pid := range []int{11, 12} {
		if _, _, err := p.stat(pid); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat(%d): %v, want fs.ErrNotExist", pid, err)
		}
	}
	if got := p.parents(); len(got) != 1 || got[10] != 1 {
		t.Errorf("parents: %v, want the live process alone", got)
	}
	at, err := p.startedAt(250)
	if want := int64(1_700_000_002); err != nil || at.Unix() != want || at.Nanosecond() != 500_000_000 {
		t.Errorf("startedAt: %v %v, want %d.5", at, err, want)
	}
}
