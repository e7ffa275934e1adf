//go:build e2e

package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Resource usage (issue 22): what kubectl top shows of offloaded pods,
// through metrics-server (make demo starts it) and the virtual node's
// /metrics/resource, and what its /stats/summary says, against what this
// host measures of the same processes (make demo's remote side is this
// host: its SLURM node, its dockerd).

func usageCases() []*behaviorCase {
	var cs []*behaviorCase
	add := func(name, what string, pod *corev1.Pod, check func(*testing.T, *run, *behaviorCase) error) {
		pod.Name = name
		cs = append(cs, &behaviorCase{name: name, what: what, pod: pod, objs: []any{pod}, check: check})
	}
	// Busy 50 ms, asleep 50 ms: half a core. The marker argument finds the
	// process on the host.
	burner := "import time, sys\nwhile True:\n    t = time.time()\n    while time.time() - t < 0.05: pass\n    time.sleep(0.05)\n"
	p := behaviorPod("", imgDebian, "/usr/bin/python3", "-c", burner, "usage-cpu-marker")
	add("usage-cpu", "kubectl top: a burner of half a core shows at least 0.4; /stats/summary agrees with the host", p,
		deleted(usageShows("usage-cpu-marker", func(cpu, _ resource.Quantity) error {
			if cpu.MilliValue() < 400 {
				return fmt.Errorf("CPU %s, want at least 400m", cpu.String())
			}
			return nil
		})))
	alloc := "import time\nb = b'x' * (100 << 20)\nprint('allocated', flush=True)\ntime.sleep(600)\n"
	p = behaviorPod("", imgDebian, "/usr/bin/python3", "-c", alloc, "usage-memory-marker")
	add("usage-memory", "kubectl top: a 100 MB allocation shows 90-160 MiB; /stats/summary agrees with the host", p,
		deleted(usageShows("usage-memory-marker", func(_, mem resource.Quantity) error {
			if mib := mem.Value() >> 20; mib < 90 || mib > 160 {
				return fmt.Errorf("memory %s, want 90-160Mi", mem.String())
			}
			return nil
		})))
	return cs
}

// usageShows waits (a minute and a half) until kubectl top shows the
// case's pod as ok wants, then checks /stats/summary against the host's
// own measure of the process whose command line holds marker.
func usageShows(marker string, ok func(cpu, mem resource.Quantity) error) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		running, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		if err != nil {
			return err
		}
		var shown string
		deadline := time.Now().Add(90 * time.Second)
		for {
			out, err := s.kubectlRun(t, "top", "pod", "-n", nsBehave, c.pod.Name, "--no-headers")
			shown = strings.TrimSpace(out)
			var cerr error
			if err != nil {
				cerr = fmt.Errorf("kubectl top pod: %w: %s", err, out)
			} else if f := strings.Fields(shown); len(f) != 3 {
				cerr = fmt.Errorf("kubectl top pod printed %q", shown)
			} else {
				cpu, err1 := resource.ParseQuantity(f[1])
				mem, err2 := resource.ParseQuantity(f[2])
				switch {
				case err1 != nil || err2 != nil:
					cerr = fmt.Errorf("kubectl top pod printed %q", shown)
				default:
					cerr = ok(cpu, mem)
				}
			}
			if cerr == nil {
				break
			}
			if time.Now().After(deadline) {
				return cerr
			}
			time.Sleep(3 * time.Second)
		}
		t.Logf("kubectl top pod %s: %s", c.pod.Name, shown)
		return summaryAgrees(t, s, running.Spec.NodeName, c.pod.Name, marker)
	}
}

// summaryAgrees compares the pod's figures in node's /stats/summary with the
// host's: the resident set and the CPU rate of the process (and its
// children) whose command line holds marker.
func summaryAgrees(t *testing.T, s *run, node, pod, marker string) error {
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		return err
	}
	proc, err := markedProcess(fs, marker)
	if err != nil {
		return err
	}
	st0, err := proc.Stat()
	if err != nil {
		return err
	}
	t0 := time.Now()
	time.Sleep(10 * time.Second)
	st1, err := proc.Stat()
	if err != nil {
		return err
	}
	hostCores := (st1.CPUTime() - st0.CPUTime()) / time.Since(t0).Seconds()
	hostRSS := float64(st1.ResidentMemory())

	sum, err := statsSummary(t, s, node)
	if err != nil {
		return err
	}
	for _, p := range sum.Pods {
		if p.PodRef.Name != pod || p.PodRef.Namespace != nsBehave {
			continue
		}
		if p.CPU == nil || p.CPU.UsageNanoCores == nil || p.Memory == nil || p.Memory.WorkingSetBytes == nil {
			return fmt.Errorf("/stats/summary has no CPU rate or working set for pod %s: %+v", pod, p)
		}
		cores := float64(*p.CPU.UsageNanoCores) / 1e9
		ws := float64(*p.Memory.WorkingSetBytes)
		t.Logf("pod %s: /stats/summary %.3f cores, %.1f MiB; the host measures %.3f cores, %.1f MiB resident",
			pod, cores, ws/(1<<20), hostCores, hostRSS/(1<<20))
		if d := cores - hostCores; d > 0.15 || d < -0.15 {
			return fmt.Errorf("/stats/summary: %.3f cores, the host measures %.3f", cores, hostCores)
		}
		// The working set counts what a cgroup charges (page cache the
		// process touched too) where the host counts the resident set.
		if d := ws - hostRSS; d > 0.25*hostRSS+32<<20 || d < -(0.25*hostRSS+32<<20) {
			return fmt.Errorf("/stats/summary: working set %.1f MiB, the host measures %.1f MiB resident", ws/(1<<20), hostRSS/(1<<20))
		}
		return nil
	}
	return fmt.Errorf("/stats/summary lists no pod %s/%s", nsBehave, pod)
}

// statsSummary reads node's /stats/summary from its kubelet API, at the
// address and port the Node gives, as the API server would (whose node
// proxy refuses make demo's loopback node address): with the admin's
// credentials, verifying the serving cert against the cluster's CA.
func statsSummary(t *testing.T, s *run, node string) (*statsv1alpha1.Summary, error) {
	out, err := s.kubectlRun(t, "get", "node", node, "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("kubectl get node %s: %w: %s", node, err, out)
	}
	var n corev1.Node
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return nil, err
	}
	var addr string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	port := n.Status.DaemonEndpoints.KubeletEndpoint.Port
	if addr == "" || port == 0 {
		return nil, fmt.Errorf("node %s gives no InternalIP and kubelet port: %+v", node, n.Status)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: rt, Timeout: 30 * time.Second}
	url := "https://" + net.JoinHostPort(addr, strconv.Itoa(int(port))) + "/stats/summary"
	resp, err := c.Get(url) //nolint:noctx // a test's call, bounded by the client's timeout
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	var sum statsv1alpha1.Summary
	if err := json.Unmarshal(body, &sum); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return &sum, nil
}

// markedProcess is the one process whose command line holds marker as an
// argument.
func markedProcess(fs procfs.FS, marker string) (procfs.Proc, error) {
	procs, err := fs.AllProcs()
	if err != nil {
		return procfs.Proc{}, err
	}
	var found []procfs.Proc
	for _, p := range procs {
		args, err := p.CmdLine()
		if err != nil || len(args) == 0 || args[len(args)-1] != marker {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.PID), "exe")); err == nil && strings.HasPrefix(filepath.Base(exe), "python3") {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return procfs.Proc{}, fmt.Errorf("%d python3 processes with the argument %s on this host, want 1", len(found), marker)
	}
	return found[0], nil
}
