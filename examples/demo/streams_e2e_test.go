//go:build e2e

package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// streamIdle is interlink's StreamIdleTimeout in these stacks.
const streamIdle = 15 * time.Second

// TestE2EStreams reaches offloaded pods as users do, on a SLURM stack and
// a Docker stack: kubectl port-forward (100 connections at once), exec -it
// through a pty, exec -i, attach, refusals without RBAC, the idle
// timeout, no remote process left by a client that went away, and a
// Service whose EndpointSlices reach the pods (examples/pods/web-service.yaml).
// On SLURM port-forward runs in both PortForwardVia modes.
func TestE2EStreams(t *testing.T) {
	for _, b := range []struct {
		name string
		env  []string
	}{
		{"SLURM", []string{"AUTH=static"}},
		{"Docker", []string{"AUTH=static", "SIDECAR=docker"}},
	} {
		t.Run(b.name, func(t *testing.T) {
			s := runDemo(t, append(b.env, "INTERLINK_STREAM_IDLE_TIMEOUT="+streamIdle.String())...)
			docker := b.name == "Docker"
			pod := demoPod("default", "web", "sh", "-c", "mkdir -p /tmp/www && echo hello-from-$HOSTNAME-pod > /tmp/www/index.html && exec httpd -f -p 18080 -h /tmp/www")
			pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 18080}}
			pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
			if docker {
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "talk", Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"sh", "-c", "while read l; do echo got:$l; done"}, Stdin: true})
			}
			if out, err := s.apply(t, pod); err != nil {
				t.Fatalf("kubectl apply: %v\n%s", err, out)
			}
			s.mustKubectl(t, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s")

			t.Run("PortForward", func(t *testing.T) { portForward100(t, s) })
			if !docker {
				t.Run("PortForwardThroughTheJob", func(t *testing.T) {
					s.restartSidecar(t, "INTERLINK_SLURM_PORT_FORWARD_VIA=job")
					portForward100(t, s)
				})
				t.Run("PortForwardUndeclaredPort", func(t *testing.T) {
					local := e2eenv.FreePortNumber(t)
					pf := s.portForward(t, local, 22)
					_, err := httpGet(local)
					pf.stop()
					if err == nil || !strings.Contains(pf.output(), "declares no such TCP containerPort") {
						t.Fatalf("a port the pod did not declare: GET err %v, kubectl said %q; want a refusal naming containerPort", err, pf.output())
					}
				})
			}
			t.Run("ExecTTY", func(t *testing.T) {
				// test -t: a container's /dev may lack the terminal's
				// name (tty would say "not a tty" of a terminal).
				out, code := s.execTTY(t, "echo typed-$((6*7)); test -t 0 && test -t 1 && echo on-a-terminal; exit 5")
				if !strings.Contains(out, "typed-42") || !strings.Contains(out, "on-a-terminal") || code != 5 || strings.Contains(out, "srun:") {
					t.Fatalf("exec -it: output %q, exit code %d; want typed-42, on-a-terminal, no srun message and 5", out, code)
				}
			})
			t.Run("ExecStdin", func(t *testing.T) {
				cmd := exec.Command(s.kubectl, "--kubeconfig", s.kubeconfig, "exec", "-i", "web", "-c", "main", "--", "sh", "-c", "read x; echo read:$x; exit 7")
				cmd.Stdin = strings.NewReader("from-stdin\n")
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(string(out), "read:from-stdin") {
					t.Fatalf("exec -i: %v\n%s", err, out)
				}
			})
			t.Run("Attach", func(t *testing.T) {
				cmd := exec.Command(s.kubectl, "--kubeconfig", s.kubeconfig, "attach", "-i", "web", "-c", map[bool]string{true: "talk", false: "main"}[docker])
				pr, pw := io.Pipe()
				cmd.Stdin = pr
				var out e2eenv.LockedBuffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
				if !docker {
					_ = pw.Close()
					err := cmd.Wait()
					if err == nil || !strings.Contains(out.String(), "nothing to attach to") {
						t.Fatalf("attach on SLURM: %v, %q; want the refusal with its reason", err, out.String())
					}
					return
				}
				eventually(t, "the attached container answers", 30*time.Second, func() error {
					if _, err := io.WriteString(pw, "line1\n"); err != nil {
						return err
					}
					if !strings.Contains(out.String(), "got:line1") {
						return fmt.Errorf("attach output %q", out.String())
					}
					return nil
				})
				_ = pw.Close()
			})
			t.Run("Services", func(t *testing.T) {
				// One replica on SLURM: the demo's pods share the machine's network.
				s.services(t, map[bool]int{true: 2, false: 1}[docker])
			})
			t.Run("Forbidden", func(t *testing.T) { s.forbidden(t) })
			t.Run("IdleTimeout", func(t *testing.T) {
				local := e2eenv.FreePortNumber(t)
				pf := s.portForward(t, local, 18080)
				defer pf.stop()
				conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(local)), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = conn.Close() }()
				start := time.Now()
				_ = conn.SetReadDeadline(time.Now().Add(3 * streamIdle))
				_, err = io.ReadAll(conn) // httpd waits for a request that never comes
				took := time.Since(start)
				if took < streamIdle-time.Second || took > 2*streamIdle+5*time.Second || isTimeout(err) {
					t.Fatalf("an idle connection ended after %s (%v), want about %s; kubectl port-forward said:\n%s", took, err, streamIdle, pf.output())
				}
			})
			t.Run("ClientGoneNoRemoteProcess", func(t *testing.T) {
				g0 := s.vkGoroutines(t)
				marker := strconv.Itoa(3000 + int(time.Now().UnixNano()%1000))
				cmd := exec.Command("script", "-qec", fmt.Sprintf("%s --kubeconfig %s exec -it web -c main -- sleep %s", s.kubectl, s.kubeconfig, marker), "/dev/null")
				stdin, _ := cmd.StdinPipe()
				defer func() { _ = stdin.Close() }()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				eventually(t, "sleep "+marker+" runs at the remote side", 30*time.Second, func() error {
					if n := countProcs("sleep", marker); n == 0 {
						return errors.New("not yet")
					}
					return nil
				})
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				eventually(t, "no sleep "+marker+" left once its client is gone", 60*time.Second, func() error {
					if n := countProcs("sleep", marker); n != 0 {
						return fmt.Errorf("%d left", n)
					}
					return nil
				})
				// Nor a goroutine of the stream in the VK (a few of the
				// HTTP server's idle connections may come and go).
				eventually(t, "the VK's goroutines back to before", 60*time.Second, func() error {
					if g := s.vkGoroutines(t); g > g0+5 {
						return fmt.Errorf("%v goroutines, %v before the stream", g, g0)
					}
					return nil
				})
			})
			s.mustKubectl(t, "delete", "pod", "web", "--wait=true", "--timeout=120s")
		})
	}
}

// portForward100 fetches the pod's page through one kubectl port-forward,
// 100 connections at once (each a stream of its own).
func portForward100(t *testing.T, s *stack) {
	// Ready means the container runs, not that httpd listens yet; and
	// kubectl port-forward quits at the first connection the pod refuses.
	eventually(t, "httpd serving inside the pod", 60*time.Second, func() error {
		out, err := exec.Command(s.kubectl, "--kubeconfig", s.kubeconfig, "exec", "web", "-c", "main", "--",
			"wget", "-q", "-O-", "http://127.0.0.1:18080/").CombinedOutput()
		if err == nil && !strings.Contains(string(out), "hello-from-") {
			err = fmt.Errorf("page %q", out)
		}
		return err
	})
	local := e2eenv.FreePortNumber(t)
	pf := s.portForward(t, local, 18080)
	defer pf.stop()
	eventually(t, "a page through port-forward", 60*time.Second, func() error {
		body, err := httpGet(local)
		if err == nil && !strings.Contains(body, "hello-from-") {
			err = fmt.Errorf("page %q", body)
		}
		return err
	})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			if body, err := httpGet(local); err != nil || !strings.Contains(body, "hello-from-") {
				errs <- fmt.Errorf("%q: %w", body, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n == 1 {
			t.Errorf("a concurrent fetch failed: %v", err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of 100 concurrent fetches failed; kubectl port-forward said:\n%s", n, pf.output())
	}
}

func httpGet(port int) (string, error) {
	c := http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/") //nolint:noctx // bounded by the client's timeout
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type forwarder struct {
	cmd *exec.Cmd
	out *e2eenv.LockedBuffer
}

func (f *forwarder) stop() {
	_ = f.cmd.Process.Kill()
	_ = f.cmd.Wait()
}

func (f *forwarder) output() string { return f.out.String() }

// portForward runs kubectl port-forward pod/web local:port until stopped.
func (s *stack) portForward(t *testing.T, local, port int) *forwarder {
	t.Helper()
	f := &forwarder{out: &e2eenv.LockedBuffer{}}
	f.cmd = exec.Command(s.kubectl, "--kubeconfig", s.kubeconfig, "port-forward", "pod/web", fmt.Sprintf("%d:%d", local, port), "--address", "127.0.0.1")
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	eventually(t, "kubectl port-forward listens", 30*time.Second, func() error {
		if !strings.Contains(f.out.String(), "Forwarding from") {
			return fmt.Errorf("kubectl said %q", f.out.String())
		}
		return nil
	})
	return f
}

// execTTY runs sh in the pod's main container with kubectl exec -it, on a
// pty (script), types line into it and returns the output and exit code.
func (s *stack) execTTY(t *testing.T, line string) (string, int) {
	t.Helper()
	cmd := exec.Command("script", "-qec", fmt.Sprintf("%s --kubeconfig %s exec -it web -c main -- sh", s.kubectl, s.kubeconfig), "/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out e2eenv.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Typed once the shell prompts (busybox sh prints "/ # " on a tty).
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "# ") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := io.WriteString(stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("exec -it: %v\n%s", err, out.String())
		}
		return out.String(), 0
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("exec -it did not end:\n%s", out.String())
	}
	return "", 0
}

// forbidden checks that streams need RBAC: through the API server a
// ServiceAccount without pods/exec or pods/portforward is refused, and
// the VK's kubelet API, asked directly with its token, answers 403 (its
// SubjectAccessReview for nodes/proxy).
func (s *stack) forbidden(t *testing.T) {
	if out, err := s.kubectlRun(t, "create", "serviceaccount", "nobody"); err != nil && !strings.Contains(out, "AlreadyExists") {
		t.Fatalf("create serviceaccount: %v\n%s", err, out)
	}
	as := "--as=system:serviceaccount:default:nobody"
	for _, args := range [][]string{{"exec", "web", "-c", "main", "--", "true"}, {"exec", "-i", "web", "-c", "main", "--", "true"}} {
		out, err := s.kubectlRun(t, append([]string{as}, args...)...)
		if err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "forbidden") {
			t.Errorf("kubectl %s %v as nobody: %v, %q; want Forbidden", as, args, err, out)
		}
	}
	token := strings.TrimSpace(s.mustKubectl(t, "create", "token", "nobody"))
	c, base := s.kubeletClient(t, token)
	for _, path := range []string{"/portForward/default/web", "/exec/default/web/main?command=true&output=1", "/attach/default/web/main?output=1"} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s on the kubelet API with a token without nodes/proxy: %s, want 403", path, resp.Status)
		}
	}
}

// vkMetrics reads the VK's /metrics on its kubelet API, with the cluster
// admin's credentials.
func (s *stack) vkMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	c, base := s.kubeletClient(t, "")
	resp, err := c.Get(base + "/metrics") //nolint:noctx // bounded by the client's timeout
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("the VK's /metrics: %v", err)
	}
	return fams
}

// vkGoroutines reads go_goroutines from the VK's /metrics.
func (s *stack) vkGoroutines(t *testing.T) float64 {
	t.Helper()
	f, ok := s.vkMetrics(t)["go_goroutines"]
	if !ok || len(f.GetMetric()) == 0 {
		t.Fatal("the VK's /metrics has no go_goroutines")
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// kubeletClient is a client of the web pod's node's kubelet API: with
// the kubeconfig's credentials, or with token alone when one is given.
func (s *stack) kubeletClient(t *testing.T, token string) (*http.Client, string) {
	t.Helper()
	node := strings.TrimSpace(s.mustKubectl(t, "get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"))
	var n corev1.Node
	s.getJSON(t, &n, "get", "node", node)
	var addr string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		cfg = rest.AnonymousClientConfig(cfg)
		cfg.BearerToken = token
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: rt, Timeout: 30 * time.Second}, "https://" + net.JoinHostPort(addr, strconv.Itoa(int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)))
}

func (s *stack) getJSON(t *testing.T, into any, args ...string) {
	t.Helper()
	out := s.mustKubectl(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatal(err)
	}
}

// countProcs counts this host's processes running name with arg (the SLURM
// jobs and the Docker containers of these stacks run here).
func countProcs(name, arg string) int {
	procs, err := procfs.AllProcs()
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range procs {
		cl, err := p.CmdLine()
		if err == nil && len(cl) == 2 && filepath.Base(cl[0]) == name && cl[1] == arg {
			n++
		}
	}
	return n
}

// restartSidecar restarts the demo's SLURM sidecar with extra environment,
// as make demo started it.
func (s *stack) restartSidecar(t *testing.T, env ...string) {
	t.Helper()
	pidFile := filepath.Join(s.Dir, "sidecar.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	eventually(t, "the sidecar stopped", 30*time.Second, func() error {
		if syscall.Kill(pid, 0) == nil && !zombie(pid) {
			return errors.New("still runs")
		}
		return nil
	})
	bin := ""
	for _, e := range s.Env {
		if v, ok := strings.CutPrefix(e, "BIN="); ok {
			bin = v
		}
	}
	slurmEnv, err := os.ReadFile(filepath.Join(s.Dir, "slurm", "env"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`SLURM_CONF=(\S+)`).FindSubmatch(slurmEnv)
	if m == nil || bin == "" {
		t.Fatalf("no SLURM_CONF in %s, or no BIN in %v", slurmEnv, s.Env)
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "sidecar.log"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logf.Close() }()
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(repoDir, bin)
	}
	cmd := exec.Command(filepath.Join(bin, "interlink-slurm"), "--config", filepath.Join(s.Dir, "config", "slurm.yaml"))
	cmd.Env = append(append(os.Environ(), "SLURM_CONF="+string(m[1])), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// kubectl port-forward ends at its first error: wait for the sidecar
	// to serve before the test forwards again.
	sock := filepath.Join(s.Dir, "sidecar.sock")
	eventually(t, "the restarted sidecar serves", 60*time.Second, func() error {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}
