package vk

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"

	"github.com/seed-3f807049/interlink/functions/api"
)

// usageEnv is a provider whose pods run under jobs already (recovered from
// their job ID annotation), and a fake interLink whose statuses the tests
// set before each poll.
type usageEnv struct {
	t  *testing.T
	p  *Provider
	il *fakeIL
}

func newUsageEnv(t *testing.T) *usageEnv {
	il := &fakeIL{statuses: map[string]api.PodStatus{}}
	p, _ := testProvider(t, il)
	return &usageEnv{t: t, p: p, il: il}
}

// pod tracks a running pod named name with the given containers.
func (e *usageEnv) pod(name string, containers ...string) *corev1.Pod {
	e.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
		Annotations: map[string]string{api.AnnotationJobID: "job-" + name}}}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c})
	}
	if err := e.p.CreatePod(context.Background(), pod); err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// report sets what the pod's sidecar answers: every container running,
// but those in ended, and usage u.
func (e *usageEnv) report(pod *corev1.Pod, u *api.PodUsage, ended ...string) {
	st := api.PodStatus{PodName: pod.Name, PodNamespace: pod.Namespace, PodUID: string(pod.UID), JobID: "job-" + pod.Name, Usage: u}
	for _, c := range pod.Spec.Containers {
		s := running()
		for _, x := range ended {
			if x == c.Name {
				s = exited(0)
			}
		}
		st.Containers = append(st.Containers, corev1.ContainerStatus{Name: c.Name, State: s})
	}
	e.il.statuses[string(pod.UID)] = st
}

func (e *usageEnv) summary() *statsv1alpha1.Summary {
	e.t.Helper()
	s, err := e.p.GetStatsSummary(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

var (
	sampleTime = now.Add(time.Minute)
	runStart   = now.Add(-time.Hour)
)

// cu is a container's usage: cpu seconds, rate in millicores (negative:
// unknown), memory MiB.
func cu(name string, cpuSeconds float64, milli int64, mib uint64) api.ContainerUsage {
	c := api.ContainerUsage{Name: name, StartTime: runStart, CPUCoreNanoSeconds: uint64(cpuSeconds * 1e9), MemoryWorkingSetBytes: mib << 20}
	if milli >= 0 {
		c.CPUNanoCores = ptr.To(uint64(milli) * 1e6)
	}
	return c
}

func podStats(t *testing.T, s *statsv1alpha1.Summary, name string) statsv1alpha1.PodStats {
	t.Helper()
	for _, ps := range s.Pods {
		if ps.PodRef.Name == name {
			return ps
		}
	}
	t.Fatalf("pod %s not in the summary", name)
	return statsv1alpha1.PodStats{}
}

// TestStatsSummarySums: containers carry their sidecar's figures, pods the
// sums over their containers, the node the sums over its pods; a rate known
// for only some containers stays unset above them; a pod whose status has
// no usage is listed with no figures.
func TestStatsSummarySums(t *testing.T) {
	e := newUsageEnv(t)
	a := e.pod("a", "web", "log")
	b := e.pod("b", "main")
	quiet := e.pod("quiet", "main") // an original plugin: no usage
	e.report(a, &api.PodUsage{Time: sampleTime, Containers: []api.ContainerUsage{cu("web", 3, 250, 100), cu("log", 1, 50, 20)}})
	e.report(b, &api.PodUsage{Time: sampleTime, Containers: []api.ContainerUsage{cu("main", 2, -1, 30)}})
	e.report(quiet, nil)
	e.p.syncStatus(context.Background())
	s := e.summary()

	at := metav1.NewTime(sampleTime)
	u64 := func(v uint64) *uint64 { return &v }
	wantA := statsv1alpha1.PodStats{
		PodRef: statsv1alpha1.PodReference{Name: "a", Namespace: "ns", UID: "uid-a"},
		Containers: []statsv1alpha1.ContainerStats{
			{Name: "web", StartTime: metav1.NewTime(runStart),
				CPU:    &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: u64(3e9), UsageNanoCores: u64(250e6)},
				Memory: &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: u64(100 << 20), UsageBytes: u64(100 << 20)}},
			{Name: "log", StartTime: metav1.NewTime(runStart),
				CPU:    &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: u64(1e9), UsageNanoCores: u64(50e6)},
				Memory: &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: u64(20 << 20), UsageBytes: u64(20 << 20)}},
		},
		CPU:    &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: u64(4e9), UsageNanoCores: u64(300e6)},
		Memory: &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: u64(120 << 20), UsageBytes: u64(120 << 20)},
	}
	gotA := podStats(t, s, "a")
	gotA.StartTime = metav1.Time{} // the VK's first status time
	if d := cmp.Diff(wantA, gotA); d != "" {
		t.Errorf("pod a (-want +got):\n%s", d)
	}

	gotB := podStats(t, s, "b")
	if c := gotB.Containers[0].CPU; c.UsageNanoCores != nil || *c.UsageCoreNanoSeconds != 2e9 {
		t.Errorf("b's container CPU %+v: an unknown rate must stay unset", c)
	}
	if gotB.CPU.UsageNanoCores != nil || *gotB.CPU.UsageCoreNanoSeconds != 2e9 || *gotB.Memory.WorkingSetBytes != 30<<20 {
		t.Errorf("pod b CPU %+v memory %+v", gotB.CPU, gotB.Memory)
	}

	gotQ := podStats(t, s, "quiet")
	if gotQ.CPU != nil || gotQ.Memory != nil || gotQ.Containers != nil {
		t.Errorf("a pod without usage has figures: %+v", gotQ)
	}

	n := s.Node
	if n.CPU == nil || *n.CPU.UsageCoreNanoSeconds != 6e9 || n.CPU.UsageNanoCores != nil || !n.CPU.Time.Equal(&at) {
		t.Errorf("node CPU %+v, want 6s cumulative, no rate (b's is unknown), at the sample time", n.CPU)
	}
	if n.Memory == nil || *n.Memory.WorkingSetBytes != 150<<20 || *n.Memory.UsageBytes != 150<<20 {
		t.Errorf("node memory %+v, want 150 MiB", n.Memory)
	}

	// Once b's rate is known, the node's is the sum.
	e.report(b, &api.PodUsage{Time: sampleTime.Add(time.Second), Containers: []api.ContainerUsage{cu("main", 2.1, 100, 30)}})
	e.p.syncStatus(context.Background())
	if r := e.summary().Node.CPU.UsageNanoCores; r == nil || *r != 400e6 {
		t.Errorf("node rate %v, want 400m", r)
	}
}

// TestNoUsageNoFigures: before any sidecar reports usage the node has no
// figures, and neither does /metrics/resource (but scrape_error).
func TestNoUsageNoFigures(t *testing.T) {
	e := newUsageEnv(t)
	e.report(e.pod("a", "main"), nil)
	e.p.syncStatus(context.Background())
	s := e.summary()
	if s.Node.CPU != nil || s.Node.Memory != nil || len(s.Pods) != 1 || s.Pods[0].CPU != nil || s.Pods[0].Containers != nil {
		t.Errorf("figures invented: %+v", s)
	}
	fams, err := e.p.GetMetricsResource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	if d := cmp.Diff([]string{"scrape_error", "resource_scrape_error"}, names); d != "" {
		t.Errorf("families without usage (-want +got):\n%s", d)
	}
}

// TestUsageDropped: a status that says nothing of usage drops the pod's
// figures, and a container no longer running loses its own.
func TestUsageDropped(t *testing.T) {
	e := newUsageEnv(t)
	a := e.pod("a", "web", "job")
	both := &api.PodUsage{Time: sampleTime, Containers: []api.ContainerUsage{cu("web", 3, 10, 100), cu("job", 1, 10, 20)}}
	e.report(a, both)
	e.p.syncStatus(context.Background())
	if got := podStats(t, e.summary(), "a"); len(got.Containers) != 2 {
		t.Fatalf("containers %+v", got.Containers)
	}
	// job ended; a sidecar that still sent its last figures is not believed.
	e.report(a, both, "job")
	e.p.syncStatus(context.Background())
	got := podStats(t, e.summary(), "a")
	if len(got.Containers) != 1 || got.Containers[0].Name != "web" || *got.CPU.UsageCoreNanoSeconds != 3e9 {
		t.Errorf("after job ended: containers %+v CPU %+v", got.Containers, got.CPU)
	}
	// A status without usage.
	e.report(a, nil)
	e.p.syncStatus(context.Background())
	got = podStats(t, e.summary(), "a")
	if got.CPU != nil || got.Memory != nil || got.Containers != nil {
		t.Errorf("usage kept after a status without it: %+v", got)
	}
	if n := e.summary().Node; *n.Memory.WorkingSetBytes != 0 || *n.CPU.UsageCoreNanoSeconds != 4e9 {
		t.Errorf("node %+v %+v: memory must drop, CPU must not", n.CPU, n.Memory)
	}
}

// TestNodeCPUMonotonic: the node's cumulative CPU adds what containers used
// between samples, so it never goes down: not when a pod goes away, nor when
// a container restarts with a fresh counter.
func TestNodeCPUMonotonic(t *testing.T) {
	e := newUsageEnv(t)
	a, b := e.pod("a", "main"), e.pod("b", "main")
	step := func(at time.Time, cpuA, cpuB float64) {
		e.t.Helper()
		e.report(a, &api.PodUsage{Time: at, Containers: []api.ContainerUsage{cu("main", cpuA, 10, 10)}})
		if cpuB >= 0 {
			e.report(b, &api.PodUsage{Time: at, Containers: []api.ContainerUsage{cu("main", cpuB, 10, 10)}})
		}
		e.p.syncStatus(context.Background())
	}
	nodeCPU := func() float64 {
		e.t.Helper()
		return float64(*e.summary().Node.CPU.UsageCoreNanoSeconds) / 1e9
	}
	step(sampleTime, 5, 3)
	if got := nodeCPU(); got != 8 {
		t.Fatalf("node CPU %v s, want 8", got)
	}
	step(sampleTime.Add(10*time.Second), 7, 4)
	if got := nodeCPU(); got != 11 {
		t.Fatalf("node CPU %v s, want 11", got)
	}
	if err := e.p.DeletePod(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	delete(e.il.statuses, string(b.UID))
	if got := nodeCPU(); got != 11 {
		t.Errorf("node CPU %v s after b went away, want 11", got)
	}
	if m := *e.summary().Node.Memory.WorkingSetBytes; m != 10<<20 {
		t.Errorf("node memory %d after b went away, want a's 10 MiB", m)
	}
	step(sampleTime.Add(20*time.Second), 9, -1)
	if got := nodeCPU(); got != 13 {
		t.Errorf("node CPU %v s, want 13", got)
	}
	// a's container restarts: a new run, its counter from 0.
	restarted := cu("main", 0.5, 10, 10)
	restarted.StartTime = sampleTime.Add(25 * time.Second)
	e.report(a, &api.PodUsage{Time: sampleTime.Add(30 * time.Second), Containers: []api.ContainerUsage{restarted}})
	e.p.syncStatus(context.Background())
	if got := nodeCPU(); got != 13.5 {
		t.Errorf("node CPU %v s after a restart, want 13.5", got)
	}
	// The same sample again adds nothing.
	e.p.syncStatus(context.Background())
	if got := nodeCPU(); got != 13.5 {
		t.Errorf("node CPU %v s after a repeated sample, want 13.5", got)
	}
}

// scrape serves the provider's resource metrics as virtual-kubelet does
// (node/api.HandlePodMetricsResource: the Prometheus text format) and
// returns the body.
func scrape(t *testing.T, p *Provider) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	vkapi.HandlePodMetricsResource(p.GetMetricsResource)(rec, httptest.NewRequest(http.MethodGet, "/metrics/resource", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics/resource: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// point is what metrics-server keeps of a node or a container.
type point struct {
	start time.Time
	ts    time.Time
	cpuNS uint64
	mem   uint64
}

// decodeAsMetricsServer reads a /metrics/resource body with the rules of
// metrics-server v0.8.0 (pkg/scraper/client/resource/decode.go), written
// here, not imported: that package is unexported and would pull the
// Prometheus server module in. The rules: a series counts when its name is
// exactly one of five (node_cpu_usage_seconds_total,
// node_memory_working_set_bytes, container_cpu_usage_seconds_total,
// container_memory_working_set_bytes, container_start_time_seconds), the
// container ones found by the container=", pod=" and namespace=" label
// texts; a sample's time is its timestamp in ms; the node counts only with a
// timestamp and non-zero CPU and memory; a pod counts only when each of its
// containers has non-zero CPU and memory.
func decodeAsMetricsServer(t *testing.T, body []byte) (node *point, pods map[string]map[string]point) {
	t.Helper()
	pods = map[string]map[string]point{}
	node = &point{}
	labelValue := func(labels, name string) string {
		i := strings.Index(labels, name+`="`)
		if i < 0 {
			t.Fatalf("series %s has no label %s", labels, name)
		}
		v := labels[i+len(name)+2:]
		return v[:strings.IndexByte(v, '"')]
	}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, rest, _ := strings.Cut(line, " ")
		if i := strings.LastIndexByte(line, '}'); i >= 0 { // label values may hold spaces
			series, rest = line[:i+1], line[i+1:]
		}
		name, labels, _ := strings.Cut(series, "{")
		fields := strings.Fields(rest)
		value, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		var ts time.Time
		if len(fields) > 1 {
			ms, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			ts = time.UnixMilli(ms)
		}
		container := func() (string, string) {
			ref := labelValue(labels, "namespace") + "/" + labelValue(labels, "pod")
			if pods[ref] == nil {
				pods[ref] = map[string]point{}
			}
			return ref, labelValue(labels, "container")
		}
		switch name {
		case "node_cpu_usage_seconds_total":
			node.cpuNS, node.ts = uint64(value*1e9), ts
		case "node_memory_working_set_bytes":
			node.mem, node.ts = uint64(value), ts
		case "container_cpu_usage_seconds_total":
			ref, c := container()
			pt := pods[ref][c]
			pt.cpuNS, pt.ts = uint64(value*1e9), ts
			pods[ref][c] = pt
		case "container_memory_working_set_bytes":
			ref, c := container()
			pt := pods[ref][c]
			pt.mem, pt.ts = uint64(value), ts
			pods[ref][c] = pt
		case "container_start_time_seconds":
			ref, c := container()
			pt := pods[ref][c]
			pt.start = time.Unix(0, int64(value*1e9))
			pods[ref][c] = pt
		}
	}
	if node.ts.IsZero() || node.cpuNS == 0 || node.mem == 0 {
		node = nil
	}
	for ref, cs := range pods {
		for _, pt := range cs {
			if pt.cpuNS == 0 || pt.mem == 0 {
				delete(pods, ref)
				break
			}
		}
	}
	return node, pods
}

// TestMetricsResource: the kubelet's resource families, with its help
// texts, types and labels, each sample stamped with its sample time; what
// metrics-server v0.8.0 would read of it (the node, each pod with usage,
// container start times), and timestamps that advance with the samples.
func TestMetricsResource(t *testing.T) {
	e := newUsageEnv(t)
	a, quiet := e.pod("a", "web", "log"), e.pod("quiet", "main")
	e.report(a, &api.PodUsage{Time: sampleTime, Containers: []api.ContainerUsage{cu("web", 3, 250, 100), cu("log", 1.5, -1, 20)}})
	e.report(quiet, nil)
	e.p.syncStatus(context.Background())
	body := scrape(t, e.p)

	// Valid Prometheus text, as the families were built.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	ms := sampleTime.UnixMilli()
	type sample struct {
		Labels string
		Value  float64
		TS     int64
	}
	type family struct {
		Help, Type string
		Samples    []sample
	}
	got := map[string]family{}
	for name, f := range fams {
		fam := family{Help: f.GetHelp(), Type: f.GetType().String()}
		for _, m := range f.Metric {
			var l []string
			for _, lp := range m.Label {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			fam.Samples = append(fam.Samples, sample{strings.Join(l, ","), v, m.GetTimestampMs()})
		}
		got[name] = fam
	}
	ctr := func(c string) string { return "container=" + c + ",namespace=ns,pod=a" }
	start := float64(runStart.Unix())
	want := map[string]family{
		"node_cpu_usage_seconds_total":       {helpNodeCPU, "COUNTER", []sample{{"", 4.5, ms}}},
		"node_memory_working_set_bytes":      {helpNodeMemory, "GAUGE", []sample{{"", 120 << 20, ms}}},
		"container_start_time_seconds":       {helpContainerTime, "GAUGE", []sample{{ctr("web"), start, ms}, {ctr("log"), start, ms}}},
		"container_cpu_usage_seconds_total":  {helpContainerCPU, "COUNTER", []sample{{ctr("web"), 3, ms}, {ctr("log"), 1.5, ms}}},
		"container_memory_working_set_bytes": {helpContainerMem, "GAUGE", []sample{{ctr("web"), 100 << 20, ms}, {ctr("log"), 20 << 20, ms}}},
		"pod_cpu_usage_seconds_total":        {helpPodCPU, "COUNTER", []sample{{"namespace=ns,pod=a", 4.5, ms}}},
		"pod_memory_working_set_bytes":       {helpPodMemory, "GAUGE", []sample{{"namespace=ns,pod=a", 120 << 20, ms}}},
		"scrape_error":                       {helpScrapeError, "GAUGE", []sample{{"", 0, 0}}},
		"resource_scrape_error":              {helpResourceError, "GAUGE", []sample{{"", 0, 0}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("families (-want +got):\n%s\n%s", d, body)
	}
	for _, l := range []string{
		"# TYPE node_cpu_usage_seconds_total counter",
		`container_cpu_usage_seconds_total{container="web",namespace="ns",pod="a"} 3 ` + strconv.FormatInt(ms, 10),
	} {
		if !bytes.Contains(body, []byte(l+"\n")) {
			t.Errorf("body lacks %q:\n%s", l, body)
		}
	}

	node, pods := decodeAsMetricsServer(t, body)
	wantNode := &point{ts: time.UnixMilli(ms), cpuNS: 4.5e9, mem: 120 << 20}
	wantPods := map[string]map[string]point{"ns/a": {
		"web": {start: runStart, ts: time.UnixMilli(ms), cpuNS: 3e9, mem: 100 << 20},
		"log": {start: runStart, ts: time.UnixMilli(ms), cpuNS: 1.5e9, mem: 20 << 20},
	}}
	if d := cmp.Diff(wantNode, node, cmp.AllowUnexported(point{})); d != "" {
		t.Errorf("node as metrics-server reads it (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantPods, pods, cmp.AllowUnexported(point{})); d != "" {
		t.Errorf("pods as metrics-server reads them (-want +got):\n%s", d)
	}

	// The next sample: timestamps and counters advance, so metrics-server
	// computes a rate from the two scrapes.
	later := sampleTime.Add(15 * time.Second)
	e.report(a, &api.PodUsage{Time: later, Containers: []api.ContainerUsage{cu("web", 4, 250, 100), cu("log", 2, 50, 20)}})
	e.p.syncStatus(context.Background())
	node2, pods2 := decodeAsMetricsServer(t, scrape(t, e.p))
	if node2 == nil || !node2.ts.Equal(time.UnixMilli(later.UnixMilli())) || node2.cpuNS != 6e9 {
		t.Errorf("node on the next scrape %+v, want 6s at %v", node2, later)
	}
	if c := pods2["ns/a"]["web"]; !c.ts.After(pods["ns/a"]["web"].ts) || c.cpuNS != 4e9 || !c.start.Equal(runStart) {
		t.Errorf("web on the next scrape %+v", c)
	}
}

// TestResourceMetricsEncode: every family the provider returns encodes in
// the text format (an empty family would fail the whole scrape).
func TestResourceMetricsEncode(t *testing.T) {
	for _, s := range []*statsv1alpha1.Summary{
		{},
		{Pods: []statsv1alpha1.PodStats{{PodRef: statsv1alpha1.PodReference{Name: "p", Namespace: "ns"}}}},
	} {
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range resourceMetrics(s) {
			if err := enc.Encode(f); err != nil {
				t.Errorf("encode %s: %v", f.GetName(), err)
			}
			if f.GetType() != dto.MetricType_GAUGE {
				t.Errorf("family %s without usage", f.GetName())
			}
		}
	}
}
