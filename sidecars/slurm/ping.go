package slurm

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/seed-3f807049/interlink/functions/api"
)

// sinfoNode is what the ping reads of a node in `sinfo --json`.
type sinfoNode struct {
	Name        string   `json:"name"`
	State       string   `json:"state"`
	StateFlags  []string `json:"state_flags"`
	CPUs        int64    `json:"cpus"`
	AllocCPUs   int64    `json:"alloc_cpus"`
	RealMemory  int64    `json:"real_memory"`  // MiB
	AllocMemory int64    `json:"alloc_memory"` // MiB
	Gres        string   `json:"gres"`
	GresUsed    string   `json:"gres_used"`
}

// Ping reports the cluster's free CPUs, memory and GPUs, summed over the
// nodes that take jobs (or what ResourceScriptPath says), and the
// configured Taints.
func (s *Sidecar) Ping(ctx context.Context) (api.PingResponse, error) {
	var resp api.PingResponse
	var err error
	if s.cfg.ResourceScriptPath != "" {
		resp, err = s.resourceScript(ctx)
	} else {
		resp, err = s.sinfoResources(ctx)
	}
	if err == nil && len(s.cfg.Taints) > 0 {
		taints := slices.Clone(s.cfg.Taints)
		resp.Taints = &taints
	}
	return resp, err
}

// resourceScript runs ResourceScriptPath and reads its standard output, a
// ping reply, within CommandTimeout and MaxPingReply bytes.
func (s *Sidecar) resourceScript(ctx context.Context) (api.PingResponse, error) {
	out, err := s.cmd.runCapped(ctx, api.MaxPingReply, s.cfg.ResourceScriptPath)
	if err != nil {
		return api.PingResponse{}, api.Unavailable("ResourceScriptPath: %w", err)
	}
	var resp api.PingResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return api.PingResponse{}, api.Unavailable("ResourceScriptPath %s: its output is not a ping reply in JSON: %w", s.cfg.ResourceScriptPath, err)
	}
	if resp.Status == "" {
		resp.Status = api.PingOK
	}
	resp.Sidecars = nil
	return resp, nil
}

// sinfoResources sums the free resources of the nodes sinfo lists.
func (s *Sidecar) sinfoResources(ctx context.Context) (api.PingResponse, error) {
	out, err := s.cmd.run(ctx, s.cfg.SinfoPath, "--json")
	if err != nil {
		return api.PingResponse{}, fmt.Errorf("sinfo: %w", err)
	}
	var info struct {
		Nodes []sinfoNode `json:"nodes"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return api.PingResponse{}, api.Unavailable("sinfo --json: %w", err)
	}
	var cpu, mem, gpus int64
	for _, n := range info.Nodes {
		if !usable(n) {
			continue
		}
		cpu += max(n.CPUs-n.AllocCPUs, 0)
		mem += max(n.RealMemory-n.AllocMemory, 0)
		gpus += max(gpuCount(n.Gres)-gpuCount(n.GresUsed), 0)
	}
	res := api.Resources{CPU: strconv.FormatInt(cpu, 10), Memory: strconv.FormatInt(mem, 10) + "Mi"}
	if gpus > 0 {
		res.Accelerators = []api.Accelerator{{ResourceType: string(resourceNvidiaGPU), Available: api.Count(gpus)}}
	}
	return api.PingResponse{Status: api.PingOK, Resources: &res}, nil
}

// usable tells whether a node takes jobs.
func usable(n sinfoNode) bool {
	st := strings.ToUpper(n.State)
	for _, bad := range []string{"DOWN", "DRAIN", "FAIL", "FUTURE", "UNKNOWN", "POWER"} {
		if strings.Contains(st, bad) {
			return false
		}
	}
	for _, f := range n.StateFlags {
		if f = strings.ToUpper(f); strings.Contains(f, "DRAIN") || strings.Contains(f, "MAINT") {
			return false
		}
	}
	return true
}

// gpuCount counts the GPUs of a gres string such as "gpu:2",
// "gpu:a100:4(S:0-1)" or "gpu:tesla:1(IDX:0),mps:100".
func gpuCount(gres string) int64 {
	var n int64
	for item := range strings.SplitSeq(gres, ",") {
		item, _, _ = strings.Cut(item, "(")
		if !strings.HasPrefix(item, "gpu") {
			continue
		}
		i := strings.LastIndexByte(item, ':')
		if c, err := strconv.ParseInt(item[i+1:], 10, 64); err == nil {
			n += c
		}
	}
	return n
}
