//go:build e2e

package observability_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/seed-3f807049/interlink/observability"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// The dashboards' e2e: a real Prometheus (Debian's) scrapes a whole stack —
// control plane, interlink-vk, interlink with its proxy, and three sidecars
// (sim, SLURM with Charliecloud on a private slurm-wlm, Docker on a private
// dockerd) — while a small workload runs with failures: a failing pod, a bad
// token, a sidecar stopped for a while. Then every panel's query of every
// dashboard, evaluated through Prometheus's HTTP API, must return data.

// start runs one binary of the stack with its log in dir.
func start(t *testing.T, dir, bin string, env []string, args ...string) *e2eenv.Process {
	t.Helper()
	return e2eenv.StartProcess(t, filepath.Join(dir, filepath.Base(bin)+".log"), env, append([]string{bin}, args...)...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	for range 200 {
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

func TestE2EDashboardsHaveData(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		e2eenv.Prerequisite(t, "prometheus (run .ci/prometheus.sh install)")
	}
	repo, _ := filepath.Abs("..")
	dir, err := os.MkdirTemp("", "interlink-obs-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"interlink", "interlink-vk", "interlink-slurm", "interlink-docker", "prometheus"} {
				b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
				lines := strings.Split(string(b), "\n")
				t.Logf("--- %s.log ---\n%s", n, strings.Join(lines[max(0, len(lines)-15):], "\n"))
			}
		}
		_ = os.RemoveAll(dir)
	})

	// Binaries and daemons.
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./functions/cmd/interlink", "./vk/cmd/interlink-vk",
		"./sidecars/sim/cmd/interlink-sim", "./sidecars/slurm/cmd/interlink-slurm", "./sidecars/slurm/cmd/interlink-envexec", "./sidecars/slurm/cmd/interlink-prober",
		"./sidecars/docker/cmd/interlink-docker")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	run(t, filepath.Join(repo, "examples/cluster/build.sh")) // cached after the first build
	cluster := filepath.Join(dir, "cluster")
	t.Cleanup(func() { _ = exec.Command(filepath.Join(repo, "examples/cluster/cluster.sh"), "down", cluster).Run() })
	run(t, filepath.Join(repo, "examples/cluster/cluster.sh"), "up", cluster)
	slurmDir, images, dockerDir := filepath.Join(dir, "slurm"), filepath.Join(dir, "images"), filepath.Join(dir, "docker")
	t.Cleanup(func() { _ = exec.Command(filepath.Join(repo, ".ci/slurm.sh"), "down", slurmDir).Run() })
	t.Cleanup(func() { _ = exec.Command(filepath.Join(repo, ".ci/docker.sh"), "down", dockerDir).Run() })
	run(t, filepath.Join(repo, ".ci/slurm.sh"), "image", images)
	run(t, filepath.Join(repo, ".ci/slurm.sh"), "up", slurmDir)
	run(t, filepath.Join(repo, ".ci/docker.sh"), "up", dockerDir)

	// Sidecars on loopback TCP, so that Prometheus scrapes them: /metrics
	// is open, the API requires interlink's token (the sim, a test backend,
	// requires none).
	sidecarTokens := filepath.Join(dir, "sidecar-tokens.csv")
	if err := os.WriteFile(sidecarTokens, []byte("sidecar-token-0123456789abcdef,interlink\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sidecar-token"), []byte("sidecar-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	simPort, slurmPort, dockerPort, ilPort, kubeletPort := e2eenv.FreePort(t), e2eenv.FreePort(t), e2eenv.FreePort(t), e2eenv.FreePort(t), e2eenv.FreePort(t)
	start(t, dir, filepath.Join(bin, "interlink-sim"), []string{"INTERLINK_SIM_LISTEN=127.0.0.1:" + simPort, "INTERLINK_SIM_RUN_DURATION=3s"})
	start(t, dir, filepath.Join(bin, "interlink-slurm"), []string{"INTERLINK_SLURM_LISTEN=127.0.0.1:" + slurmPort,
		"INTERLINK_SLURM_AUTH_TOKEN_FILE=" + sidecarTokens,
		"SLURM_CONF=" + filepath.Join(slurmDir, "slurm.conf"), "DATAROOTFOLDER=" + filepath.Join(dir, "slurm-jobs"),
		"INTERLINK_SLURM_STATE_PATH=" + filepath.Join(dir, "slurm-state.db"), "INTERLINK_SLURM_RUNTIME=charliecloud",
		"INTERLINK_SLURM_IMAGE_ROOT=" + images, "USER=root"})
	dockerEnv := []string{"INTERLINK_DOCKER_LISTEN=127.0.0.1:" + dockerPort, "INTERLINK_DOCKER_AUTH_TOKEN_FILE=" + sidecarTokens,
		"DOCKER_HOST=unix://" + filepath.Join(dockerDir, "docker.sock"),
		"DATAROOTFOLDER=" + filepath.Join(dir, "docker-data"), "INTERLINK_DOCKER_NETWORK_MODE=none",
		"INTERLINK_DOCKER_PAUSE_IMAGE=busybox:latest", "INTERLINK_DOCKER_PAUSE_COMMAND=sleep,2147483647"}
	dockerSidecar := start(t, dir, filepath.Join(bin, "interlink-docker"), dockerEnv)
	for _, p := range []string{simPort, slurmPort, dockerPort} {
		waitHTTP(t, "http://127.0.0.1:"+p+"/metrics")
	}

	// interlink with its proxy: static tokens for the VK and Prometheus.
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte("vk-token-0123456789abcdef,vk\nprom-token-0123456789abcdef,prometheus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"vk-token": "vk-token-0123456789abcdef", "prom-token": "prom-token-0123456789abcdef"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start(t, dir, filepath.Join(bin, "interlink"), []string{"INTERLINKPORT=" + ilPort,
		"INTERLINK_SIDECARS=sim=http://127.0.0.1:" + simPort + ",slurm=http://127.0.0.1:" + slurmPort + ",docker=http://127.0.0.1:" + dockerPort,
		"INTERLINK_DEFAULT_SIDECAR=sim", "INTERLINK_AUTH_STATIC_TOKENS_FILE=" + tokens,
		"INTERLINK_SIDECAR_TOKEN_FILE=" + filepath.Join(dir, "sidecar-token")})
	waitHTTP(t, "http://127.0.0.1:"+ilPort+"/metrics")

	kubeconfig := filepath.Join(cluster, "kubeconfig")
	start(t, dir, filepath.Join(bin, "interlink-vk"), []string{"NODENAME=obs-node", "KUBECONFIG=" + kubeconfig,
		"INTERLINKPORT=" + ilPort, "KUBELET_PORT=" + kubeletPort, "VKTOKENFILE=" + filepath.Join(dir, "vk-token"),
		"INTERLINK_KUBELET_CERT_MODE=self-signed", "INTERLINK_KUBELET_CLIENT_CA_FILE=" + filepath.Join(cluster, "pki/ca.crt"),
		"INTERLINK_STATUS_INTERVAL=1s", "INTERLINK_PING_INTERVAL=1s"})

	// Prometheus scraping all of them every second.
	promPort := e2eenv.FreePort(t)
	pki := filepath.Join(cluster, "pki")
	promCfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: interlink
    authorization: {credentials_file: %s}
    static_configs: [{targets: ["127.0.0.1:%s"]}]
  - job_name: interlink-sidecar
    static_configs: [{targets: ["127.0.0.1:%s", "127.0.0.1:%s", "127.0.0.1:%s"]}]
  - job_name: interlink-vk
    scheme: https
    tls_config: {cert_file: %s, key_file: %s, insecure_skip_verify: true}
    static_configs: [{targets: ["127.0.0.1:%s"]}]
`, filepath.Join(dir, "prom-token"), ilPort, slurmPort, dockerPort, simPort,
		filepath.Join(pki, "apiserver-kubelet-client.crt"), filepath.Join(pki, "apiserver-kubelet-client.key"), kubeletPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	promBin, _ := exec.LookPath("prometheus")
	start(t, dir, promBin, nil, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:"+promPort)
	prom := "http://127.0.0.1:" + promPort
	waitHTTP(t, prom+"/-/ready")

	// The workload.
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	waitNodeReady(t, cs, "obs-node")
	pods := map[string]string{"hello-sim": "", "fails-sim": "", "hello-slurm": "slurm", "hello-docker": "docker"}
	for name, sidecar := range pods {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{}},
			Spec: corev1.PodSpec{NodeName: "obs-node", RestartPolicy: corev1.RestartPolicyNever,
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: "main", Image: "busybox:latest", Command: []string{"/bin/sh", "-c", "echo hi; sleep 2"}}}},
		}
		if sidecar != "" {
			p.Annotations["interlink.io/sidecar"] = sidecar
		}
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent // nothing is pulled here
		if sidecar == "slurm" {
			p.Spec.Containers[0].Image = "busybox"
		}
		if name == "fails-sim" {
			p.Annotations["interlink.io/sim-outcome"] = "failed"
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A bad token.
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+ilPort+"/pinglink", nil)
	req.Header.Set("Authorization", "Bearer not-a-known-token-"+uuid.NewString())
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
	}
	waitPhases(t, cs, map[string]corev1.PodPhase{"hello-sim": corev1.PodSucceeded, "fails-sim": corev1.PodFailed,
		"hello-slurm": corev1.PodSucceeded, "hello-docker": corev1.PodSucceeded})
	// A sidecar stopped for a while: pings and status calls to it fail.
	dockerSidecar.Stop(syscall.SIGTERM)
	time.Sleep(2 * time.Second)
	// Its logs cannot be read meanwhile: a 503 from interLink.
	logReq := fmt.Sprintf(`{"Namespace":"default","PodName":"hello-docker","PodUID":%q,"ContainerName":"main"}`, podUID(t, cs, "hello-docker"))
	req, _ = http.NewRequest(http.MethodPost, "http://127.0.0.1:"+ilPort+"/getLogs", strings.NewReader(logReq))
	req.Header.Set("Authorization", "Bearer vk-token-0123456789abcdef")
	req.Header.Set("Interlink-Sidecar", "docker")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("logs through a stopped sidecar: %v %v, want 503", resp, err)
	} else {
		_ = resp.Body.Close()
	}
	time.Sleep(2 * time.Second)
	start(t, dir, filepath.Join(bin, "interlink-docker"), dockerEnv)
	time.Sleep(6 * time.Second) // a few scrapes after the workload

	// Each binary's real scrape passes promtool check metrics.
	pt, _ := exec.LookPath("promtool")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "apiserver-kubelet-client.crt"), filepath.Join(pki, "apiserver-kubelet-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	vkClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}} //nolint:gosec // the VK's self-signed serving certificate
	for name, target := range map[string]struct {
		url, token string
		c          *http.Client
	}{
		"interlink":        {"http://127.0.0.1:" + ilPort + "/metrics", "prom-token-0123456789abcdef", http.DefaultClient},
		"interlink-vk":     {"https://127.0.0.1:" + kubeletPort + "/metrics", "", vkClient},
		"interlink-sim":    {"http://127.0.0.1:" + simPort + "/metrics", "", http.DefaultClient},
		"interlink-slurm":  {"http://127.0.0.1:" + slurmPort + "/metrics", "", http.DefaultClient},
		"interlink-docker": {"http://127.0.0.1:" + dockerPort + "/metrics", "", http.DefaultClient},
	} {
		req, _ := http.NewRequest(http.MethodGet, target.url, nil)
		if target.token != "" {
			req.Header.Set("Authorization", "Bearer "+target.token)
		}
		resp, err := target.c.Do(req)
		if err != nil {
			t.Fatalf("scrape %s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `interlink_build_info{binary="`+name+`"`) {
			t.Errorf("scrape %s: %d without its build info", name, resp.StatusCode)
			continue
		}
		check := exec.Command(pt, "check", "metrics")
		check.Stdin = strings.NewReader(string(body))
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics of %s: %v\n%s", name, err, out)
		}
	}

	// Every panel's query returns data.
	files, _ := filepath.Glob("dashboards/*.json")
	for _, f := range files {
		panels, err := observability.ReadDashboard(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range panels {
			for _, tg := range p.Targets {
				expr := strings.ReplaceAll(tg.Expr, "$sidecar", ".*")
				if n := query(t, prom, expr); n == 0 {
					t.Errorf("%s: panel %q: %s returned nothing", filepath.Base(f), p.Title, expr)
				}
			}
		}
	}
}

func podUID(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(p.UID)
}

// query evaluates expr now and returns how many series it gave.
func query(t *testing.T, prom, expr string) int {
	t.Helper()
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Errorf("query %s: %v %s", expr, err, r.Error)
		return 0
	}
	return len(r.Data.Result)
}

func waitNodeReady(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	for range 300 {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("node %s never Ready", name)
}

func waitPhases(t *testing.T, cs kubernetes.Interface, want map[string]corev1.PodPhase) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done := true
		var last []string
		for name, ph := range want {
			p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != ph {
				done = false
				if err == nil {
					last = append(last, fmt.Sprintf("%s=%s(%s)", name, p.Status.Phase, p.Status.Message))
				}
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods did not reach their phases: %v", last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
