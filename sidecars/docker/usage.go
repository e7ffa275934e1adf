package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/seed-3f807049/interlink/functions/api"
)

// A pod's usage (api.PodUsage) comes from Docker's stats API: one one-shot
// stats call per running app container, at most once per usageInterval;
// Status reuses a container's last sample in between. The rate of CPU use
// is the change of the CPU counter between two samples of the same run.

// usageInterval is the least time between two stats calls for one
// container (the kubelet's cAdvisor samples every 10 to 15 s).
const usageInterval = 5 * time.Second

// maxStatsBytes bounds the JSON of one stats answer (a few KiB).
const maxStatsBytes = 1 << 20

// usageSample is what one stats call told of a container's run.
type usageSample struct {
	start time.Time // the run's start (Docker's StartedAt)
	read  time.Time // when Docker read the figures
	// cpu is the run's CPU time in nanoseconds, memory its working set in
	// bytes, rate its CPU use in nanocores since the run's previous
	// sample (nil for its first).
	cpu, memory uint64
	rate        *uint64
}

// usageCache is what the sidecar keeps of one container's samples.
type usageCache struct {
	run   string    // Docker's StartedAt of the run sampled
	tried time.Time // when the last stats call was made (the sidecar's clock)
	last  *usageSample
	// fresh tells that the last call gave last; after a failed one the
	// container has no usage until the next call.
	fresh bool
}

// usageOf is the usage of the run of c (Docker's StartedAt) now running:
// its cached sample if one was asked for less than usageEvery ago, else a
// new one; nil when Docker gives none.
func (d *Sidecar) usageOf(ctx context.Context, c container.Summary, run string) *usageSample {
	d.mu.Lock()
	if e := d.usage[c.ID]; e != nil && e.run == run && time.Since(e.tried) < d.usageEvery {
		defer d.mu.Unlock()
		if e.fresh {
			return e.last
		}
		return nil
	}
	d.mu.Unlock()
	// Concurrent status calls share one stats call per container.
	v, _, _ := d.sampling.Do(c.ID+"/"+run, func() (any, error) { return d.takeSample(ctx, c, run), nil })
	s, _ := v.(*usageSample)
	return s
}

// takeSample asks Docker for the figures of c's run and caches them, with
// the rate since the run's previous sample.
func (d *Sidecar) takeSample(ctx context.Context, c container.Summary, run string) *usageSample {
	tried := time.Now()
	st, err := d.stats(ctx, c.ID)
	var s *usageSample
	if err != nil {
		d.log.Debug("no resource usage: docker stats failed", "pod", c.Labels[LabelName], "namespace", c.Labels[LabelNamespace],
			"container", c.Labels[LabelContainer], "err", err)
	} else {
		s = newSample(st, run)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.usage == nil {
		d.usage = map[string]*usageCache{}
	}
	e := d.usage[c.ID]
	if e == nil || e.run != run {
		e = &usageCache{run: run} // a new run: no rate until its second sample
		d.usage[c.ID] = e
	}
	e.tried, e.fresh = tried, s != nil
	if s != nil {
		if e.last != nil {
			s.rate = nanoCores(e.last, s)
		}
		e.last = s
	}
	return s
}

// stats is one sample of Docker's stats of container id, taken at once
// (one-shot: without the second read Docker otherwise makes a second
// later for its precpu figures).
func (d *Sidecar) stats(ctx context.Context, id string) (container.StatsResponse, error) {
	start := time.Now()
	var st container.StatsResponse
	res, err := d.api.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false, IncludePreviousSample: false})
	if err == nil {
		err = json.NewDecoder(io.LimitReader(res.Body, maxStatsBytes)).Decode(&st)
		_ = res.Body.Close()
		if err != nil {
			err = fmt.Errorf("decode stats: %w", err)
		}
	}
	d.observe("stats", start, err)
	return st, err
}

// newSample is what st tells of the run: nil when it has no figures
// (Docker answers a container that is not running with an empty sample).
func newSample(st container.StatsResponse, run string) *usageSample {
	m := st.MemoryStats
	if st.Read.Year() < 2000 || m.Usage == 0 && len(m.Stats) == 0 {
		return nil
	}
	return &usageSample{start: parseTime(run).Time, read: st.Read, cpu: st.CPUStats.CPUUsage.TotalUsage, memory: workingSet(m)}
}

// workingSet is the memory the kernel cannot reclaim at once, as the
// kubelet (cAdvisor) counts it: usage less the inactive file pages (cgroup
// v1's total_inactive_file, cgroup v2's inactive_file), not below 0.
func workingSet(m container.MemoryStats) uint64 {
	inactive, ok := m.Stats["total_inactive_file"]
	if !ok {
		inactive = m.Stats["inactive_file"]
	}
	if inactive >= m.Usage {
		return 0
	}
	return m.Usage - inactive
}

// nanoCores is the CPU use between the run's samples prev and s, in
// nanocores (nanoseconds of CPU time per second); nil when the figures do
// not allow one.
func nanoCores(prev, s *usageSample) *uint64 {
	dt := s.read.Sub(prev.read)
	if dt <= 0 || s.cpu < prev.cpu {
		return nil
	}
	hi, lo := bits.Mul64(s.cpu-prev.cpu, uint64(time.Second))
	if hi >= uint64(dt) {
		return nil // more than 2^64 nanocores
	}
	q, _ := bits.Div64(hi, lo, uint64(dt))
	return &q
}

// podUsage is the usage of the pod's containers cs from their samples
// (nil where there is none), at the latest sample's read time; nil when
// no container has one.
func podUsage(cs []container.Summary, samples []*usageSample) *api.PodUsage {
	u := &api.PodUsage{}
	for i, s := range samples {
		if s == nil {
			continue
		}
		cu := api.ContainerUsage{Name: cs[i].Labels[LabelContainer], StartTime: s.start, CPUCoreNanoSeconds: s.cpu, MemoryWorkingSetBytes: s.memory}
		if s.rate != nil {
			cu.CPUNanoCores = ptr(*s.rate)
		}
		u.Containers = append(u.Containers, cu)
		if s.read.After(u.Time) {
			u.Time = s.read
		}
	}
	if len(u.Containers) == 0 {
		return nil
	}
	return u
}

// dropUsage forgets the samples of containers that stopped or are gone.
func (d *Sidecar) dropUsage(ids ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		delete(d.usage, id)
	}
}

// pruneUsage forgets the samples of the containers not in all (every
// container of the sidecar's pods, as listed), should a destroy event have
// been missed.
func (d *Sidecar) pruneUsage(all map[string][]container.Summary) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.usage) == 0 {
		return
	}
	there := map[string]bool{}
	for _, cs := range all {
		for _, c := range cs {
			there[c.ID] = true
		}
	}
	for id := range d.usage {
		if !there[id] {
			delete(d.usage, id)
		}
	}
}
