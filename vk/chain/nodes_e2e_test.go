//go:build e2e

package chain_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// vkNode is one more virtual node of a stack: its own VK process, in front
// of the stack's interlink.
type vkNode struct {
	name, kubelet string
	vk            *proc
}

// addNodes starts n more VKs, each with its own node name and kubelet
// port and the stack's first VK's settings, and waits until all are Ready.
func (s *stack) addNodes(t testing.TB, n int) []vkNode {
	t.Helper()
	nodes := []vkNode{{name: s.node, kubelet: s.kubelet, vk: s.vk}}
	for i := 1; i <= n; i++ {
		nd := vkNode{name: fmt.Sprintf("%s-%d", s.node, i), kubelet: e2eenv.FreePort(t)}
		env := append(slices.Clone(s.vk.Env), "NODENAME="+nd.name, "KUBELET_PORT="+nd.kubelet)
		nd.vk = &proc{e2eenv.StartProcess(t, fmt.Sprintf("%s/interlink-vk-%d.log", s.dir, i), env, s.vk.Argv...)}
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		e2eenv.Eventually(t, "node "+nd.name+" Ready", 60*time.Second, func() error {
			node, err := s.cs.CoreV1().Nodes().Get(context.Background(), nd.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("node %s not Ready", nd.name)
		})
	}
	return nodes
}

// polls is how many status polls a VK made (its poll-duration histogram's
// count).
func (s *stack) polls(t testing.TB, kubelet string) float64 {
	t.Helper()
	m, err := s.tryVKMetrics(kubelet)
	if err != nil {
		t.Fatal(err)
	}
	return m.sum("interlink_vk_status_poll_duration_seconds", nil)
}

// BenchmarkManyNodes runs 10 virtual nodes (10 VK processes) in front of
// one interlink and the sim, and creates 1,000 pods on each at once. Per
// node: the seconds until its last pod is Running; across nodes: each
// node's time against the median node's (target: within 1.5 times), and
// the sidecar's status calls per VK poll (target: one; interlink makes one
// call per node's poll).
func BenchmarkManyNodes(b *testing.B) {
	const nodesN, perNode = 10, 1000
	s := startStack(b, options{
		simEnv: []string{"INTERLINK_SIM_PENDING_DELAY=" + benchPending.String(), "INTERLINK_SIM_RUN_DURATION=" + benchRun.String()},
		vkEnv:  []string{"INTERLINK_KUBE_API_QPS=" + benchVKQPS, "INTERLINK_KUBE_API_BURST=" + benchVKBurst},
	})
	nodes := s.addNodes(b, nodesN-1)
	ctx := context.Background()
	polls0 := make([]float64, len(nodes))
	for i, nd := range nodes {
		polls0[i] = s.polls(b, nd.kubelet)
	}
	st0 := s.simStats(b, "")
	vkCPU := func() float64 {
		var sum float64
		for _, nd := range nodes {
			sum += nd.vk.usage().CPUSeconds
		}
		return sum
	}
	vk0, il0, sim0, cp0 := vkCPU(), s.il.usage(), s.sim.usage(), s.controlPlaneCPU()
	trackers := make([]*tracker, len(nodes))
	names := make([][]string, len(nodes))
	for i := range nodes {
		ns := fmt.Sprintf("nodes-%d", i)
		s.namespace(b, ns)
		trackers[i] = newTracker(b, s, ns, ns)
		for j := range perNode {
			names[i] = append(names[i], fmt.Sprintf("p-%04d", j))
		}
	}
	start := time.Now()
	took := make([]float64, len(nodes))
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(nodes))
	for i, nd := range nodes {
		wg.Go(func() {
			pods := make([]*corev1.Pod, perNode)
			for j := range pods {
				pods[j] = s.benchPod(trackers[i].name, names[i][j], sim.OutcomeRunning, nil)
				pods[j].Spec.NodeName = nd.name
			}
			if err := trackers[i].createAll(ctx, s, pods, createWorkers/4+1); err != nil {
				errs <- err
				return
			}
			if err := trackers[i].waitFor(nd.name+": all Running", 10*time.Minute, func(sm sample) bool { return sm.Running == perNode }); err != nil {
				errs <- err
				return
			}
			took[i] = time.Since(start).Seconds()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	// Per-pod cost, from the first create to the last node's last pod
	// Running: comparable with BenchmarkWholeChain's 10,000 pods on one node.
	pods := float64(nodesN * perNode)
	cost := map[string]float64{"vk": vkCPU() - vk0, "interlink": s.il.usage().CPUSeconds - il0.CPUSeconds, "sim": s.sim.usage().CPUSeconds - sim0.CPUSeconds}
	for d, cpu := range diff(s.controlPlaneCPU(), cp0) {
		cost[d] = cpu
	}
	var peakVK float64
	for _, nd := range nodes {
		peakVK = max(peakVK, nd.vk.usage().PeakRSSMB)
	}
	var polls float64
	for i, nd := range nodes {
		polls += s.polls(b, nd.kubelet) - polls0[i]
	}
	calls := float64(s.simStats(b, "").StatusCalls - st0.StatusCalls)
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	median, slowest := sorted[len(sorted)/2], sorted[len(sorted)-1]
	for i, nd := range nodes {
		b.Logf("node %s: %d pods Running in %.1f s", nd.name, perNode, took[i])
	}
	b.Logf("%d nodes x %d pods: median node %.1f s, slowest %.1f s (%.2f x the median); sidecar status calls per VK poll %.2f (%.0f calls, %.0f polls)",
		len(nodes), perNode, median, slowest, slowest/median, calls/polls, calls, polls)
	for _, k := range sortedKeys(cost) {
		b.Logf("CPU to all Running: %s %.1f s (%.2f ms per pod)", k, cost[k], 1000*cost[k]/pods)
	}
	b.Logf("largest VK peak RSS %.0f MB (1,000 pods each)", peakVK)
	b.ReportMetric(median, "median-node-s")
	b.ReportMetric(slowest/median, "slowest/median")
	b.ReportMetric(calls/polls, "status-calls/poll")
	if slowest > 1.5*median {
		b.Errorf("the slowest node took %.1f s, more than 1.5 times the median node's %.1f s", slowest, median)
	}
	if calls > polls+float64(len(nodes)) {
		b.Errorf("%.0f sidecar status calls for %.0f VK polls: more than one per poll", calls, polls)
	}
	figures := map[string]float64{"median_node_seconds_to_running": median, "slowest_node_seconds_to_running": slowest,
		"status_calls_per_poll": calls / polls, "interlink_peak_rss_mb": s.il.usage().PeakRSSMB, "vk_max_peak_rss_mb": peakVK}
	for k, cpu := range cost {
		figures[figureKey(k)+"_cpu_ms_per_pod"] = 1000 * cpu / pods
	}
	s.history(b, "many-nodes", figures)
	for i := range nodes {
		if err := trackers[i].deleteAll(ctx, s, trackers[i].name, names[i], deleteWorkers/4+1); err != nil {
			b.Fatal(err)
		}
		trackers[i].close()
	}
}

// BenchmarkVKRestart10k: 10,000 pods Running on the node, then the VK is
// killed (SIGKILL) and started again. Measured: the seconds from its start
// until it tracks every pod again, from its job ID, with a status poll
// done (interlink_vk_pods and its Running count at 10,000); target 30 s.
// No job may be created again.
func BenchmarkVKRestart10k(b *testing.B) {
	const n = 10000
	s := startStack(b, options{
		simEnv: []string{"INTERLINK_SIM_PENDING_DELAY=" + benchPending.String(), "INTERLINK_SIM_RUN_DURATION=" + benchRun.String()},
		vkEnv:  []string{"INTERLINK_KUBE_API_QPS=" + benchVKQPS, "INTERLINK_KUBE_API_BURST=" + benchVKBurst},
	})
	ctx := context.Background()
	ns := "restart10k"
	s.namespace(b, ns)
	tr := newTracker(b, s, ns, ns)
	pods, names := s.benchPods(ns, n)
	if err := tr.createAll(ctx, s, pods, createWorkers); err != nil {
		b.Fatal(err)
	}
	if err := tr.waitFor("all Running", 10*time.Minute, func(sm sample) bool { return sm.Running == n }); err != nil {
		b.Fatal(err)
	}
	before := s.simStats(b, "")
	s.vk.Stop(syscall.SIGKILL)
	start := time.Now()
	s.vk.Run(b)
	var recovered float64
	for {
		m, err := s.tryVKMetrics(s.kubelet)
		if err == nil && m.sum("interlink_vk_pods", nil) == n && m.sum("interlink_vk_pods_by_phase", func(l map[string]string) bool { return l["phase"] == "Running" }) == n &&
			m.sum("interlink_vk_status_poll_duration_seconds", nil) > 0 {
			recovered = time.Since(start).Seconds()
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("the restarted VK did not track all %d pods within 5 minutes (%v)", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := s.simStats(b, "")
	b.Logf("VK restarted with %d pods bound: all tracked and polled %.1f s after its start; creates at the sidecar since the kill %d, duplicate jobs %d",
		n, recovered, after.JobsCreated-before.JobsCreated, after.DuplicateJobs-before.DuplicateJobs)
	b.ReportMetric(recovered, "s-to-recovered")
	if after.JobsCreated != before.JobsCreated || after.DuplicateJobs != before.DuplicateJobs {
		b.Errorf("the restarted VK created %d jobs again (%d duplicates)", after.JobsCreated-before.JobsCreated, after.DuplicateJobs-before.DuplicateJobs)
	}
	s.history(b, "vk-restart-10k", map[string]float64{"seconds_to_recovered": recovered, "vk_peak_rss_mb": s.vk.usage().PeakRSSMB})
	if err := tr.deleteAll(ctx, s, ns, names, deleteWorkers); err != nil {
		b.Fatal(err)
	}
	tr.close()
}

// BenchmarkAPIServerBaseline measures what the control plane alone allows
// on this machine: the same driver creates 10,000 pods bound to a node no
// VK serves (nothing else writes), then deletes them with no grace period.
// A pod through the whole chain costs its create, about two status writes
// and a delete besides: these figures bound what the chain can reach.
func BenchmarkAPIServerBaseline(b *testing.B) {
	const n = 10000
	s := startStack(b, options{})
	ctx := context.Background()
	ns := "baseline"
	s.namespace(b, ns)
	tr := newTracker(b, s, ns, ns)
	pods, names := s.benchPods(ns, n)
	for _, p := range pods {
		p.Spec.NodeName = "no-vk-serves-this-node"
	}
	start := time.Now()
	if err := tr.createAll(ctx, s, pods, createWorkers); err != nil {
		b.Fatal(err)
	}
	created := time.Since(start).Seconds()
	start = time.Now()
	zero := int64(0)
	var wg sync.WaitGroup
	ch := make(chan string)
	for range deleteWorkers {
		wg.Go(func() {
			for name := range ch {
				if err := s.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, name := range names {
		ch <- name
	}
	close(ch)
	wg.Wait()
	deleted := time.Since(start).Seconds()
	tr.close()
	b.Logf("the control plane alone: %d pods created in %.1f s (%.0f/s), deleted (grace 0) in %.1f s (%.0f/s), %d create and %d delete workers",
		n, created, n/created, deleted, n/deleted, createWorkers, deleteWorkers)
	b.ReportMetric(created, "s-to-create")
	b.ReportMetric(deleted, "s-to-delete")
	s.history(b, "apiserver-baseline", map[string]float64{"seconds_to_create_10000": created, "seconds_to_delete_10000": deleted})
}
