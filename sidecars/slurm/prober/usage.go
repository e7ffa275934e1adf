package prober

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Resource usage. Every UsageInterval the prober measures each container
// of Spec.Sampled whose run is current (isRun) and the job's, and writes
// what it found to UsageFile in the pod's directory, which the sidecar
// reads for the pod's status. A container's processes are the tree of
// processes rooted at its run's pid (containers/NAME.pid: Charliecloud,
// Apptainer, Singularity and Enroot run the container's processes below
// it), or at the pid Sampled.PIDOf prints (Podman: conmon's child, which
// does not descend from podman run). There is no cgroup to read at these
// sites: CPU is the tree's utime+stime+cutime+cstime (a reaped child's time
// counts through its parent's cutime and cstime), memory the sum of its
// resident sets.

// UsageFile is the usage's name in the pod's directory.
const UsageFile = "usage.json"

// UsageInterval is how often the prober samples the containers' usage.
const UsageInterval = 5 * time.Second

// Bounds of Spec.UsageInterval.
const (
	minUsageInterval = 10 * time.Millisecond
	maxUsageInterval = time.Minute
)

// pidOfTimeout bounds one PIDOf command.
const pidOfTimeout = 10 * time.Second

// Usage is what the prober writes to UsageFile (JSON, replaced whole, mode
// 0600): api.PodUsage's shape. A container left out has no figures.
type Usage struct {
	// Time is when the sample was taken.
	Time       time.Time        `json:"time"`
	Containers []ContainerUsage `json:"containers"`
}

// ContainerUsage is one container's current run, in api.ContainerUsage's
// units.
type ContainerUsage struct {
	Name string `json:"name"`
	// StartTime is the run's start as the job recorded it (the first word
	// of containers/NAME.started): the sidecar matches it to the run it
	// reports.
	StartTime time.Time `json:"startTime"`
	// CPUCoreNanoSeconds is the CPU time of the run's live process tree,
	// its reaped children's included.
	CPUCoreNanoSeconds uint64 `json:"cpuCoreNanoSeconds"`
	// CPUNanoCores is the rate since the prober's previous sample of the
	// same run; nil on a run's first sample, or when the cumulative time
	// went down (a process left the tree with its time).
	CPUNanoCores *uint64 `json:"cpuNanoCores,omitempty"`
	// MemoryWorkingSetBytes is the sum of the tree's resident sets.
	MemoryWorkingSetBytes uint64 `json:"memoryWorkingSetBytes"`
}

// sampler samples the usage of the Sampled containers of one job.
type sampler struct {
	targets []Sampled
	// dir is the pod's containers/ directory, path the usage file.
	dir, path string
	proc      procFS
	// ancestor: a run's pid must descend from it (0: unchecked).
	ancestor int
	every    time.Duration
	log      *slog.Logger
	// pidOf runs a PIDOf argv and reads the pid it prints; now is the
	// clock (tests replace both).
	pidOf func(ctx context.Context, argv []string) (int, error)
	now   func() time.Time
	// runs are the runs being measured, by container name; wrote tells
	// whether the last write listed a container.
	runs  map[string]*measured
	wrote bool
}

// measured is what the sampler keeps of one container's run.
type measured struct {
	id procID // the run's process (NAME.pid)
	// skip: the pid file names no current run of the job's.
	skip bool
	// started is the run's start (NAME.started).
	started time.Time
	// root is the process whose tree is the container's (0: not known yet).
	root procID
	// last is the previous sample's time and CPU (zero: none).
	last    time.Time
	lastCPU uint64
}

// newSampler is the sampler of the prober's Spec.
func (p *prober) newSampler() *sampler {
	every := p.spec.UsageInterval
	if every == 0 {
		every = UsageInterval
	}
	return &sampler{targets: p.spec.Sampled, dir: p.dir, path: filepath.Join(filepath.Dir(p.dir), UsageFile),
		proc: p.proc, ancestor: p.ancestor, every: every, log: p.log.With("part", "usage"),
		pidOf: runPIDOf, now: time.Now, runs: map[string]*measured{}}
}

// run samples until ctx ends.
func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		if err := s.sample(ctx); err != nil {
			s.log.Warn("write the usage", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sample measures every running container and writes the usage file; a
// file that would list no container again is not rewritten.
func (s *sampler) sample(ctx context.Context) error {
	var live []*Sampled
	for i := range s.targets {
		if s.follow(ctx, &s.targets[i]) != nil {
			live = append(live, &s.targets[i])
		}
	}
	if len(live) == 0 && !s.wrote {
		return nil
	}
	snap := map[int]procfs.ProcStat{}
	if len(live) > 0 {
		snap = s.proc.snapshot()
	}
	u := Usage{Time: s.now().UTC(), Containers: []ContainerUsage{}}
	parents := parentsOf(snap, true)
	for _, t := range live {
		if cu, ok := s.measure(snap, parents, t.Name, s.runs[t.Name], u.Time); ok {
			u.Containers = append(u.Containers, cu)
		}
	}
	s.wrote = len(u.Containers) > 0
	return writeJSON(s.path, u)
}

// follow finds the current run of t, and the process whose tree is its
// container; nil when there is none to measure.
func (s *sampler) follow(ctx context.Context, t *Sampled) *measured {
	id, ok := s.proc.current(filepath.Join(s.dir, t.Name+pidSuffix))
	if !ok {
		delete(s.runs, t.Name)
		return nil
	}
	r := s.runs[t.Name]
	if r == nil || r.id != id {
		r = &measured{id: id}
		s.runs[t.Name] = r
		started, err := s.proc.runStart(s.dir, t.Name, id)
		switch {
		case err != nil:
			r.skip = true
			s.log.Info("pid file names no current run: not measured", "container", t.Name, "pid", id.pid, "err", err)
		case s.ancestor != 0 && !s.proc.descends(id.pid, s.ancestor):
			r.skip = true
			s.log.Warn("pid file names a process outside the job: not measured", "container", t.Name, "pid", id.pid)
		default:
			r.started = started
			if len(t.PIDOf) == 0 && t.Inside == "" {
				r.root = id
			}
		}
	}
	if r.skip {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(s.dir, t.Name+exitSuffix)); err == nil {
		return nil // the run ended: its pid file stays until the next one
	}
	if r.root.pid != 0 && !s.proc.alive(r.root) {
		if len(t.PIDOf) == 0 && t.Inside == "" {
			return nil // the run just ended
		}
		r.root, r.last = procID{}, time.Time{} // a new first process: a new tree
	}
	if r.root.pid == 0 && !s.findRoot(ctx, t, r) {
		return nil
	}
	return r
}

// findRoot asks PIDOf for the container's first process, and takes it if
// it began with the run or after: a process older than the run is not its
// container.
func (s *sampler) findRoot(ctx context.Context, t *Sampled, r *measured) bool {
	var pid int
	if len(t.PIDOf) == 0 {
		// The container's first process, below the runtime's own.
		p, err := containerProcess(s.proc, r.id.pid, &Container{Inner: []string{t.Inside}})
		if err != nil {
			return false // not in the container yet
		}
		pid = p
	} else {
		ctx, cancel := context.WithTimeout(ctx, pidOfTimeout)
		defer cancel()
		p, err := s.pidOf(ctx, execArgv(t.PIDOf, r.id.pid, nil))
		if err != nil || p <= 1 {
			return false // not running yet
		}
		pid = p
	}
	_, start, err := s.proc.stat(pid)
	if err != nil {
		return false
	}
	began, err := s.proc.startedAt(start)
	if err != nil || began.Before(r.started.Add(-runSlack)) {
		s.log.Info("the container's process is older than its run: not measured", "container", t.Name, "pid", pid, "err", err)
		return false
	}
	r.root = procID{pid: pid, start: start}
	return true
}

// measure sums the tree of r's root in snap (parents: snap's, zombies
// included) as the sample of time now.
func (s *sampler) measure(snap map[int]procfs.ProcStat, parents map[int]int, name string, r *measured, now time.Time) (ContainerUsage, bool) {
	root, ok := snap[r.root.pid]
	if !ok || root.Starttime != r.root.start || gone(root) {
		return ContainerUsage{}, false // ended since
	}
	var cpuTicks, rssPages uint64
	for _, pid := range append([]int{r.root.pid}, descendants(parents, r.root.pid)...) {
		st := snap[pid]
		cpuTicks += uint64(st.UTime) + uint64(st.STime) + nonNegative(st.CUTime) + nonNegative(st.CSTime)
		rssPages += nonNegative(st.RSS)
	}
	cu := ContainerUsage{Name: name, StartTime: r.started,
		CPUCoreNanoSeconds:    cpuTicks * uint64(time.Second/userHZ),
		MemoryWorkingSetBytes: rssPages * uint64(os.Getpagesize())} //nolint:gosec // a page size is positive
	if !r.last.IsZero() && now.After(r.last) && cu.CPUCoreNanoSeconds >= r.lastCPU {
		rate := uint64(float64(cu.CPUCoreNanoSeconds-r.lastCPU) / now.Sub(r.last).Seconds())
		cu.CPUNanoCores = &rate
	}
	r.last, r.lastCPU = now, cu.CPUCoreNanoSeconds
	return cu, true
}

func nonNegative(n int) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// runPIDOf runs argv and reads the pid it prints.
func runPIDOf(ctx context.Context, argv []string) (int, error) {
	code, out, err := runCapped(ctx, argv, nil)
	if err == nil && code != 0 {
		err = fmt.Errorf("%s: exit code %d", argv[0], code)
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, errors.New("no pid")
	}
	return pid, nil
}
