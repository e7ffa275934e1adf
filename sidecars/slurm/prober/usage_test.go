package prober

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bootTime is the fake proc file system's boot time.
const bootTime = 1_700_000_000

// tickTime is the wall time of a process start in the fake proc file system.
func tickTime(start uint64) time.Time { return time.Unix(bootTime, 0).Add(ticks(start)).UTC() }

// fakeSampler samples the containers of targets over a fake proc file
// system holding procs, pid 50 being the job's shell; its clock is set by
// the test.
type fakeSampler struct {
	*sampler
	proc  string
	clock time.Time
	asked [][]string // the PIDOf commands run
	pid   int        // what PIDOf prints
}

func newFakeSampler(t *testing.T, targets []Sampled, procs map[int]statFields) *fakeSampler {
	t.Helper()
	pod := t.TempDir()
	dir := filepath.Join(pod, "containers")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeProc(t, root, bootTime, procs)
	f := &fakeSampler{proc: root, clock: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	f.sampler = &sampler{targets: targets, dir: dir, path: filepath.Join(pod, UsageFile), proc: procFS{root: root, self: "self"},
		ancestor: 50, every: time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil)), runs: map[string]*measured{},
		now: func() time.Time { return f.clock },
		pidOf: func(_ context.Context, argv []string) (int, error) {
			f.asked = append(f.asked, argv)
			if f.pid == 0 {
				return 0, errors.New("not running")
			}
			return f.pid, nil
		}}
	return f
}

// record records a run of name, as il_run and il_pid do: its start, its
// pid.
func (f *fakeSampler) record(t *testing.T, name string, pid int, started time.Time) {
	t.Helper()
	_ = os.Remove(filepath.Join(f.dir, name+exitSuffix))
	for file, s := range map[string]string{startedSuffix: started.Format(time.RFC3339Nano) + "\n", pidSuffix: strconv.Itoa(pid) + "\n"} {
		if err := os.WriteFile(filepath.Join(f.dir, name+file), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// usage samples once at the clock, after d, and reads the usage file.
func (f *fakeSampler) usage(t *testing.T, d time.Duration) Usage {
	t.Helper()
	f.clock = f.clock.Add(d)
	if err := f.sample(t.Context()); err != nil {
		t.Fatal(err)
	}
	return readUsageFile(t, f.path)
}

func readUsageFile(t *testing.T, path string) Usage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var u Usage
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return u
}

func ns(ticks uint64) uint64 { return ticks * uint64(time.Second/userHZ) }

func pages(n uint64) uint64 { return n * uint64(os.Getpagesize()) } //nolint:gosec // a page size is positive

// TestSampleTree: a container's usage is its run's process tree, reaped
// children (cutime, cstime) and zombies included, nothing else of the
// node or the job; the rate comes from two samples of the same run; a new
// run starts again without a rate; an ended run is left out.
func TestSampleTree(t *testing.T) {
	procs := map[int]statFields{
		1:   {},
		50:  {ppid: 1, utime: 1000},                                                               // the job's shell
		100: {ppid: 50, utime: 100, stime: 50, cutime: 30, cstime: 20, start: 100_000, rss: 1000}, // the run
		101: {ppid: 100, utime: 200, start: 100_010, rss: 500},
		102: {ppid: 101, utime: 300, start: 100_020, rss: 250},
		103: {ppid: 101, state: "Z", utime: 7, stime: 3, start: 100_030},
		200: {ppid: 1, utime: 99_999, rss: 99_999}, // another job's
		201: {ppid: 50, utime: 5000, rss: 7000},    // the job's other container
		202: {ppid: 201, utime: 5000, rss: 7000},
	}
	f := newFakeSampler(t, []Sampled{{Name: "app"}, {Name: "idle"}}, procs)
	if err := f.sample(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a usage file with nothing running: %v", err)
	}
	f.record(t, "app", 100, tickTime(100_000))
	first := f.usage(t, 0)
	want := Usage{Time: f.clock, Containers: []ContainerUsage{{Name: "app", StartTime: tickTime(100_000),
		CPUCoreNanoSeconds: ns(100 + 50 + 30 + 20 + 200 + 300 + 7 + 3), MemoryWorkingSetBytes: pages(1000 + 500 + 250)}}}
	if d := cmp.Diff(want, first); d != "" {
		t.Fatalf("first sample (-want +got):\n%s", d)
	}
	if st, err := os.Stat(f.path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("usage file: %v, %v; want mode 0600", st.Mode(), err)
	}

	// One more CPU second in 2 s: half a core.
	procs[102] = statFields{ppid: 101, utime: 400, start: 100_020, rss: 250}
	writeProc(t, f.proc, bootTime, procs)
	second := f.usage(t, 2*time.Second)
	if got := second.Containers[0]; got.CPUCoreNanoSeconds != want.Containers[0].CPUCoreNanoSeconds+uint64(time.Second) ||
		got.CPUNanoCores == nil || *got.CPUNanoCores != 500_000_000 {
		t.Errorf("second sample %+v, want 1 s more and 500000000 nanocores", got)
	}

	// A process leaves the tree with its time (re-parented away): the
	// cumulative goes down, and no rate is made of it.
	procs[102] = statFields{ppid: 1, utime: 400, start: 100_020, rss: 250}
	writeProc(t, f.proc, bootTime, procs)
	if got := f.usage(t, 2*time.Second).Containers[0]; got.CPUNanoCores != nil || got.MemoryWorkingSetBytes != pages(1500) {
		t.Errorf("after a process left the tree: %+v, want no rate", got)
	}

	// The container starts again: a new pid, a new start, no rate yet.
	procs[300] = statFields{ppid: 50, utime: 10, start: 200_000, rss: 100}
	writeProc(t, f.proc, bootTime, procs)
	f.record(t, "app", 300, tickTime(200_000))
	again := f.usage(t, 2*time.Second)
	want = Usage{Time: f.clock, Containers: []ContainerUsage{{Name: "app", StartTime: tickTime(200_000),
		CPUCoreNanoSeconds: ns(10), MemoryWorkingSetBytes: pages(100)}}}
	if d := cmp.Diff(want, again); d != "" {
		t.Errorf("new run (-want +got):\n%s", d)
	}

	// The run ended (NAME.exit): the file no longer lists it, once.
	if err := os.WriteFile(filepath.Join(f.dir, "app"+exitSuffix), []byte("0 x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if u := f.usage(t, 2*time.Second); len(u.Containers) != 0 || !u.Time.Equal(f.clock) {
		t.Errorf("after the run's end: %+v", u)
	}
	ended := f.clock
	if u := f.usage(t, 2*time.Second); !u.Time.Equal(ended) {
		t.Errorf("an empty usage file was written again at %v", u.Time)
	}
}

// TestSampleNotTheRun: a pid file that names no current run of the job
// (a reused pid, a process outside the job) is never measured.
func TestSampleNotTheRun(t *testing.T) {
	f := newFakeSampler(t, []Sampled{{Name: "stale"}, {Name: "foreign"}}, map[int]statFields{
		1:   {},
		50:  {ppid: 1},
		100: {ppid: 50, utime: 100, start: 100_000, rss: 10},
		200: {ppid: 1, utime: 100, start: 100_000, rss: 10},
	})
	f.record(t, "stale", 100, tickTime(100_000).Add(-time.Hour)) // the run recorded an hour before the process began
	f.record(t, "foreign", 200, tickTime(100_000))
	for range 2 {
		if err := f.sample(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(f.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("usage written for processes that are not the job's runs: %v", err)
	}
}

// TestSamplePIDOf: with PIDOf (Podman), the container's tree is rooted at
// the pid it prints, not at the run's process (podman run), asked once per
// run once the container runs; a process older than the run is refused.
func TestSamplePIDOf(t *testing.T) {
	procs := map[int]statFields{
		1:   {},
		50:  {ppid: 1},
		100: {ppid: 50, utime: 1000, start: 100_000, rss: 9000}, // podman run
		399: {ppid: 1, utime: 77, start: 100_040},               // conmon
		400: {ppid: 399, utime: 20, start: 100_050, rss: 300},   // the container
		401: {ppid: 400, utime: 30, start: 100_060, rss: 200},
		500: {ppid: 1, utime: 30, start: 50_000, rss: 200}, // older than the run
	}
	pidOf := []string{"podman", "container", "inspect", "--format", "{{.State.Pid}}", PIDPlaceholder}
	f := newFakeSampler(t, []Sampled{{Name: "app", PIDOf: pidOf}}, procs)
	f.record(t, "app", 100, tickTime(100_000))
	if err := f.sample(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("usage written before the container runs: %v", err)
	}
	f.pid = 400
	u := f.usage(t, time.Second)
	want := []ContainerUsage{{Name: "app", StartTime: tickTime(100_000), CPUCoreNanoSeconds: ns(50), MemoryWorkingSetBytes: pages(500)}}
	if d := cmp.Diff(want, u.Containers); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	f.usage(t, time.Second)
	wantArgv := []string{"podman", "container", "inspect", "--format", "{{.State.Pid}}", "100"}
	if len(f.asked) != 2 || !slices.Equal(f.asked[1], wantArgv) {
		t.Errorf("PIDOf ran %q, want twice (once failing), as %q", f.asked, wantArgv)
	}

	// A new run whose PIDOf names an older process: not measured.
	procs[600] = statFields{ppid: 50, start: 200_000}
	writeProc(t, f.proc, bootTime, procs)
	f.record(t, "app", 600, tickTime(200_000))
	f.pid = 500
	if u := f.usage(t, time.Second); len(u.Containers) != 0 {
		t.Errorf("a process older than the run was measured: %+v", u)
	}
}

// TestUsageOfARealProcess: the prober, over the real /proc, writes the
// usage of a busy container and of its child, with a rate from its second
// sample on.
func TestUsageOfARealProcess(t *testing.T) {
	p := newProber(t, Spec{Sampled: []Sampled{{Name: "app"}}, UsageInterval: 100 * time.Millisecond})
	p.startProcess(t, "app", "/bin/sh", "-c", `sleep 100 & while :; do :; done`)
	started, err := os.ReadFile(filepath.Join(p.dir, "app"+startedSuffix))
	if err != nil {
		t.Fatal(err)
	}
	runProber(t, p)
	path := filepath.Join(filepath.Dir(p.dir), UsageFile)
	var u Usage
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		if u = readUsageFile(t, path); len(u.Containers) == 1 && u.Containers[0].CPUNanoCores != nil && *u.Containers[0].CPUNanoCores > 0 {
			break
		}
	}
	if len(u.Containers) != 1 {
		t.Fatalf("usage %+v", u)
	}
	c := u.Containers[0]
	if c.Name != "app" || c.StartTime.Format(time.RFC3339Nano) != strings.TrimSpace(string(started)) ||
		c.CPUCoreNanoSeconds == 0 || c.CPUNanoCores == nil || *c.CPUNanoCores == 0 || *c.CPUNanoCores > 4e9 ||
		c.MemoryWorkingSetBytes < 1<<16 || time.Since(u.Time) > 5*time.Second {
		t.Errorf("usage %+v (rate %v)", u, c.CPUNanoCores)
	}
}

// TestValidateSampled: a sampled container's name is a file name, once;
// its PIDOf names a program; the interval is bounded.
func TestValidateSampled(t *testing.T) {
	err := Spec{Sampled: []Sampled{{Name: "../x"}, {Name: "a", PIDOf: []string{""}}, {Name: "a"}}, UsageInterval: time.Hour}.Validate()
	for _, want := range []string{`"../x" is not a file name`, `"a" appears twice`, "pidOf names no program", "usageInterval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	if err := (Spec{Sampled: []Sampled{{Name: "a"}, {Name: "b", PIDOf: []string{"podman"}}}}).Validate(); err != nil {
		t.Error(err)
	}
}
