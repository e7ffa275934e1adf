package slurm

import (
	"encoding/json"
	"path"
	"slices"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

// Resource usage. The job's prober samples its running containers every
// prober.UsageInterval and writes DIR/usage.json (prober.Usage); a status
// reads it, as it reads the containers' other files, for the containers
// it reports running. The file is the job's: the pod may have written
// anything there, so it counts only when it is small, fresh, names the
// pod's containers once each, and holds figures a node could have.

// maxUsageBytes caps the usage file read (a container takes about 250
// bytes).
const maxUsageBytes = 64 << 10

// usageSlack is how much a sample may be older than three intervals (a
// write on the shared file system, the status poll), or ahead of the
// sidecar's clock (the node's clock).
const usageSlack = 5 * time.Second

// usageMaxAge is the age past which a sample is stale: its job is gone or
// stuck.
const usageMaxAge = 3*prober.UsageInterval + usageSlack

// Bounds of a container's figures: a file past them is garbage.
const (
	maxUsageCores       = 1 << 14 // CPUs of one node
	maxUsageMemoryBytes = 1 << 50 // 1 PiB
)

// readUsage is the usage of the pod in dir for its containers in running
// (name → the start of its current run), from the prober's sample; nil
// when there is none for them. names are the pod's containers. A file too
// large, malformed, stale or ahead of now, naming a container twice or one
// the pod lacks, or holding a figure out of bounds, is dropped whole; a
// container's figures count only for the run its status reports.
func readUsage(root *poddata.Dir, dir string, names []string, running map[string]time.Time, now time.Time) *api.PodUsage {
	b, err := readUpTo(root, path.Join(dir, prober.UsageFile), maxUsageBytes+1)
	if err != nil || len(b) > maxUsageBytes {
		return nil
	}
	var u prober.Usage
	if err := json.Unmarshal(b, &u); err != nil {
		return nil
	}
	if u.Time.IsZero() || now.Sub(u.Time) > usageMaxAge || u.Time.Sub(now) > usageSlack || len(u.Containers) > len(names) {
		return nil
	}
	out := &api.PodUsage{Time: u.Time.UTC()}
	seen := make(map[string]bool, len(u.Containers))
	for _, c := range u.Containers {
		if !slices.Contains(names, c.Name) || seen[c.Name] || !plausible(&c, u.Time) {
			return nil
		}
		seen[c.Name] = true
		if started, ok := running[c.Name]; !ok || !c.StartTime.Equal(started) {
			continue // not running in this status, or another run's figures
		}
		out.Containers = append(out.Containers, api.ContainerUsage{Name: c.Name, StartTime: c.StartTime.UTC(),
			CPUCoreNanoSeconds: c.CPUCoreNanoSeconds, CPUNanoCores: c.CPUNanoCores, MemoryWorkingSetBytes: c.MemoryWorkingSetBytes})
	}
	if len(out.Containers) == 0 {
		return nil
	}
	return out
}

// plausible tells whether c's figures, sampled at at, are within what a
// node could have done since the run's start.
func plausible(c *prober.ContainerUsage, at time.Time) bool {
	run := at.Sub(c.StartTime)
	if c.StartTime.IsZero() || run < -usageSlack {
		return false
	}
	maxCPU := (run.Seconds() + usageSlack.Seconds()) * 1e9 * maxUsageCores
	return float64(c.CPUCoreNanoSeconds) <= maxCPU && c.MemoryWorkingSetBytes <= maxUsageMemoryBytes &&
		(c.CPUNanoCores == nil || *c.CPUNanoCores <= maxUsageCores*1e9)
}
