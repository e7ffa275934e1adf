//go:build e2e

package demo

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probes, lifecycle hooks and termination messages: the pod-behavior cases
// of a kubelet's lifecycle (issue 21). Each pod keeps its own port: on the
// SLURM backends every pod shares the node's network.

func execProbe(period, failures int32, command ...string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: command}},
		PeriodSeconds: period, TimeoutSeconds: 5, FailureThreshold: failures, SuccessThreshold: 1}
}

func lifecycleCases(port int) []*behaviorCase {
	var cs []*behaviorCase
	add := func(name, what string, pod *corev1.Pod, check func(*testing.T, *run, *behaviorCase) error) {
		pod.Name = name
		cs = append(cs, &behaviorCase{name: name, what: what, pod: pod, objs: []any{pod}, check: check})
	}

	// Not ready for 20 s, ready for 20 s, then not ready again (each longer
	// than the status takes to reach the API server).
	p := behaviorPod("", imgBusybox, "sh", "-c", "sleep 20; touch /tmp/ready; sleep 20; rm /tmp/ready; sleep 40")
	p.Spec.Containers[0].ReadinessProbe = execProbe(1, 1, "cat", "/tmp/ready")
	add("probe-readiness", "a readiness probe failing, passing, failing: Ready flips", p, deleted(watched(readinessFlips)))

	p = behaviorPod("", imgBusybox, "sh", "-c", "touch /tmp/alive; sleep 8; rm /tmp/alive; sleep 120")
	p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	p.Spec.Containers[0].LivenessProbe = execProbe(1, 2, "cat", "/tmp/alive")
	add("probe-liveness", "a failing liveness probe restarts the container", p, deleted(watched(livenessRestarts)))

	// The liveness probe would fail at once: it must not run before the
	// startup probe passes (after 20 s).
	p = behaviorPod("", imgBusybox, "sh", "-c", "sleep 20; touch /tmp/started; sleep 120")
	p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	p.Spec.Containers[0].StartupProbe = execProbe(1, 60, "cat", "/tmp/started")
	p.Spec.Containers[0].LivenessProbe = execProbe(1, 1, "cat", "/tmp/started")
	add("probe-startup", "a startup probe gates liveness; started follows it", p, deleted(startupGates))

	p = behaviorPod("", imgBusybox, "sh", "-c", fmt.Sprintf("sleep 20; mkdir -p /tmp/www && echo ok > /tmp/www/healthz && exec httpd -f -p %d -h /tmp/www", port+1))
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: port32(port + 1)}}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("web")}},
		PeriodSeconds: 1, TimeoutSeconds: 2, FailureThreshold: 1, SuccessThreshold: 1}
	add("probe-http", "an httpGet readiness probe against a real listener", p, deleted(becomesReady))

	p = behaviorPod("", imgBusybox, "sh", "-c", fmt.Sprintf("sleep 20; mkdir -p /tmp/www && exec httpd -f -p %d -h /tmp/www", port+2))
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port32(port + 2))}},
		PeriodSeconds: 1, TimeoutSeconds: 2, FailureThreshold: 1, SuccessThreshold: 1}
	add("probe-tcp", "a tcpSocket readiness probe against a real listener", p, deleted(becomesReady))

	p = behaviorPod("", imgBusybox, "sh", "-c", "for i in $(seq 300); do [ -s /tmp/hook ] && break; sleep 0.1; done; cat /tmp/hook")
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo from-poststart > /tmp/hook"}}}}
	add("hook-poststart", "postStart runs in the container; its output is seen there", p, succeedsWith("main", "from-poststart"))

	// preStop tells a listener pod (by its pod IP) that it ran, then the
	// container gets its stop signal.
	// nc's input never ends: with </dev/null, busybox nc could end a
	// connection at its input's end before the request came (over a
	// bridge, the data comes a moment after the connection).
	p = behaviorPod("", imgBusybox, "sh", "-c", fmt.Sprintf("tail -f /dev/null | nc -l -p %d", port+3))
	add("hook-prestop", "preStop runs on delete, before the container stops", p, deleted(preStopRuns(port+3)))

	p = behaviorPod("", imgBusybox, "sh", "-c", "printf 'bye\\nnow' > /dev/termination-log; exit 3")
	add("termination-message", "the message of /dev/termination-log", p, terminatedWith(3, "bye\nnow"))
	p = behaviorPod("", imgBusybox, "sh", "-c", "printf 'custom' > /tmp/msg; exit 0")
	p.Spec.Containers[0].TerminationMessagePath = "/tmp/msg"
	add("termination-path", "terminationMessagePath elsewhere", p, terminatedWith(0, "custom"))
	p = behaviorPod("", imgBusybox, "sh", "-c", "for i in $(seq 100); do echo line-$i; done; exit 2")
	p.Spec.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	want := ""
	for i := 21; i <= 100; i++ {
		want += fmt.Sprintf("line-%d\n", i)
	}
	add("termination-fallback", "FallbackToLogsOnError: the log's last 80 lines", p, terminatedWith(2, want))
	return cs
}

// watched runs check while `kubectl get pod -w` follows the case's pod,
// and logs what it printed (the closing notes show it).
func watched(check func(*testing.T, *run, *behaviorCase) error) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		ctx, cancel := context.WithCancel(context.Background())
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, s.kubectl, "--kubeconfig", s.kubeconfig, "get", "pod", "-n", nsBehave, c.pod.Name, "-w")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			cancel()
			return fmt.Errorf("kubectl get -w: %w", err)
		}
		err := check(t, s, c)
		cancel()
		_ = cmd.Wait()
		t.Logf("kubectl get pod %s -w:\n%s", c.pod.Name, out.String())
		return err
	}
}

// deleted runs check, then deletes the case's pod (without waiting): a
// pod that would run on does not hold a slot of the node for the others.
func deleted(check func(*testing.T, *run, *behaviorCase) error) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		err := check(t, s, c)
		if err != nil {
			// The job's directory (the prober's log among it) goes with
			// the pod: keep it first.
			if p, gerr := s.getPod(t, nsBehave, c.pod.Name); gerr == nil {
				s.keep(t, p)
			}
		}
		if out, derr := s.kubectlRun(t, "delete", "pod", "-n", nsBehave, c.pod.Name, "--wait=false"); derr != nil {
			t.Logf("kubectl delete %s: %v: %s", c.pod.Name, derr, out)
		}
		return err
	}
}

// port32 is a port as the API types hold it (the suite's ports are below
// 41000).
func port32(n int) int32 { return int32(n) } //nolint:gosec // see above

func podReady(p *corev1.Pod) (bool, time.Time) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}

// readyLate waits until the pod is Ready, and checks that it turned Ready
// at least late after its container started: its probe held it back
// until its command made the probe pass. It returns when Ready turned.
func readyLate(t *testing.T, s *run, name string, late time.Duration) (time.Time, error) {
	p, err := s.waitPod(t, name, func(p *corev1.Pod) error {
		if ready, since := podReady(p); !ready {
			return fmt.Errorf("phase %s, Ready false since %s", p.Status.Phase, since)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	_, since := podReady(p)
	cs := statusOf(p, "main")
	if cs == nil || cs.State.Running == nil || !cs.Ready {
		return since, fmt.Errorf("container %+v, want running and ready", cs)
	}
	if started := cs.State.Running.StartedAt.Time; since.Sub(started) < late-time.Second {
		return since, fmt.Errorf("Ready since %s, only %s after the container started (%s): its probe did not hold it back", since, since.Sub(started), started)
	}
	if cs.RestartCount != 0 {
		return since, fmt.Errorf("restarted %d times", cs.RestartCount)
	}
	return since, nil
}

// readinessFlips: Ready only once the probe passes (20 s after the start),
// then not Ready again once it fails (20 s later), without a restart.
func readinessFlips(t *testing.T, s *run, c *behaviorCase) error {
	became, err := readyLate(t, s, c.pod.Name, 15*time.Second)
	if err != nil {
		return err
	}
	p, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
		ready, since := podReady(p)
		if ready || !since.After(became) {
			return fmt.Errorf("Ready %v since %s, want false after %s", ready, since, became)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if cs := statusOf(p, "main"); cs == nil || cs.RestartCount != 0 || cs.State.Running == nil || cs.Ready {
		return fmt.Errorf("container %+v, want running, not ready, never restarted: readiness must not restart", cs)
	}
	return nil
}

func livenessRestarts(t *testing.T, s *run, c *behaviorCase) error {
	p, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
		cs := statusOf(p, "main")
		if cs == nil || cs.RestartCount < 1 || cs.LastTerminationState.Terminated == nil {
			return fmt.Errorf("phase %s, container %+v, want restarted", p.Status.Phase, cs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("phase %s, want Running (restarted)", p.Status.Phase)
	}
	return nil
}

// startupGates: started (and so ready) only once the startup probe passes,
// 20 s after the start, though a liveness probe with a failure threshold
// of 1 that would fail before then runs beside it: it must not have run
// (no restart), then or 5 s later.
func startupGates(t *testing.T, s *run, c *behaviorCase) error {
	if _, err := readyLate(t, s, c.pod.Name, 15*time.Second); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // the liveness probe now runs, and passes
	p, err := s.getPod(t, nsBehave, c.pod.Name)
	if err != nil {
		return err
	}
	if cs := statusOf(p, "main"); cs == nil || cs.RestartCount != 0 || cs.Started == nil || !*cs.Started {
		return fmt.Errorf("container %+v: want started and never restarted", cs)
	}
	return nil
}

func becomesReady(t *testing.T, s *run, c *behaviorCase) error {
	_, err := readyLate(t, s, c.pod.Name, 15*time.Second)
	return err
}

// preStopRuns starts a pod whose preStop hook calls the listener (the
// case's pod) at its pod IP, deletes it, and finds the call in the
// listener's log.
func preStopRuns(port int) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		l, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// SLURM's pods share the node's network and report the node's
		// address (make demo's node is this host: its address, or loopback
		// while sinfo has not answered); a Docker pod has its own network,
		// and is Running only with its address known.
		ip := l.Status.PodIP
		if ip == "" && slices.Contains(s.Env, "SIDECAR=docker") {
			return fmt.Errorf("pod %s is Running without a pod IP", c.pod.Name)
		}
		if ip == "" {
			ip = "127.0.0.1"
		}
		name := c.pod.Name + "-stopped"
		p := behaviorPod(name, imgBusybox, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")
		p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			// busybox 1.35's wget -T crashes: timeout bounds it instead.
			Command: []string{"timeout", "3", "wget", "-q", "-O-", fmt.Sprintf("http://%s:%d/prestop-ran", ip, port)}}}}
		if out, err := s.apply(t, p); err != nil {
			return fmt.Errorf("kubectl apply: %w: %s", err, out)
		}
		if _, err := s.waitPod(t, name, func(p *corev1.Pod) error {
			if cs := statusOf(p, "main"); cs == nil || cs.State.Running == nil {
				return fmt.Errorf("phase %s, container %+v", p.Status.Phase, cs)
			}
			return nil
		}); err != nil {
			return err
		}
		if out, err := s.kubectlRun(t, "delete", "pod", "-n", nsBehave, name, "--wait=true", "--timeout=90s"); err != nil {
			return fmt.Errorf("kubectl delete: %w: %s", err, out)
		}
		logs, err := s.logsOf(t, c.pod.Name, "main")
		if err != nil {
			return fmt.Errorf("the listener's log: %w: %s", err, logs)
		}
		if !strings.Contains(logs, "GET /prestop-ran") {
			return fmt.Errorf("listener's log %q, want the preStop hook's request", logs)
		}
		return nil
	}
}

func terminatedWith(code int32, message string) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		p, err := s.waitPod(t, c.pod.Name, ended)
		if err != nil {
			return err
		}
		cs := statusOf(p, "main")
		if cs == nil || cs.State.Terminated == nil {
			return fmt.Errorf("container %+v, want terminated", cs)
		}
		if term := cs.State.Terminated; term.ExitCode != code || term.Message != message {
			return fmt.Errorf("exit code %d, message %q; want %d, %q", term.ExitCode, term.Message, code, message)
		}
		return nil
	}
}
