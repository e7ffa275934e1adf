package vk

import (
	"cmp"
	"context"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Usage figures come from the usage extension of each polled status
// (api.PodUsage), kept per tracked pod: GetStatsSummary and
// GetMetricsResource read what the last poll brought and make no call of
// their own. A pod whose sidecar reports no usage (an original plugin) is
// listed with no figures: none is invented.

// cpuMark is how much of one container's CPU the node's counter has counted.
type cpuMark struct {
	start time.Time // the run counted
	ns    uint64    // its cumulative CPU (core-ns) counted so far
}

// setUsageLocked keeps u as t's usage, restricted to the containers that
// status shows running (a container that is no longer running has no
// figures), and adds what each container used since its last sample to the
// node's CPU counter. A nil u, one left with no container, or a pod that
// ended (it is polled no more) drops t's usage. p.mu is held.
func (p *Provider) setUsageLocked(t *tracked, u *api.PodUsage, status *corev1.PodStatus) {
	t.usage = nil
	if u == nil || u.Time.IsZero() || status.Phase == corev1.PodSucceeded || status.Phase == corev1.PodFailed {
		return
	}
	// When each running container's current run started, by name.
	running := map[string]time.Time{}
	for _, cs := range [][]corev1.ContainerStatus{status.InitContainerStatuses, status.ContainerStatuses} {
		for _, c := range cs {
			if c.State.Running != nil {
				running[c.Name] = c.State.Running.StartedAt.Time
			}
		}
	}
	kept := &api.PodUsage{Time: u.Time}
	for _, c := range u.Containers {
		started, ok := running[c.Name]
		if !ok {
			continue
		}
		delete(running, c.Name) // a name given twice counts once
		if c.StartTime.IsZero() {
			c.StartTime = started // the container status's, when the sample has none
		}
		if c.CPUNanoCores != nil {
			c.CPUNanoCores = ptr.To(*c.CPUNanoCores) // not shared with the decoded status
		}
		kept.Containers = append(kept.Containers, c)
		p.countCPULocked(t, c)
	}
	if len(kept.Containers) == 0 {
		return
	}
	t.usage = kept
	if u.Time.After(p.nodeCPUTime) {
		p.nodeCPUTime = u.Time
	}
}

// countCPULocked adds to the node's counter the CPU c used since the last
// sample of the same run (all of it for a new run), so that the counter
// never goes down: not when a pod goes away, nor when a container restarts.
// A run that began before this VK started is counted from its first sample
// only, as the counter starts with the VK. p.mu is held.
func (p *Provider) countCPULocked(t *tracked, c api.ContainerUsage) {
	if t.cpuSeen == nil {
		t.cpuSeen = map[string]cpuMark{}
	}
	last, ok := t.cpuSeen[c.Name]
	switch {
	case ok && last.start.Equal(c.StartTime):
		if c.CPUCoreNanoSeconds <= last.ns {
			return // no use since, or a counter that went back: nothing to add
		}
		p.nodeCPU += c.CPUCoreNanoSeconds - last.ns
	case !ok && c.StartTime.Before(p.started):
		// Counted from here on.
	default:
		p.nodeCPU += c.CPUCoreNanoSeconds
	}
	t.cpuSeen[c.Name] = cpuMark{start: c.StartTime, ns: c.CPUCoreNanoSeconds}
}

// GetStatsSummary lists the node and its pods with the usage their
// sidecars last reported: per container CPU (cumulative, and the rate when
// the sidecar knows it), working set memory (also given as UsageBytes, which
// sidecars do not measure apart) and start time; per pod the sums over its
// containers; per node the sums over its pods, but for cumulative CPU, a
// counter of its own that never goes down. A pod without usage is listed
// with no figures, and the node has none until a sidecar reported some.
func (p *Provider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	s := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.nodeName, StartTime: metav1.NewTime(p.started)}}
	p.mu.Lock()
	defer p.mu.Unlock()
	var nodeMem, nodeRate uint64
	nodeRateKnown := true
	for _, t := range p.pods {
		ps := statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Name: t.pod.Name, Namespace: t.pod.Namespace, UID: string(t.pod.UID)}}
		if t.pod.Status.StartTime != nil {
			ps.StartTime = *t.pod.Status.StartTime
		}
		if u := t.usage; u != nil {
			at := metav1.NewTime(u.Time)
			var cpu, mem, rate uint64
			rateKnown := true
			for _, c := range u.Containers {
				ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
					Name: c.Name, StartTime: metav1.NewTime(c.StartTime),
					CPU: &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: ptr.To(c.CPUCoreNanoSeconds),
						UsageNanoCores: copyOrNil(c.CPUNanoCores)},
					Memory: &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr.To(c.MemoryWorkingSetBytes),
						UsageBytes: ptr.To(c.MemoryWorkingSetBytes)},
				})
				cpu += c.CPUCoreNanoSeconds
				mem += c.MemoryWorkingSetBytes
				if c.CPUNanoCores == nil {
					rateKnown = false
				} else {
					rate += *c.CPUNanoCores
				}
			}
			ps.CPU = &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: ptr.To(cpu)}
			if rateKnown {
				ps.CPU.UsageNanoCores = ptr.To(rate)
				nodeRate += rate
			} else {
				nodeRateKnown = false
			}
			ps.Memory = &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr.To(mem), UsageBytes: ptr.To(mem)}
			nodeMem += mem
		}
		s.Pods = append(s.Pods, ps)
	}
	slices.SortFunc(s.Pods, func(a, b statsv1alpha1.PodStats) int {
		return cmp.Or(cmp.Compare(a.PodRef.Namespace, b.PodRef.Namespace), cmp.Compare(a.PodRef.Name, b.PodRef.Name))
	})
	if !p.nodeCPUTime.IsZero() {
		at := metav1.NewTime(p.nodeCPUTime)
		s.Node.CPU = &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: ptr.To(p.nodeCPU)}
		if nodeRateKnown {
			s.Node.CPU.UsageNanoCores = ptr.To(nodeRate)
		}
		s.Node.Memory = &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr.To(nodeMem), UsageBytes: ptr.To(nodeMem)}
	}
	return s, nil
}

func copyOrNil(v *uint64) *uint64 {
	if v == nil {
		return nil
	}
	return ptr.To(*v)
}

// The kubelet's /metrics/resource families, with its help texts
// (k8s.io/kubernetes pkg/kubelet/metrics/collectors/resource_metrics.go).
const (
	helpNodeCPU       = "[STABLE] Cumulative cpu time consumed by the node in core-seconds"
	helpNodeMemory    = "[STABLE] Current working set of the node in bytes"
	helpContainerCPU  = "[STABLE] Cumulative cpu time consumed by the container in core-seconds"
	helpContainerMem  = "[STABLE] Current working set of the container in bytes"
	helpContainerTime = "[STABLE] Start time of the container since unix epoch in seconds"
	helpPodCPU        = "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"
	helpPodMemory     = "[STABLE] Current working set of the pod in bytes"
	helpScrapeError   = "[ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise"
	helpResourceError = "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise"
)

// GetMetricsResource serves the kubelet's /metrics/resource (what
// metrics-server reads for kubectl top) from GetStatsSummary's figures:
// each sample stamped with the time its sidecar took it.
func (p *Provider) GetMetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	s, err := p.GetStatsSummary(ctx)
	if err != nil {
		return nil, err
	}
	return resourceMetrics(s), nil
}

// resourceMetrics renders a summary as the kubelet's resource metrics. A
// family with no sample is left out (the text format cannot carry one).
func resourceMetrics(s *statsv1alpha1.Summary) []*dto.MetricFamily {
	family := func(name, help string, typ dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To(help), Type: typ.Enum()}
	}
	nodeCPU := family("node_cpu_usage_seconds_total", helpNodeCPU, dto.MetricType_COUNTER)
	nodeMem := family("node_memory_working_set_bytes", helpNodeMemory, dto.MetricType_GAUGE)
	ctrStart := family("container_start_time_seconds", helpContainerTime, dto.MetricType_GAUGE)
	ctrCPU := family("container_cpu_usage_seconds_total", helpContainerCPU, dto.MetricType_COUNTER)
	ctrMem := family("container_memory_working_set_bytes", helpContainerMem, dto.MetricType_GAUGE)
	podCPU := family("pod_cpu_usage_seconds_total", helpPodCPU, dto.MetricType_COUNTER)
	podMem := family("pod_memory_working_set_bytes", helpPodMemory, dto.MetricType_GAUGE)
	scrapeErr := family("scrape_error", helpScrapeError, dto.MetricType_GAUGE)
	resourceErr := family("resource_scrape_error", helpResourceError, dto.MetricType_GAUGE)

	if c := s.Node.CPU; c != nil && c.UsageCoreNanoSeconds != nil {
		nodeCPU.Metric = append(nodeCPU.Metric, counter(seconds(*c.UsageCoreNanoSeconds), c.Time, nil))
	}
	if m := s.Node.Memory; m != nil && m.WorkingSetBytes != nil {
		nodeMem.Metric = append(nodeMem.Metric, gauge(float64(*m.WorkingSetBytes), m.Time, nil))
	}
	for _, pod := range s.Pods {
		podLabels := labels("namespace", pod.PodRef.Namespace, "pod", pod.PodRef.Name)
		for _, c := range pod.Containers {
			// Sorted by name, as client_golang writes them.
			l := labels("container", c.Name, "namespace", pod.PodRef.Namespace, "pod", pod.PodRef.Name)
			if c.CPU == nil || c.CPU.UsageCoreNanoSeconds == nil || c.Memory == nil || c.Memory.WorkingSetBytes == nil {
				continue // metrics-server would drop the whole pod for a container without both
			}
			if c.StartTime.Unix() > 0 {
				ctrStart.Metric = append(ctrStart.Metric, gauge(float64(c.StartTime.UnixNano())/1e9, c.CPU.Time, l))
			}
			ctrCPU.Metric = append(ctrCPU.Metric, counter(seconds(*c.CPU.UsageCoreNanoSeconds), c.CPU.Time, l))
			ctrMem.Metric = append(ctrMem.Metric, gauge(float64(*c.Memory.WorkingSetBytes), c.Memory.Time, l))
		}
		if c := pod.CPU; c != nil && c.UsageCoreNanoSeconds != nil {
			podCPU.Metric = append(podCPU.Metric, counter(seconds(*c.UsageCoreNanoSeconds), c.Time, podLabels))
		}
		if m := pod.Memory; m != nil && m.WorkingSetBytes != nil {
			podMem.Metric = append(podMem.Metric, gauge(float64(*m.WorkingSetBytes), m.Time, podLabels))
		}
	}
	// Nothing fails here: the figures were read when the statuses were.
	scrapeErr.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: ptr.To(0.0)}}}
	resourceErr.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: ptr.To(0.0)}}}

	var out []*dto.MetricFamily
	for _, f := range []*dto.MetricFamily{nodeCPU, nodeMem, ctrStart, ctrCPU, ctrMem, podCPU, podMem, scrapeErr, resourceErr} {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out
}

func seconds(ns uint64) float64 { return float64(ns) / float64(time.Second) }

func labels(kv ...string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &dto.LabelPair{Name: ptr.To(kv[i]), Value: ptr.To(kv[i+1])})
	}
	return out
}

func counter(v float64, at metav1.Time, l []*dto.LabelPair) *dto.Metric {
	return &dto.Metric{Label: l, Counter: &dto.Counter{Value: ptr.To(v)}, TimestampMs: ptr.To(at.UnixMilli())}
}

func gauge(v float64, at metav1.Time, l []*dto.LabelPair) *dto.Metric {
	return &dto.Metric{Label: l, Gauge: &dto.Gauge{Value: ptr.To(v)}, TimestampMs: ptr.To(at.UnixMilli())}
}
