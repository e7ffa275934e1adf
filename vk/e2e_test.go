//go:build e2e

package vk_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

var (
	binDir  string // our binaries
	k8sBin  string // kubectl and the control plane
	repoDir string
)

func TestMain(m *testing.M) {
	e2eenv.Main(m, &repoDir, &binDir, &k8sBin, "interlink-vk-e2e-bin-",
		"functions/cmd/interlink",
		"sidecars/sim/cmd/interlink-sim",
		"vk/cmd/interlink-vk")
}

// proc is a daemon started by the test and stopped by PID.
// proc is one daemon of the stack.
type proc = e2eenv.Process

func (s *stack) start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return e2eenv.StartProcess(t, filepath.Join(s.dir, name+".log"), env, append([]string{filepath.Join(binDir, name)}, args...)...)
}

type stack struct {
	dir     string
	cluster string
	cs      kubernetes.Interface
	node    string
	simSock string
	il, vk  *proc
	kubelet string
	traces  *otlpReceiver
}

// startStack starts a control plane, the sim, interlink and the VK.
func startStack(t *testing.T) *stack {
	t.Helper()
	dir, err := os.MkdirTemp("", "interlink-vk-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{dir: dir, cluster: filepath.Join(dir, "cluster"), node: "vk-e2e"}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"interlink-vk", "interlink", "interlink-sim"} {
				b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
				lines := strings.Split(string(b), "\n")
				t.Logf("--- last lines of %s.log ---\n%s", n, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
		_ = exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), "down", s.cluster).Run()
		_ = os.RemoveAll(dir)
	})
	up := exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), "up", s.cluster)
	up.Stdout, up.Stderr = os.Stderr, os.Stderr
	if err := up.Run(); err != nil {
		t.Fatalf("control plane: %v", err)
	}
	kubeconfig := filepath.Join(s.cluster, "kubeconfig")
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 200, 400
	s.cs = kubernetes.NewForConfigOrDie(rc)
	// The VK asks for its serving certificate through the CSR API; approve
	// it as a cluster admin (or an approver) would.
	// Pods get a kubeconfig for this service account.
	if _, err := s.cs.CoreV1().ServiceAccounts("default").Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "interlink-pods"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	approveCtx, stopApprover := context.WithCancel(context.Background())
	t.Cleanup(stopApprover)
	go approveCSRs(approveCtx, s.cs, s.node)

	s.simSock = filepath.Join(dir, "sim.sock")
	// Every binary exports its spans to a receiver the test runs.
	s.traces = startReceiver(t)
	tracing := "INTERLINK_TRACING_ENDPOINT=" + s.traces.url
	s.start(t, "interlink-sim", []string{"INTERLINK_SIM_LISTEN=unix://" + s.simSock, "INTERLINK_SIM_PENDING_DELAY=500ms",
		"INTERLINK_SIM_RUN_DURATION=3s", "INTERLINK_SIM_LOG_INTERVAL=500ms", tracing})
	ilPort := e2eenv.FreePort(t)
	tokens, tokenFile := filepath.Join(dir, "tokens.csv"), filepath.Join(dir, "vk-token")
	if err := os.WriteFile(tokens, []byte("vk-e2e-token-0123456789,"+s.node+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("vk-e2e-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.il = s.start(t, "interlink", []string{"SIDECARSERVICE=sim", "SIDECARURL=unix://" + s.simSock, "INTERLINKPORT=" + ilPort,
		"INTERLINK_AUTH_STATIC_TOKENS_FILE=" + tokens, tracing})
	s.kubelet = e2eenv.FreePort(t)
	s.vk = s.start(t, "interlink-vk", []string{
		"NODENAME=" + s.node, "KUBECONFIG=" + kubeconfig, "INTERLINKPORT=" + ilPort, "KUBELET_PORT=" + s.kubelet,
		"VKTOKENFILE=" + tokenFile,
		"SERVICEACCOUNT=interlink-pods", "NAMESPACE=default",
		"INTERLINK_KUBELET_CERT_MODE=csr", "INTERLINK_KUBELET_CERT_DIR=" + filepath.Join(dir, "vk-pki"),
		"INTERLINK_KUBELET_CLIENT_CA_FILE=" + filepath.Join(s.cluster, "pki/ca.crt"),
		"INTERLINK_STATUS_INTERVAL=1s", "INTERLINK_PING_INTERVAL=1s", "INTERLINK_DATA_WAIT=3s", tracing,
	})
	return s
}

// approveCSRs approves the node's kubelet-serving CSRs until ctx ends.
func approveCSRs(ctx context.Context, cs kubernetes.Interface, node string) {
	for ctx.Err() == nil {
		l, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range l.Items {
				csr := &l.Items[i]
				if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName || len(csr.Status.Conditions) > 0 {
					continue
				}
				csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2ETest", Message: "approved by the e2e test for " + node})
				_, _ = cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *stack) kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(k8sBin, "kubectl"), append([]string{"--kubeconfig", filepath.Join(s.cluster, "kubeconfig")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *stack) simStats(t *testing.T) sim.Stats {
	t.Helper()
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.simSock)
	}}}
	resp, err := c.Get("http://sim" + sim.PathStats)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *stack) pod(name, outcome string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"e2e": "vk"}, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"kubernetes.io/hostname": s.node},
			Tolerations:   []corev1.Toleration{{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists}},
			Containers:    []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sh", "-c", "echo hi"}}},
		},
	}
	if outcome != "" {
		p.Annotations[sim.AnnotationOutcome] = outcome
	}
	return p
}

func (s *stack) phase(t *testing.T, name string) (corev1.PodPhase, *corev1.Pod) {
	t.Helper()
	p, err := s.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", nil
	}
	return p.Status.Phase, p
}

func (s *stack) waitPhase(t *testing.T, name string, want corev1.PodPhase, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	e2eenv.Eventually(t, fmt.Sprintf("pod %s %s", name, want), timeout, func() error {
		var ph corev1.PodPhase
		ph, pod = s.phase(t, name)
		if ph != want {
			return fmt.Errorf("phase %q", ph)
		}
		return nil
	})
	return pod
}

// TestE2EVirtualNode runs pods through the whole chain: kubectl -> control
// plane -> interlink-vk -> interlink -> interlink-sim, all real processes.
func TestE2EVirtualNode(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	pods := s.cs.CoreV1().Pods("default")

	t.Run("NodeReady", func(t *testing.T) {
		e2eenv.Eventually(t, "node Ready", 30*time.Second, func() error {
			n, err := s.cs.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					if n.Status.Allocatable.Pods().Value() != 100000 {
						return fmt.Errorf("pods capacity %v, want the sim's 100k", n.Status.Allocatable.Pods())
					}
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", n.Status.Conditions)
		})
		// Every default service account exists before pods are made.
		e2eenv.Eventually(t, "default service account", 30*time.Second, func() error {
			_, err := s.cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			return err
		})
	})

	t.Run("ServingCertificateFromCSR", func(t *testing.T) {
		ca, err := os.ReadFile(filepath.Join(s.cluster, "pki/ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		e2eenv.Eventually(t, "kubelet API serving a certificate signed by the cluster CA", 30*time.Second, func() error {
			conn, err := tls.Dial("tcp", "127.0.0.1:"+s.kubelet, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err != nil {
				return err
			}
			defer conn.Close()
			if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "system:node:"+s.node {
				return fmt.Errorf("certificate for %q", cn)
			}
			return nil
		})
	})

	t.Run("PodLifecycleWithData", func(t *testing.T) {
		out, err := s.kubectl(t, "apply", "-f", filepath.Join(repoDir, "examples/pods/volumes.yaml"))
		if err != nil {
			t.Fatalf("kubectl apply: %v %s", err, out)
		}
		start := time.Now()
		seen := map[corev1.PodPhase]bool{}
		e2eenv.Eventually(t, "pod volumes Succeeded", 60*time.Second, func() error {
			ph, _ := s.phase(t, "volumes")
			seen[ph] = true
			if ph == corev1.PodRunning && !seen["timed"] {
				seen["timed"] = true
				t.Logf("kubectl apply -> Running: %s", time.Since(start).Round(time.Millisecond))
			}
			if ph != corev1.PodSucceeded {
				return fmt.Errorf("phase %q", ph)
			}
			return nil
		})
		if !seen[corev1.PodRunning] {
			t.Errorf("pod never seen Running; phases seen %v", seen)
		}
		_, pod := s.phase(t, "volumes")
		if pod.Annotations[api.AnnotationJobID] == "" {
			t.Errorf("no %s annotation on the pod", api.AnnotationJobID)
		}
		cs := pod.Status.ContainerStatuses[0]
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 || cs.State.Terminated.FinishedAt.IsZero() {
			t.Errorf("container status %+v", cs.State)
		}
		logs, err := s.kubectl(t, "logs", "volumes")
		if err != nil {
			t.Fatalf("kubectl logs: %v %s", err, logs)
		}
		for _, want := range []string{"configmap/volumes-config[app.conf]", "secret/volumes-secret[password]", "projected/kube-api-access-", "[ca.crt,namespace,token]", "projected/interlink-kubeconfig[kubeconfig]", "exited with code 0"} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
		if strings.Contains(logs, "not-a-real-password") {
			t.Error("a secret value reached the logs")
		}
	})

	t.Run("OneTracePerPodCreate", func(t *testing.T) {
		// The pod of PodLifecycleWithData was created through all three
		// hops: its create is one trace across them.
		names := s.traces.traceAcross(15*time.Second, "interlink-vk", "interlink", "interlink-sim")
		if names == nil {
			t.Fatalf("no trace holds a CreatePod span of the VK and spans of interlink and the sim; %s", s.traces.dump())
		}
		t.Logf("one trace: %v", names)
	})
	t.Run("FailingPod", func(t *testing.T) {
		if _, err := pods.Create(ctx, s.pod("failing", sim.OutcomeFailed), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := s.waitPhase(t, "failing", corev1.PodFailed, 60*time.Second)
		if tr := pod.Status.ContainerStatuses[0].State.Terminated; tr == nil || tr.ExitCode != 1 {
			t.Errorf("failed container: %+v", pod.Status.ContainerStatuses[0].State)
		}
	})

	t.Run("MissingConfigMapFailsWithReason", func(t *testing.T) {
		p := s.pod("missing-data", "")
		p.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "does-not-exist"}}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := s.waitPhase(t, "missing-data", corev1.PodFailed, 60*time.Second)
		if pod.Status.Reason != "CreateContainerConfigError" || !strings.Contains(pod.Status.Message, "configmap does-not-exist") {
			t.Errorf("reason %q message %q", pod.Status.Reason, pod.Status.Message)
		}
	})

	t.Run("LogsFollow", func(t *testing.T) {
		if _, err := pods.Create(ctx, s.pod("follow", ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitPhase(t, "follow", corev1.PodRunning, 60*time.Second)
		cmd := exec.Command(filepath.Join(k8sBin, "kubectl"), "--kubeconfig", filepath.Join(s.cluster, "kubeconfig"), "logs", "-f", "follow")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan string, 1)
		go func() {
			var lines []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			done <- strings.Join(lines, "\n")
		}()
		select {
		case out := <-done:
			_ = cmd.Wait()
			if !strings.Contains(out, "tick") || !strings.Contains(out, "exited with code 0") {
				t.Errorf("kubectl logs -f: %q", out)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("kubectl logs -f did not end when the container ended")
		}
	})

	t.Run("Exec", func(t *testing.T) {
		if _, err := pods.Create(ctx, s.pod("exec", sim.OutcomeRunning), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitPhase(t, "exec", corev1.PodRunning, 60*time.Second)
		out, err := s.kubectl(t, "exec", "exec", "--", "echo", "hello")
		if err != nil || !strings.Contains(out, `sim: exec in container main of pod default/exec: ["echo" "hello"]`) {
			t.Errorf("kubectl exec: %v %q", err, out)
		}
		out, err = s.kubectl(t, "exec", "exec", "--", "false")
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
			t.Errorf("kubectl exec of a failing command: %v %q, want exit code 1", err, out)
		}
	})

	t.Run("MetricsOnTheKubeletAPI", func(t *testing.T) {
		// As the API server (or a Prometheus with a client certificate)
		// reads them: an authenticated, authorized client.
		pki := filepath.Join(s.cluster, "pki")
		cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "apiserver-kubelet-client.crt"), filepath.Join(pki, "apiserver-kubelet-client.key"))
		if err != nil {
			t.Fatal(err)
		}
		ca, _ := os.ReadFile(filepath.Join(pki, "ca.crt"))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		c := http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
		resp, err := c.Get("https://127.0.0.1:" + s.kubelet + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out := string(b)
		for _, want := range []string{`interlink_build_info{binary="interlink-vk"`, `interlink_vk_pods_by_phase{phase="Running"}`,
			"interlink_vk_node_ready 1", "interlink_vk_status_poll_duration_seconds_count", "interlink_vk_token_expiry_seconds NaN"} {
			if resp.StatusCode != 200 || !strings.Contains(out, want) {
				t.Errorf("VK metrics (%d) lack %q: %.300s", resp.StatusCode, want, out)
			}
		}
	})

	t.Run("KubeletAPIRefusesUnauthenticated", func(t *testing.T) {
		c := http.Client{Transport: &http.Transport{TLSClientConfig: insecure()}}
		resp, err := c.Get("https://127.0.0.1:" + s.kubelet + "/containerLogs/default/hello/main")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("unauthenticated logs request: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("DeleteRunningPod", func(t *testing.T) {
		before := s.simStats(t).PodsHeld
		if _, err := pods.Create(ctx, s.pod("forever", sim.OutcomeRunning), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitPhase(t, "forever", corev1.PodRunning, 60*time.Second)
		if err := pods.Delete(ctx, "forever", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
			t.Fatal(err)
		}
		e2eenv.Eventually(t, "pod gone from the API", 60*time.Second, func() error {
			_, err := pods.Get(ctx, "forever", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there: %w", err)
		})
		if held := s.simStats(t).PodsHeld; held != before {
			t.Errorf("sim holds %d pods after delete, had %d before: a job was left behind", held, before)
		}
	})

	t.Run("JobAndDeployment", func(t *testing.T) {
		tmpl := s.pod("", "")
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "batch", Namespace: "default"},
			Spec: batchv1.JobSpec{Completions: ptr.To[int32](3), Parallelism: ptr.To[int32](3),
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "batch"}}, Spec: tmpl.Spec}}}
		if _, err := s.cs.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		dtmpl := s.pod("", sim.OutcomeRunning)
		dtmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: dtmpl.Annotations}, Spec: dtmpl.Spec}}}
		if _, err := s.cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e2eenv.Eventually(t, "job complete", 90*time.Second, func() error {
			j, err := s.cs.BatchV1().Jobs("default").Get(ctx, "batch", metav1.GetOptions{})
			if err != nil || j.Status.Succeeded != 3 {
				return fmt.Errorf("job status %+v: %w", j.Status, err)
			}
			return nil
		})
		e2eenv.Eventually(t, "deployment available", 90*time.Second, func() error {
			d, err := s.cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil || d.Status.AvailableReplicas != 3 {
				return fmt.Errorf("deployment status %+v: %w", d.Status, err)
			}
			return nil
		})
	})

	t.Run("Burst100", func(t *testing.T) {
		start := time.Now()
		for i := range 100 {
			if _, err := pods.Create(ctx, s.pod(fmt.Sprintf("burst-%d", i), sim.OutcomeRunning), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		e2eenv.Eventually(t, "100 pods Running", 120*time.Second, func() error {
			l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "e2e=vk"})
			if err != nil {
				return err
			}
			n := 0
			for _, p := range l.Items {
				if strings.HasPrefix(p.Name, "burst-") && p.Status.Phase == corev1.PodRunning {
					n++
				}
			}
			if n != 100 {
				return fmt.Errorf("%d Running", n)
			}
			return nil
		})
		t.Logf("100 pods: create -> all Running in %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("VKKilledMidBurstSubmitsEachPodOnce", func(t *testing.T) {
		before := s.simStats(t).JobsCreated
		for i := range 20 {
			if _, err := pods.Create(ctx, s.pod(fmt.Sprintf("restart-%d", i), sim.OutcomeRunning), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if i == 10 {
				s.vk.Stop(syscall.SIGKILL)
			}
		}
		s.vk.Run(t)
		e2eenv.Eventually(t, "20 pods Running after the VK restart", 120*time.Second, func() error {
			n := 0
			for i := range 20 {
				if ph, _ := s.phase(t, fmt.Sprintf("restart-%d", i)); ph == corev1.PodRunning {
					n++
				}
			}
			if n != 20 {
				return fmt.Errorf("%d Running", n)
			}
			return nil
		})
		if jobs := s.simStats(t).JobsCreated - before; jobs != 20 {
			t.Errorf("%d jobs created for 20 pods", jobs)
		}
	})

	t.Run("InterlinkOutage", func(t *testing.T) {
		jobsBefore := s.simStats(t).JobsCreated
		s.il.Stop(syscall.SIGTERM)
		e2eenv.Eventually(t, "node NotReady", 30*time.Second, func() error {
			n, err := s.cs.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionFalse && c.Reason == "InterlinkUnreachable" {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", n.Status.Conditions)
		})
		// A pod created during the outage waits, Pending, and is submitted
		// once interLink is back (restartPolicy Never: a failed create would
		// otherwise fail it for good).
		if _, err := pods.Create(ctx, s.pod("during-outage", sim.OutcomeRunning), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		if ph, pod := s.phase(t, "during-outage"); ph != corev1.PodPending {
			t.Errorf("pod created during the outage is %q (%s), want Pending", ph, pod.Status.Message)
		}
		// No pod lost its status while interLink was away.
		for i := range 20 {
			if ph, _ := s.phase(t, fmt.Sprintf("restart-%d", i)); ph != corev1.PodRunning {
				t.Errorf("pod restart-%d is %q during the outage", i, ph)
			}
		}
		s.il.Run(t)
		e2eenv.Eventually(t, "node Ready again", 30*time.Second, func() error {
			n, err := s.cs.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("not ready")
		})
		s.waitPhase(t, "during-outage", corev1.PodRunning, 60*time.Second)
		jobsBefore++ // during-outage's job, created once interLink came back
		if err := pods.Delete(ctx, "restart-0", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		e2eenv.Eventually(t, "pod deleted after the outage", 60*time.Second, func() error {
			if _, err := pods.Get(ctx, "restart-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %w", err)
			}
			return nil
		})
		if jobs := s.simStats(t).JobsCreated; jobs != jobsBefore {
			t.Errorf("%d jobs created during the outage", jobs-jobsBefore)
		}
	})
}
