//go:build e2e

package chain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// Settings of the whole-chain benchmark.
const (
	benchPending   = 200 * time.Millisecond // the sim's Pending time
	benchRun       = 3 * time.Second        // the sim's run time of pods that end
	benchVKQPS     = "1000"                 // the VK's client limits, raised from 200/400
	benchVKBurst   = "2000"
	steadyRate     = 50 // pods/s offered in the steady run
	steadySeconds  = 30
	createWorkers  = 16
	deleteWorkers  = 16
	markerBegin    = "<!-- whole-chain:begin -->"
	markerEnd      = "<!-- whole-chain:end -->"
	writesPerPodOK = 4.0
)

// burstResult is one burst of pods created at once on the node.
type burstResult struct {
	Pods                int     `json:"pods"`
	SecondsToRunning    float64 `json:"secondsToAllRunning"`
	PodsPerSecond       float64 `json:"podsPerSecondToRunning"`
	CreateSeconds       float64 `json:"secondsToCreateAll"`
	P50                 float64 `json:"createToRunningP50Seconds"`
	P99                 float64 `json:"createToRunningP99Seconds"`
	DeleteSeconds       float64 `json:"secondsToDeleteAll,omitempty"`
	DeletePodsPerSecond float64 `json:"deletePodsPerSecond,omitempty"`
	// WritesPerPod counts the VK's writes to pods, pods/status and events
	// over each pod's lifecycle (create, Running, delete), per pod.
	WritesPerPod     float64            `json:"vkWritesPerPodLifecycle,omitempty"`
	WritesByResource map[string]float64 `json:"vkWritesByResource,omitempty"`
	// RequestsPerPod counts every VK request on those resources (reads
	// included: a GET when the informer's cache lacks an object) per pod.
	RequestsPerPod     float64 `json:"vkRequestsPerPodLifecycle,omitempty"`
	StatusCallsPerPoll float64 `json:"sidecarStatusCallsPerPoll"`
	Polls              float64 `json:"vkPolls"`
	VK                 usage   `json:"vk"`
	Interlink          usage   `json:"interlink"`
	Sim                usage   `json:"sim"`
	// ControlPlaneCPU is the CPU seconds each control plane daemon used
	// from the first create to all Running: with the VK's, interlink's
	// and the sim's, where the machine's cores went.
	ControlPlaneCPU map[string]float64 `json:"controlPlaneCPUSecondsToRunning,omitempty"`
	CreateErrors    int64              `json:"createErrors"`
}

// steadyResult is a steady offered load.
type steadyResult struct {
	Rate           int                `json:"offeredPodsPerSecond"`
	Pods           int                `json:"pods"`
	P50, P90, P99  float64            `json:"-"`
	Latency        map[string]float64 `json:"createToRunningSeconds"`
	FreshRunning   map[string]float64 `json:"statusFreshnessRunningSeconds"`
	FreshSucceeded map[string]float64 `json:"statusFreshnessSucceededSeconds"`
	WritesPerPod   float64            `json:"vkWritesPerPodLifecycle"`
	StatusPerPoll  float64            `json:"sidecarStatusCallsPerPoll"`
}

type benchReport struct {
	When     string            `json:"when"`
	Machine  map[string]string `json:"machine"`
	Settings map[string]string `json:"settings"`
	LoadAvg  map[string]string `json:"loadAverage"`
	Burst1k  *burstResult      `json:"burst1000,omitempty"`
	Steady   *steadyResult     `json:"steady50,omitempty"`
	Burst10k *burstResult      `json:"burst10000,omitempty"`
	Targets  []targetLine      `json:"targets"`
}

type targetLine struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Note     string `json:"note,omitempty"`
}

// BenchmarkWholeChain runs the whole chain at scale: pods created on one
// virtual node in bursts of 1,000 and 10,000 and at a steady 50 pods/s,
// through interlink-vk, interlink (its embedded proxy on, a static token)
// and the simulated sidecar, all real processes. With INTERLINK_BENCH_OUT set
// it writes whole-chain.json and PNG plots there and the table in
// docs/benchmarks.md. Select phases with -bench 'WholeChain/(burst1k|steady50|burst10k)'.
func BenchmarkWholeChain(b *testing.B) {
	rep := &benchReport{When: time.Now().UTC().Format(time.RFC3339), Machine: machine(), LoadAvg: map[string]string{"start": loadavg()},
		Settings: map[string]string{
			"pods":                 "bound with spec.nodeName (the scheduler is bypassed), no service-account token, restartPolicy Never",
			"control plane limits": "kube-apiserver --max-requests-inflight 2000 --max-mutating-requests-inflight 1000; kube-scheduler and kube-controller-manager --kube-api-qps 500 --kube-api-burst 1000 (examples/cluster/cluster.sh)",
			"VK client limits":     "INTERLINK_KUBE_API_QPS=" + benchVKQPS + ", INTERLINK_KUBE_API_BURST=" + benchVKBurst + " (defaults 200/400)",
			"VK":                   "StatusInterval 1s, PingInterval 1s, 20 pod workers",
			"sim":                  fmt.Sprintf("Pending %s, then Running (bursts: until deleted; steady: %s, then Succeeded)", benchPending, benchRun),
			"driver":               fmt.Sprintf("%d goroutines creating, %d deleting (grace period 1 s), no client-side rate limit", createWorkers, deleteWorkers),
		}}
	s := startStack(b, options{
		simEnv: []string{"INTERLINK_SIM_PENDING_DELAY=" + benchPending.String(), "INTERLINK_SIM_RUN_DURATION=" + benchRun.String()},
		vkEnv:  []string{"INTERLINK_KUBE_API_QPS=" + benchVKQPS, "INTERLINK_KUBE_API_BURST=" + benchVKBurst},
	})
	b.Run("burst1k", func(b *testing.B) {
		r := s.burst(b, "burst1k", 1000)
		rep.Burst1k = &r
		b.ReportMetric(r.PodsPerSecond, "pods/s")
		b.ReportMetric(r.DeletePodsPerSecond, "deletes/s")
		b.ReportMetric(r.WritesPerPod, "writes/pod")
	})
	b.Run("steady50", func(b *testing.B) {
		r := s.steady(b)
		rep.Steady = &r
		b.ReportMetric(r.P50, "p50-s")
		b.ReportMetric(r.P99, "p99-s")
	})
	b.Run("burst10k", func(b *testing.B) {
		r := s.burst(b, "burst10k", 10000)
		rep.Burst10k = &r
		b.ReportMetric(r.PodsPerSecond, "pods/s")
		b.ReportMetric(r.VK.PeakRSSMB, "vk-peak-MB")
	})
	rep.LoadAvg["end"] = loadavg()
	rep.Targets = targets(rep)
	for _, tl := range rep.Targets {
		b.Logf("target %-45s measured %-30s met %v %s", tl.Target, tl.Measured, tl.Met, tl.Note)
	}
	if out := os.Getenv("INTERLINK_BENCH_OUT"); out != "" {
		if err := rep.write(out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOriginalPluginChain is a 10,000-pod burst (bound to the node,
// 16 created at a time) through the whole chain in front of the sim as an
// original plugin: no version header (interlink asks for a pod's status
// before each create, and sends whole pods), and its ping answered as
// INTERLINK_BENCH_ORIGINAL_PING says (object, array, null or text; default
// array). It fails when no pod changes phase for 30 s.
func BenchmarkOriginalPluginChain(b *testing.B) {
	ping := os.Getenv("INTERLINK_BENCH_ORIGINAL_PING")
	if ping == "" {
		ping = sim.PingArray
	}
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("INTERLINK_BENCH_ORIGINAL_PODS")); err == nil && v > 0 {
		n = v
	}
	s := startStack(b, options{
		simEnv: []string{"INTERLINK_SIM_PENDING_DELAY=" + benchPending.String(), "INTERLINK_SIM_RUN_DURATION=" + benchRun.String(),
			"INTERLINK_SIM_ORIGINAL_PLUGIN=true", "INTERLINK_SIM_ORIGINAL_PING=" + ping},
		vkEnv: []string{"INTERLINK_KUBE_API_QPS=" + benchVKQPS, "INTERLINK_KUBE_API_BURST=" + benchVKBurst},
	})
	secs := s.originalBurst(b, fmt.Sprintf("original%d", n), n, 20*time.Minute)
	b.ReportMetric(secs, "s-to-running")
	b.ReportMetric(float64(n)/secs, "pods/s")
	b.ReportMetric(float64(s.simStats(b, "").DuplicateJobs), "duplicate-jobs")
	b.ReportMetric(s.vk.usage().PeakRSSMB, "vk-peak-MB")
	s.history(b, fmt.Sprintf("original-plugin-%d", n), map[string]float64{"seconds_to_running": secs,
		"vk_peak_rss_mb": s.vk.usage().PeakRSSMB, "interlink_peak_rss_mb": s.il.usage().PeakRSSMB,
		"vk_cpu_seconds": s.vk.usage().CPUSeconds, "interlink_cpu_seconds": s.il.usage().CPUSeconds})
}

func (s *stack) namespace(t testing.TB, ns string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eenv.Eventually(t, "default service account in "+ns, 60*time.Second, func() error {
		_, err := s.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// burst creates n pods at once and waits until all run, then deletes
// them all and waits until they are gone from the API server and the sim.
func (s *stack) burst(t testing.TB, name string, n int) burstResult {
	ctx := context.Background()
	s.namespace(t, name)
	m0, st0 := s.vkMetrics(t), s.simStats(t, "")
	vk0, il0, sim0, cp0 := s.vk.usage(), s.il.usage(), s.sim.usage(), s.controlPlaneCPU()
	tr := newTracker(t, s, name, name)
	pods, names := s.benchPods(name, n)
	if err := tr.createAll(ctx, s, pods, createWorkers); err != nil {
		t.Fatal(err)
	}
	r := burstResult{Pods: n, CreateSeconds: tr.span(func(tr *tracker) map[string]time.Time { return tr.created }).Seconds()}
	if err := tr.waitFor("all Running", 15*time.Minute, func(sm sample) bool { return sm.Running == n }); err != nil {
		t.Fatal(err)
	}
	r.SecondsToRunning = tr.span(func(tr *tracker) map[string]time.Time { return tr.running }).Seconds()
	r.PodsPerSecond = float64(n) / r.SecondsToRunning
	_, lat := tr.latencies()
	sorted := sortedCopy(lat)
	r.P50, r.P99 = percentile(sorted, 0.5), percentile(sorted, 0.99)
	vk1, il1, sim1 := s.vk.usage(), s.il.usage(), s.sim.usage()
	r.ControlPlaneCPU = diff(s.controlPlaneCPU(), cp0)
	r.VK = usage{CPUSeconds: vk1.CPUSeconds - vk0.CPUSeconds, RSSMB: vk1.RSSMB, PeakRSSMB: vk1.PeakRSSMB}
	r.Interlink = usage{CPUSeconds: il1.CPUSeconds - il0.CPUSeconds, RSSMB: il1.RSSMB, PeakRSSMB: il1.PeakRSSMB}
	r.Sim = usage{CPUSeconds: sim1.CPUSeconds - sim0.CPUSeconds, RSSMB: sim1.RSSMB, PeakRSSMB: sim1.PeakRSSMB}
	fmt.Fprintf(os.Stderr, "  %s: %d pods Running in %.1fs (%.0f pods/s); VK RSS %.0f MB (peak %.0f), CPU %.1fs; interlink CPU %.1fs; sim CPU %.1fs; control plane CPU %v\n",
		name, n, r.SecondsToRunning, r.PodsPerSecond, r.VK.RSSMB, r.VK.PeakRSSMB, r.VK.CPUSeconds, r.Interlink.CPUSeconds, r.Sim.CPUSeconds, r.ControlPlaneCPU)
	start := time.Now()
	if err := tr.deleteAll(ctx, s, name, names, deleteWorkers); err != nil {
		t.Fatal(err)
	}
	if err := tr.waitFor("all deleted", 10*time.Minute, func(sm sample) bool { return sm.Gone == n }); err != nil {
		t.Fatal(err)
	}
	e2eenv.Eventually(t, "the sim holds no pod of "+name, 2*time.Minute, func() error {
		if held := heldIn(s.simStats(t, "?pods=1"), name); held != 0 {
			return fmt.Errorf("%d jobs held", held)
		}
		return nil
	})
	r.DeleteSeconds = time.Since(start).Seconds()
	r.DeletePodsPerSecond = float64(n) / r.DeleteSeconds
	m1, st1 := s.vkMetrics(t), s.simStats(t, "")
	r.WritesByResource = diff(m1.writesByResource(), m0.writesByResource())
	r.WritesPerPod = perPod(r.WritesByResource) / float64(n)
	r.RequestsPerPod = perPod(diff(m1.requestsByResource(false), m0.requestsByResource(false))) / float64(n)
	r.Polls = m1.sum("interlink_vk_status_poll_duration_seconds", nil) - m0.sum("interlink_vk_status_poll_duration_seconds", nil)
	if r.Polls > 0 {
		r.StatusCallsPerPoll = float64(st1.StatusCalls-st0.StatusCalls) / r.Polls
	}
	r.CreateErrors = tr.createErrors.Load()
	tr.close()
	if out := os.Getenv("INTERLINK_BENCH_OUT"); out != "" {
		if err := plotPhases(filepath.Join(out, "phases-"+name+".png"), fmt.Sprintf("%d pods created at once: pods by phase", n), tr.samples); err != nil {
			t.Error(err)
		}
		if err := plotRSS(filepath.Join(out, "rss-"+name+".png"), fmt.Sprintf("%d pods created at once, then deleted: memory", n), tr.samples); err != nil {
			t.Error(err)
		}
	}
	return r
}

// steady offers steadyRate pods/s for steadySeconds; each runs benchRun and
// succeeds. It measures create -> Running latency and status freshness.
func (s *stack) steady(t testing.TB) steadyResult {
	ctx := context.Background()
	const ns = "steady50"
	s.namespace(t, ns)
	m0, st0 := s.vkMetrics(t), s.simStats(t, "")
	tr := newTracker(t, s, ns, ns)
	n := steadyRate * steadySeconds
	names := make([]string, n)
	errs := make(chan error, n)
	interval := time.Second / steadyRate
	start := time.Now()
	for i := range n {
		names[i] = fmt.Sprintf("s-%05d", i)
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		go func(p *corev1.Pod) { errs <- tr.create(ctx, s, p) }(s.benchPod(ns, names[i], sim.OutcomeSucceeded, nil))
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.waitFor("all Succeeded", 5*time.Minute, func(sm sample) bool { return sm.Done == n }); err != nil {
		t.Fatal(err)
	}
	// Freshness: the sim changed the pod's state at a known time (job
	// created + Pending, + the run time); the API server had it when the
	// watch saw it.
	held := s.simStats(t, "?pods=1")
	var freshRun, freshDone []float64
	tr.mu.Lock()
	for _, hp := range held.Pods {
		if hp.Namespace != ns {
			continue
		}
		runAt := hp.Created.Add(benchPending)
		if r, ok := tr.running[hp.Name]; ok {
			freshRun = append(freshRun, r.Sub(runAt).Seconds())
		}
		if d, ok := tr.done[hp.Name]; ok {
			freshDone = append(freshDone, d.Sub(runAt.Add(benchRun)).Seconds())
		}
	}
	tr.mu.Unlock()
	at, lat := tr.latencies()
	sorted := sortedCopy(lat)
	r := steadyResult{Rate: steadyRate, Pods: n, P50: percentile(sorted, 0.5), P90: percentile(sorted, 0.9), P99: percentile(sorted, 0.99)}
	r.Latency = map[string]float64{"p50": r.P50, "p90": r.P90, "p99": r.P99, "max": percentile(sorted, 1)}
	fr, fd := sortedCopy(freshRun), sortedCopy(freshDone)
	r.FreshRunning = map[string]float64{"p50": percentile(fr, 0.5), "p99": percentile(fr, 0.99), "max": percentile(fr, 1)}
	r.FreshSucceeded = map[string]float64{"p50": percentile(fd, 0.5), "p99": percentile(fd, 0.99), "max": percentile(fd, 1)}
	if err := tr.deleteAll(ctx, s, ns, names, deleteWorkers); err != nil {
		t.Fatal(err)
	}
	if err := tr.waitFor("all deleted", 5*time.Minute, func(sm sample) bool { return sm.Gone == n }); err != nil {
		t.Fatal(err)
	}
	m1, st1 := s.vkMetrics(t), s.simStats(t, "")
	r.WritesPerPod = perPod(diff(m1.writesByResource(), m0.writesByResource())) / float64(n)
	if polls := m1.sum("interlink_vk_status_poll_duration_seconds", nil) - m0.sum("interlink_vk_status_poll_duration_seconds", nil); polls > 0 {
		r.StatusPerPoll = float64(st1.StatusCalls-st0.StatusCalls) / polls
	}
	fmt.Fprintf(os.Stderr, "  steady50: create -> Running p50 %.3fs p99 %.3fs; freshness Running p50 %.3fs p99 %.3fs\n",
		r.P50, r.P99, r.FreshRunning["p50"], r.FreshRunning["p99"])
	tr.close()
	if out := os.Getenv("INTERLINK_BENCH_OUT"); out != "" {
		for _, err := range []error{
			plotLatency(filepath.Join(out, "latency-steady50.png"), fmt.Sprintf("create -> Running at a steady %d pods/s", steadyRate), at, lat),
			plotHistogram(filepath.Join(out, "latency-steady50-hist.png"), fmt.Sprintf("create -> Running at %d pods/s: distribution", steadyRate), lat),
			plotPhases(filepath.Join(out, "phases-steady50.png"), fmt.Sprintf("%d pods/s, each running %s: pods by phase", steadyRate, benchRun), tr.samples),
		} {
			if err != nil {
				t.Error(err)
			}
		}
	}
	return r
}

func heldIn(st sim.Stats, ns string) int {
	n := 0
	for _, p := range st.Pods {
		if p.Namespace == ns {
			n++
		}
	}
	return n
}

func diff(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// perPod adds up the requests that are per pod: pods, pods/status,
// events, token requests (not the node's status and lease, which are per
// node).
func perPod(byRes map[string]float64) float64 {
	total := 0.0
	for res, v := range byRes {
		if strings.HasPrefix(res, "pods") || res == "events" || strings.HasPrefix(res, "serviceaccounts") {
			total += v
		}
	}
	return total
}

func targets(rep *benchReport) []targetLine {
	var out []targetLine
	if r := rep.Burst1k; r != nil {
		out = append(out, targetLine{Target: "1,000 pods Running within 3 s", Measured: fmt.Sprintf("%.1f s (%.0f pods/s)", r.SecondsToRunning, r.PodsPerSecond),
			Met: r.SecondsToRunning <= 3})
	}
	if r := rep.Burst10k; r != nil {
		out = append(out,
			targetLine{Target: "10,000 pods Running within 30 s", Measured: fmt.Sprintf("%.1f s (%.0f pods/s)", r.SecondsToRunning, r.PodsPerSecond),
				Met: r.SecondsToRunning <= 30},
			targetLine{Target: "10,000 Running pods deleted within 30 s", Measured: fmt.Sprintf("%.1f s (%.0f pods/s)", r.DeleteSeconds, r.DeletePodsPerSecond),
				Met: r.DeleteSeconds > 0 && r.DeleteSeconds <= 30},
			targetLine{Target: "VK RSS <= 200 MB at 10,000 pods", Measured: fmt.Sprintf("%.0f MB (peak %.0f MB)", r.VK.RSSMB, r.VK.PeakRSSMB),
				Met: r.VK.PeakRSSMB <= 200},
			targetLine{Target: "interlink <= 100 MB RSS and 10 s CPU for 10,000 pods", Measured: fmt.Sprintf("peak %.0f MB, %.1f s CPU", r.Interlink.PeakRSSMB, r.Interlink.CPUSeconds),
				Met: r.Interlink.PeakRSSMB <= 100 && r.Interlink.CPUSeconds <= 10})
	}
	if r := rep.Steady; r != nil {
		out = append(out, targetLine{Target: "p99 create -> Running <= 2 s at 50 pods/s", Measured: fmt.Sprintf("p99 %.2f s (p50 %.2f s)", r.P99, r.P50), Met: r.P99 <= 2})
	}
	if r := rep.Burst1k; r != nil {
		out = append(out, targetLine{Target: "<= 4 API server writes per pod lifecycle", Measured: fmt.Sprintf("%.2f", r.WritesPerPod), Met: r.WritesPerPod <= writesPerPodOK})
		// A poll in flight when the counters are read is counted by one
		// side only: one call either way is not a second call per poll.
		out = append(out, targetLine{Target: "one status request per sidecar per poll",
			Measured: fmt.Sprintf("%.2f (%.0f polls)", r.StatusCallsPerPoll, r.Polls), Met: r.StatusCallsPerPoll*r.Polls <= r.Polls+1})
	}
	return out
}

// figures are the run's numbers that bench-compare sets side by side, by
// name (lower is better for each).
func (rep *benchReport) figures() map[string]float64 {
	f := map[string]float64{}
	for name, r := range map[string]*burstResult{"burst1k": rep.Burst1k, "burst10k": rep.Burst10k} {
		if r == nil {
			continue
		}
		f[name+".seconds_to_running"] = r.SecondsToRunning
		f[name+".seconds_to_delete"] = r.DeleteSeconds
		f[name+".vk_cpu_seconds"] = r.VK.CPUSeconds
		f[name+".vk_peak_rss_mb"] = r.VK.PeakRSSMB
		f[name+".interlink_cpu_seconds"] = r.Interlink.CPUSeconds
		f[name+".interlink_peak_rss_mb"] = r.Interlink.PeakRSSMB
		f[name+".vk_writes_per_pod"] = r.WritesPerPod
		for d, cpu := range r.ControlPlaneCPU {
			f[name+"."+figureKey(d)+"_cpu_seconds_to_running"] = cpu
		}
	}
	if r := rep.Steady; r != nil {
		f["steady50.p50_seconds"], f["steady50.p99_seconds"] = r.P50, r.P99
	}
	return f
}

// figureKey is a process's name (kube-apiserver) as a history figure's
// key takes it (kube_apiserver).
func figureKey(process string) string { return strings.ReplaceAll(process, "-", "_") }

// historyLine is one run in docs/bench/history.jsonl.
type historyLine struct {
	When    string             `json:"when"`
	Bench   string             `json:"bench"`
	Machine map[string]string  `json:"machine"`
	LoadAvg map[string]string  `json:"loadAverage,omitempty"`
	Figures map[string]float64 `json:"figures"`
}

// appendHistory adds a run to out/history.jsonl.
func appendHistory(out string, line historyLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(out, "history.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644) //nolint:gosec // a published document
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func machine() map[string]string {
	m := map[string]string{"cores": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		var kb float64
		_, _ = fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), "%f", &kb)
		m["memory"] = fmt.Sprintf("%.0f GiB", kb/1024/1024)
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m["os"] = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	return m
}

// write saves the report as JSON and rewrites the whole-chain section of
// docs/benchmarks.md.
func (rep *benchReport) write(out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil { //nolint:gosec // the directory the developer named
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "whole-chain.json"), append(b, '\n'), 0o644); err != nil { //nolint:gosec // a published document
		return err
	}
	if err := appendHistory(out, historyLine{When: rep.When, Bench: "whole-chain", Machine: rep.Machine, LoadAvg: rep.LoadAvg, Figures: rep.figures()}); err != nil {
		return err
	}
	doc := filepath.Join(repoDir, "docs/benchmarks.md")
	rel, err := filepath.Rel(filepath.Dir(doc), out)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil // a trial run outside docs/: the document stays as it is
	}
	md, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	i, j := strings.Index(string(md), markerBegin), strings.Index(string(md), markerEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s lacks the %s ... %s markers", doc, markerBegin, markerEnd)
	}
	section := markerBegin + "\n" + rep.markdown(filepath.ToSlash(rel)) + markerEnd
	return os.WriteFile(doc, []byte(string(md[:i])+section+string(md[j+len(markerEnd):])), 0o644) //nolint:gosec // a published document
}

func (rep *benchReport) markdown(img string) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	keys := func(m map[string]string) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	w("Run of %s (`make bench-chain`); machine: ", rep.When)
	var parts []string
	for _, k := range []string{"cpu", "cores", "memory", "os", "kernel", "go"} {
		parts = append(parts, k+" "+rep.Machine[k])
	}
	w("%s; load average (1, 5, 15 min) %s at the start, %s at the end.\n\n", strings.Join(parts, ", "), rep.LoadAvg["start"], rep.LoadAvg["end"])
	w("| target | measured | met |\n| --- | --- | --- |\n")
	for _, tl := range rep.Targets {
		met := "yes"
		if !tl.Met {
			met = "**no**"
		}
		w("| %s | %s | %s |\n", tl.Target, tl.Measured, met)
	}
	w("\n| run | pods | create -> all Running | pods/s | p50 / p99 create -> Running | delete | VK CPU | VK RSS (peak) | interlink CPU | interlink RSS (peak) | VK writes (all requests) per pod | status calls per poll |\n")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	bursts := []struct {
		name string
		r    *burstResult
	}{{"1,000", rep.Burst1k}, {"10,000", rep.Burst10k}}
	for _, br := range bursts {
		r := br.r
		if r == nil {
			continue
		}
		w("| burst %s | %d | %.1f s | %.0f | %.2f / %.2f s | %.1f s (%.0f pods/s) | %.1f s | %.0f (%.0f) MB | %.1f s | %.0f (%.0f) MB | %.2f (%.2f) | %.2f |\n", br.name, r.Pods, r.SecondsToRunning,
			r.PodsPerSecond, r.P50, r.P99, r.DeleteSeconds, r.DeletePodsPerSecond, r.VK.CPUSeconds, r.VK.RSSMB, r.VK.PeakRSSMB, r.Interlink.CPUSeconds, r.Interlink.RSSMB, r.Interlink.PeakRSSMB,
			r.WritesPerPod, r.RequestsPerPod, r.StatusCallsPerPoll)
	}
	for _, br := range bursts {
		r := br.r
		if r == nil || len(r.ControlPlaneCPU) == 0 {
			continue
		}
		cores, _ := strconv.ParseFloat(rep.Machine["cores"], 64)
		w("\nWhere the cores went in the %s-pod burst, from the first create to all Running (%.1f s, so %.0f CPU seconds on %s cores), in CPU seconds:", br.name, r.SecondsToRunning, cores*r.SecondsToRunning, rep.Machine["cores"])
		for _, d := range controlPlaneDaemons {
			w(" %s %.1f;", d, r.ControlPlaneCPU[d])
		}
		w(" the VK %.1f; interlink %.1f; the sim %.1f.\n", r.VK.CPUSeconds, r.Interlink.CPUSeconds, r.Sim.CPUSeconds)
	}
	if r := rep.Steady; r != nil {
		w("\nSteady %d pods/s for %d s (%d pods, each Running %s then Succeeded): create -> Running p50 **%.2f s**, p90 %.2f s, p99 **%.2f s**, max %.2f s. ",
			r.Rate, steadySeconds, r.Pods, benchRun, r.P50, r.P90, r.P99, r.Latency["max"])
		w("Status freshness (the sim's state change to the API server, seen by a watch): Running p50 %.2f s, p99 %.2f s; Succeeded p50 %.2f s, p99 %.2f s. ",
			r.FreshRunning["p50"], r.FreshRunning["p99"], r.FreshSucceeded["p50"], r.FreshSucceeded["p99"])
		w("VK writes per pod lifecycle %.2f; sidecar status calls per VK poll %.2f.\n", r.WritesPerPod, r.StatusPerPoll)
	}
	if r := rep.Burst1k; r != nil && len(r.WritesByResource) > 0 {
		w("\nThe VK's writes during the 1,000-pod burst and its deletion, by resource:")
		for _, k := range sortedKeys(r.WritesByResource) {
			w(" %s %.0f;", k, r.WritesByResource[k])
		}
		w(" (nodes/status and leases are the node's own, not per pod).\n")
	}
	w("\nSettings:\n\n")
	for _, k := range keys(rep.Settings) {
		w("- %s: %s\n", k, rep.Settings[k])
	}
	w("\n")
	for _, p := range []struct{ file, alt string }{
		{"latency-steady50.png", "create -> Running latency of each pod over the steady run"},
		{"latency-steady50-hist.png", "distribution of create -> Running latency at 50 pods/s"},
		{"phases-steady50.png", "pods by phase over the steady run"},
		{"phases-burst1k.png", "pods by phase over the 1,000-pod burst and its deletion"},
		{"phases-burst10k.png", "pods by phase over the 10,000-pod burst"},
		{"rss-burst1k.png", "VK and interlink memory over the 1,000-pod burst and its deletion"},
		{"rss-burst10k.png", "VK and interlink memory over the 10,000-pod burst and its deletion"},
	} {
		w("![%s](%s/%s)\n", p.alt, img, p.file)
	}
	return sb.String()
}

func sortedKeys(m map[string]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// BenchmarkNodeReady times a VK with default settings (PingInterval 5 s,
// StatusInterval 2 s) from its process start to its node Ready in the API
// server, over 5 starts on one control plane (each stop is graceful, so the
// node is deleted and registered anew). Target: within 1 s.
func BenchmarkNodeReady(b *testing.B) {
	s := startStack(b, options{})
	const starts = 5
	var took []float64
	for i := range starts {
		s.vk.Stop(syscall.SIGTERM)
		e2eenv.Eventually(b, "node deleted at the VK's stop", 30*time.Second, func() error {
			if _, err := s.cs.CoreV1().Nodes().Get(context.Background(), s.node, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("node %s still there", s.node)
			}
			return nil
		})
		s.vk.Env = slices.DeleteFunc(s.vk.Env, func(e string) bool {
			return strings.HasPrefix(e, "INTERLINK_STATUS_INTERVAL=") || strings.HasPrefix(e, "INTERLINK_PING_INTERVAL=")
		})
		start := time.Now()
		s.vk.Run(b)
		for s.nodeReady(corev1.ConditionTrue) != nil {
			if time.Since(start) > time.Minute {
				b.Fatalf("start %d: node not Ready after a minute", i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took = append(took, time.Since(start).Seconds())
		b.Logf("start %d: node Ready %.2f s after the VK started", i+1, took[i])
	}
	slices.Sort(took)
	b.ReportMetric(took[starts/2], "median-s-to-ready")
	b.ReportMetric(took[starts-1], "max-s-to-ready")
	s.history(b, "node-ready", map[string]float64{"median_seconds_to_ready": took[starts/2], "max_seconds_to_ready": took[starts-1]})
}

// history appends a run's figures to $INTERLINK_BENCH_OUT/history.jsonl,
// when that is set.
func (s *stack) history(b *testing.B, bench string, figures map[string]float64) {
	out := os.Getenv("INTERLINK_BENCH_OUT")
	if out == "" {
		return
	}
	if err := appendHistory(out, historyLine{When: time.Now().UTC().Format(time.RFC3339), Bench: bench, Machine: machine(),
		LoadAvg: map[string]string{"end": loadavg()}, Figures: figures}); err != nil {
		b.Fatal(err)
	}
}
