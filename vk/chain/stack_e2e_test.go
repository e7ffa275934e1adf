//go:build e2e

package chain_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

var (
	binDir  string // our binaries, built once
	k8sBin  string // the control plane and kubectl
	repoDir string
)

func TestMain(m *testing.M) {
	e2eenv.Main(m, &repoDir, &binDir, &k8sBin, "interlink-chain-bin-",
		"functions/cmd/interlink",
		"sidecars/sim/cmd/interlink-sim",
		"vk/cmd/interlink-vk",
		"vk/cmd/interlink-token-refresher")
}

// proc is a daemon the test starts, restarts and stops by PID.
// proc is one daemon of the stack (e2eenv.Process), with its usage.
type proc struct{ *e2eenv.Process }

func (s *stack) start(t testing.TB, name string, env ...string) *proc {
	t.Helper()
	return &proc{e2eenv.StartProcess(t, filepath.Join(s.dir, name+".log"), env, filepath.Join(binDir, name))}
}

// usage is a process's CPU time and memory, from /proc.
type usage struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSMB      float64 `json:"rssMB"`
	PeakRSSMB  float64 `json:"peakRSSMB"`
}

func (p *proc) usage() usage { return pidUsage(p.PID()) }

// pidUsage reads a process's CPU time and memory from /proc (zero when it
// is gone).
func pidUsage(pid int) usage {
	var u usage
	pr, err := procfs.NewProc(pid)
	if err != nil {
		return u
	}
	if st, err := pr.Stat(); err == nil {
		u.CPUSeconds = st.CPUTime()
	}
	if ss, err := pr.NewStatus(); err == nil {
		u.RSSMB, u.PeakRSSMB = float64(ss.VmRSS)/(1<<20), float64(ss.VmHWM)/(1<<20)
	}
	return u
}

// controlPlaneDaemons are the control plane's processes, by the names of
// the PID files examples/cluster/cluster.sh writes.
var controlPlaneDaemons = []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"}

// controlPlaneCPU is the CPU seconds each control plane daemon has used.
func (s *stack) controlPlaneCPU() map[string]float64 {
	out := map[string]float64{}
	for _, d := range controlPlaneDaemons {
		b, err := os.ReadFile(filepath.Join(s.cluster, d+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out[d] = pidUsage(pid).CPUSeconds
		}
	}
	return out
}

// options shape a stack.
type options struct {
	simEnv, ilEnv, vkEnv []string
	// hydraTTL, when set, makes interlink accept Ory Hydra's JWTs and the
	// VK's token come from interlink-token-refresher (tokens living this
	// long); else a static token.
	hydraTTL string
}

type stack struct {
	dir, cluster string
	cs           kubernetes.Interface
	rc           *rest.Config
	node         string
	simSock      string
	sim, il, vk  *proc
	refresher    *proc
	kubelet      string
	ilPort       string
	tokenFile    string
}

// startStack starts a control plane, the sim, interlink (its embedded proxy
// on) and the VK, and waits for the node to be Ready.
func startStack(t testing.TB, o options) *stack {
	t.Helper()
	dir, err := os.MkdirTemp("", "interlink-chain-")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{dir: dir, cluster: filepath.Join(dir, "cluster"), node: "chain"}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"interlink-vk", "interlink", "interlink-sim", "interlink-token-refresher"} {
				b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
				lines := strings.Split(string(b), "\n")
				t.Logf("--- last lines of %s.log ---\n%s", n, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
		_ = exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), "down", s.cluster).Run()
		if !t.Failed() && os.Getenv("INTERLINK_CHAIN_KEEP") == "" { // set it to read the logs after a run
			_ = os.RemoveAll(dir)
		}
	})
	up := exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), "up", s.cluster)
	up.Stdout, up.Stderr = os.Stderr, os.Stderr
	if err := up.Run(); err != nil {
		t.Fatalf("control plane: %v", err)
	}
	kubeconfig := filepath.Join(s.cluster, "kubeconfig")
	s.rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// The driver's own client is not what is measured: no client-side limit.
	s.rc.QPS, s.rc.Burst = -1, 0
	s.cs = kubernetes.NewForConfigOrDie(s.rc)

	s.simSock = filepath.Join(dir, "sim.sock")
	s.sim = s.start(t, "interlink-sim", append([]string{"INTERLINK_SIM_LISTEN=unix://" + s.simSock,
		"INTERLINK_SIM_STATE_FILE=" + filepath.Join(dir, "sim-state.json"), "INTERLINK_LOG_LEVEL=warn"}, o.simEnv...)...)
	s.ilPort = e2eenv.FreePort(t)
	s.tokenFile = filepath.Join(dir, "vk-token")
	ilEnv := []string{"SIDECARSERVICE=sim", "SIDECARURL=unix://" + s.simSock, "INTERLINKPORT=" + s.ilPort, "ERRORSONLYLOGGING=true"}
	if o.hydraTTL != "" {
		h := startHydra(t, dir, o.hydraTTL)
		c := h.client(t, "interlink")
		secret := filepath.Join(dir, "client-secret")
		if err := os.WriteFile(secret, []byte(c.secret), 0o600); err != nil {
			t.Fatal(err)
		}
		s.refresher = s.start(t, "interlink-token-refresher", "INTERLINK_TOKEN_URL="+h.Public+"/oauth2/token", "INTERLINK_TOKEN_CLIENT_ID="+c.id,
			"INTERLINK_TOKEN_CLIENT_SECRET_FILE="+secret, "INTERLINK_TOKEN_AUDIENCE=interlink", "INTERLINK_TOKEN_SCOPES=read", "VKTOKENFILE="+s.tokenFile)
		ilEnv = append(ilEnv, "INTERLINK_AUTH_ISSUERS="+h.Public, "INTERLINK_AUTH_AUDIENCES=interlink", "INTERLINK_AUTH_CLOCK_SKEW=0s")
		e2eenv.Eventually(t, "the refresher's first token", 20*time.Second, func() error { _, err := os.Stat(s.tokenFile); return err })
	} else {
		tokens := filepath.Join(dir, "tokens.csv")
		tok := fmt.Sprintf("chain-%d-0123456789abcdef", time.Now().UnixNano())
		if err := os.WriteFile(tokens, []byte(tok+","+s.node+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ilEnv = append(ilEnv, "INTERLINK_AUTH_STATIC_TOKENS_FILE="+tokens)
	}
	s.il = s.start(t, "interlink", append(ilEnv, o.ilEnv...)...)
	s.kubelet = e2eenv.FreePort(t)
	s.vk = s.start(t, "interlink-vk", append([]string{
		"NODENAME=" + s.node, "KUBECONFIG=" + kubeconfig, "INTERLINKPORT=" + s.ilPort, "KUBELET_PORT=" + s.kubelet,
		"VKTOKENFILE=" + s.tokenFile, "INTERLINK_KUBELET_CERT_MODE=self-signed",
		"INTERLINK_KUBELET_CLIENT_CA_FILE=" + filepath.Join(s.cluster, "pki/ca.crt"),
		"INTERLINK_STATUS_INTERVAL=1s", "INTERLINK_PING_INTERVAL=1s", "INTERLINK_LOG_FORMAT=json", "ERRORSONLYLOGGING=true",
	}, append(o.vkEnv, strings.Fields(os.Getenv("INTERLINK_CHAIN_VK_ENV"))...)...)...)
	e2eenv.Eventually(t, "node Ready", 60*time.Second, func() error { return s.nodeReady(corev1.ConditionTrue) })
	e2eenv.Eventually(t, "default service account", 60*time.Second, func() error {
		_, err := s.cs.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err
	})
	return s
}

func (s *stack) nodeReady(want corev1.ConditionStatus) error {
	n, err := s.cs.CoreV1().Nodes().Get(context.Background(), s.node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == want {
				return nil
			}
			return fmt.Errorf("node Ready=%s (%s)", c.Status, c.Reason)
		}
	}
	return fmt.Errorf("node has no Ready condition")
}

func (s *stack) clusterSh(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cluster.sh %v: %v", args, err)
	}
}

// simGet reads a JSON document from the sim's own paths.
func (s *stack) simDo(method, path string, in, out any) error {
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.simSock)
	}}}
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://sim"+path, body)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (s *stack) simStats(t testing.TB, query string) sim.Stats {
	t.Helper()
	var st sim.Stats
	var err error
	for range 50 { // the sim may be restarting
		if err = s.simDo(http.MethodGet, sim.PathStats+query, nil, &st); err == nil {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("sim stats: %v", err)
	return st
}

// vkMetrics scrapes the VK's /metrics as the API server would (its
// kubelet client certificate).
func (s *stack) vkMetrics(t testing.TB) vkMetrics {
	t.Helper()
	m, err := s.tryVKMetrics(s.kubelet)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tryVKMetrics is vkMetrics of the VK on kubelet port, returning its error
// (a VK starting).
func (s *stack) tryVKMetrics(kubelet string) (vkMetrics, error) {
	pki := filepath.Join(s.cluster, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "apiserver-kubelet-client.crt"), filepath.Join(pki, "apiserver-kubelet-client.key"))
	if err != nil {
		return nil, err
	}
	c := http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}} //nolint:gosec // the VK's self-signed serving cert, on loopback
	resp, err := c.Get("https://127.0.0.1:" + kubelet + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	fams, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("VK metrics: %w", err)
	}
	return fams, nil
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(r)
}

// benchPod is a pod bound to the node by nodeName (the scheduler is not
// what is measured), with no service-account token (whose TokenRequest
// would be one more write per pod).
func (s *stack) benchPod(ns, name, outcome string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: map[string]string{sim.AnnotationOutcome: outcome}},
		Spec: corev1.PodSpec{
			NodeName:                     s.node,
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(false),
			Tolerations:                  []corev1.Toleration{{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists}},
			Containers:                   []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sh", "-c", "echo hi"}}},
		},
	}
}

// benchPods are n pods p-00000... of ns that run until deleted, and their
// names.
func (s *stack) benchPods(ns string, n int) ([]*corev1.Pod, []string) {
	pods, names := make([]*corev1.Pod, n), make([]string, n)
	for i := range pods {
		names[i] = fmt.Sprintf("p-%05d", i)
		pods[i] = s.benchPod(ns, names[i], sim.OutcomeRunning, nil)
	}
	return pods, names
}

// hydra is Ory Hydra started by .ci/hydra.sh.
type hydra struct{ e2eenv.Hydra }

type hydraClient struct{ id, secret string }

func startHydra(t testing.TB, dir, ttl string) hydra {
	t.Helper()
	return hydra{e2eenv.StartHydra(t, repoDir, filepath.Join(dir, "hydra"), ttl)}
}

func (h hydra) client(t testing.TB, audience string) hydraClient {
	t.Helper()
	id, secret := h.Client(t, audience)
	return hydraClient{id: id, secret: secret}
}

// vkMetrics are the VK's metric families by name.
type vkMetrics map[string]*dto.MetricFamily

// sum adds up a counter's (or a histogram's count) series whose labels
// satisfy keep (nil: all).
func (m vkMetrics) sum(name string, keep func(labels map[string]string) bool) float64 {
	f, ok := m[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, mt := range f.Metric {
		labels := map[string]string{}
		for _, l := range mt.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if keep != nil && !keep(labels) {
			continue
		}
		switch {
		case mt.Counter != nil:
			total += mt.Counter.GetValue()
		case mt.Histogram != nil:
			total += float64(mt.Histogram.GetSampleCount())
		case mt.Gauge != nil:
			total += mt.Gauge.GetValue()
		}
	}
	return total
}

// writesByResource lists the VK's writes (every method but GET) by resource.
func (m vkMetrics) writesByResource() map[string]float64 { return m.requestsByResource(true) }

// requestsByResource lists the VK's API server requests by resource: its
// writes alone, or every request (reads included) when writesOnly is false.
func (m vkMetrics) requestsByResource(writesOnly bool) map[string]float64 {
	out := map[string]float64{}
	f, ok := m["interlink_vk_apiserver_requests_total"]
	if !ok {
		return out
	}
	for _, mt := range f.Metric {
		var method, res string
		for _, l := range mt.Label {
			switch l.GetName() {
			case "method":
				method = l.GetValue()
			case "resource":
				res = l.GetValue()
			}
		}
		if !writesOnly || method != http.MethodGet {
			out[res] += mt.Counter.GetValue()
		}
	}
	return out
}
