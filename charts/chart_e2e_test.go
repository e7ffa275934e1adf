//go:build e2e

package charts

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

const (
	// kubeVersion is what helm template and helm lint assume (the cached helm
	// is built without its client-go version stamp, so it would say v1.20).
	kubeVersion = "1.37.2"
	release     = "vk"
	namespace   = "interlink"
	nodeName    = "chart-e2e"
	// The chart's objects are named <release>-interlink.
	fullname = release + "-interlink"
	saUser   = "system:serviceaccount:" + namespace + ":" + fullname
)

var (
	binDir  string // interlink, interlink-sim, interlink-vk
	k8sBin  string // kubectl, helm and the control plane
	repoDir string
)

func TestMain(m *testing.M) {
	e2eenv.Main(m, &repoDir, &binDir, &k8sBin, "interlink-chart-e2e-bin-",
		"functions/cmd/interlink",
		"sidecars/sim/cmd/interlink-sim",
		"vk/cmd/interlink-vk",
		"vk/cmd/interlink-token-refresher",
		"sidecars/docker/cmd/interlink-docker")
}

// command runs a program with args (never through a shell) and returns its
// combined output.
func command(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func helm(env []string, args ...string) (string, error) {
	return command(env, filepath.Join(k8sBin, "helm"), args...)
}

func scenarios(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml scenarios: %v", err)
	}
	return files
}

// render is helm template of the chart with a values file.
func render(t *testing.T, ns, valuesFile string, extra ...string) string {
	t.Helper()
	args := append([]string{"template", release, chartDir, "-n", ns, "--kube-version", kubeVersion, "-f", valuesFile}, extra...)
	out, err := helm(nil, args...)
	if err != nil {
		t.Fatalf("helm template -f %s: %v\n%s", valuesFile, err, out)
	}
	return out
}

// TestE2EChartLintAndTemplate lints and renders every scenario.
func TestE2EChartLintAndTemplate(t *testing.T) {
	for _, f := range scenarios(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, err := helm(nil, "lint", chartDir, "--strict", "--kube-version", kubeVersion, "-f", f); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			out := render(t, namespace, f)
			for _, kind := range []string{"kind: Deployment", "kind: ConfigMap", "kind: ClusterRole", "kind: ServiceAccount"} {
				if !strings.Contains(out, kind) {
					t.Errorf("no %q in the rendered scenario", kind)
				}
			}
		})
	}
}

// TestE2EChartRefusesBadValues: values that break the schema, or the
// chart's own rules, are refused with a message naming the value.
func TestE2EChartRefusesBadValues(t *testing.T) {
	remote := filepath.Join(chartDir, "ci", "remote-values.yaml")
	for _, tc := range []struct {
		name string
		set  []string
		want []string
	}{
		{"unknown top-level key", []string{"nodname=x"}, []string{"schema", "additional properties 'nodname' not allowed"}},
		{"bad taint effect", []string{"node.taints[0].key=a", "node.taints[0].effect=Sometimes"}, []string{"schema", "/node/taints/0/effect", "value must be one of 'NoSchedule'"}},
		{"bad kubelet cert mode", []string{"kubeletCert.mode=magic"}, []string{"schema", "/kubeletCert/mode", "value must be one of 'self-signed', 'csr', 'files'"}},
		{"port out of range", []string{"interlink.port=70000"}, []string{"schema", "/interlink/port", "want 65,535"}},
		{"node name not a DNS name", []string{"nodeName=Not_A_Node"}, []string{"schema", "/nodeName"}},
		{"cpu not a quantity", []string{"node.cpu=lots"}, []string{"schema", "/node/cpu"}},
		{"url not http(s)", []string{"interlink.url=ftp://x"}, []string{"schema", "/interlink/url"}},
		{"remote mode without a url", []string{"interlink.url="}, []string{"interlink.url is required"}},
		{"remote mode without a token", []string{"token.existingSecret="}, []string{"set token.existingSecret or token.refresher.enabled=true"}},
		{"refresher without a token URL", []string{"token.refresher.enabled=true"}, []string{"token.refresher.tokenURL and token.refresher.clientID"}},
		{"files mode without a Secret", []string{"kubeletCert.mode=files"}, []string{"kubeletCert.existingSecret"}},
		// interLink in the pod accepts only the generated token's tokens.csv.
		{"in-cluster mode with an existing token Secret", []string{"inCluster.enabled=true"}, []string{"token.existingSecret is for remote mode"}},
		{"in-cluster refresher without an issuer for interLink", []string{"inCluster.enabled=true", "token.existingSecret=", "token.refresher.enabled=true",
			"token.refresher.tokenURL=https://issuer.example.org/token", "token.refresher.clientID=vk"}, []string{"inCluster.interlink.config.Auth.Issuers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", release, chartDir, "--kube-version", kubeVersion, "-f", remote}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := helm(nil, args...)
			if err == nil {
				t.Fatalf("helm template --set %v was accepted", tc.set)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("message lacks %q:\n%s", w, out)
				}
			}
			t.Logf("refused: %s", strings.TrimSpace(out))
		})
	}
}

// TestE2EChartConfigsPassTheBinariesValidation: every config file the chart
// renders (the VK's, the refresher's, interlink's and the sidecar's) passes
// its binary's own validation (--config-test), for every scenario. The files
// the pod would mount from Secrets are given as temporary files.
func TestE2EChartConfigsPassTheBinariesValidation(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("x,node\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mounted := []string{"INTERLINK_AUTH_STATIC_TOKENS_FILE=" + secret, "INTERLINK_TOKEN_CLIENT_SECRET_FILE=" + secret,
		"INTERLINK_TOKEN_REFRESH_TOKEN_FILE=" + secret, "INTERLINK_SIDECAR_TOKEN_FILE=" + secret}
	for _, f := range scenarios(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal([]byte(render(t, namespace, f, "--show-only", "templates/configmap.yaml")), &cm); err != nil {
				t.Fatal(err)
			}
			binaries := map[string]string{"vk.yaml": "interlink-vk", "refresher.yaml": "interlink-token-refresher", "interlink.yaml": "interlink"}
			if v, err := chartValues(f); err == nil && strings.Contains(v, "interlink-docker") {
				binaries["sidecar.yaml"] = "interlink-docker"
			} else {
				binaries["sidecar.yaml"] = "interlink-sim"
			}
			for key, data := range cm.Data {
				bin, ok := binaries[key]
				if !ok {
					t.Errorf("config %s has no binary to check it", key)
					continue
				}
				path := filepath.Join(dir, key)
				if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := command(mounted, filepath.Join(binDir, bin), "--config-test", "--config", path); err != nil {
					t.Errorf("%s --config-test of the chart's %s: %v\n%s", bin, key, err, out)
				}
			}
		})
	}
}

func chartValues(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// kustomizeBase renders the kustomize base from the chart.
func kustomizeBase(t *testing.T) string {
	t.Helper()
	out, err := helm(nil, "template", "interlink", chartDir, "-n", "interlink", "--kube-version", kubeVersion,
		"-f", "kustomize/values.yaml", "--skip-tests")
	if err != nil {
		t.Fatalf("helm template of the kustomize base: %v\n%s", err, out)
	}
	return out
}

// TestE2EKustomizeBaseIsFresh fails when kustomize/base/interlink.yaml is not
// what the chart renders from kustomize/values.yaml (make generate).
func TestE2EKustomizeBaseIsFresh(t *testing.T) {
	want := kustomizeBase(t)
	path := "kustomize/base/interlink.yaml"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("%s is stale; run make generate (-rendered +file):\n%s", path, diff)
	}
}

// cluster is a local control plane started by examples/cluster/cluster.sh.
type cluster struct {
	dir, kubeconfig string
	cs              kubernetes.Interface
}

func startCluster(t *testing.T, dir string) *cluster {
	t.Helper()
	c := &cluster{dir: filepath.Join(dir, "cluster")}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	// Audit what the VK's ServiceAccount does, and only that.
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["`+saUser+`"]
  - level: None
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = command(nil, filepath.Join(repoDir, "examples/cluster/cluster.sh"), "down", c.dir) })
	if out, err := command([]string{"CLUSTER_AUDIT_POLICY=" + policy}, filepath.Join(repoDir, "examples/cluster/cluster.sh"), "up", c.dir); err != nil {
		t.Fatalf("control plane: %v\n%s", err, out)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c.cs = kubernetes.NewForConfigOrDie(rc)
	return c
}

func (c *cluster) kubectl(args ...string) (string, error) {
	return command(nil, filepath.Join(k8sBin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
}

// kubectlStdin runs kubectl with input on its standard input.
func (c *cluster) kubectlStdin(input string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(k8sBin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) helm(args ...string) (string, error) {
	return helm([]string{"KUBECONFIG=" + c.kubeconfig, "HELM_CACHE_HOME=" + filepath.Join(c.dir, "helm-cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(c.dir, "helm-config"), "HELM_DATA_HOME=" + filepath.Join(c.dir, "helm-data")}, args...)
}

// proc is a daemon of the test, stopped by PID.
// proc is one daemon of a test.
type proc = e2eenv.Process

func startProc(t *testing.T, dir, name string, env []string) *proc {
	t.Helper()
	return e2eenv.StartProcess(t, filepath.Join(dir, name+".log"), env, filepath.Join(binDir, name))
}

// TestE2EChartOnARealAPIServer: the chart's manifests against a real control
// plane (server-side dry-run of every scenario, a real helm install), then
// the VK run outside the cluster with exactly the chart's ServiceAccount in
// front of a real interlink and interlink-sim.
func TestE2EChartOnARealAPIServer(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, dir)
	ctx := context.Background()

	t.Run("PrometheusOperatorCRDs", func(t *testing.T) {
		out, err := c.kubectl("create", "-f", "testdata/crds/")
		if err != nil {
			t.Fatalf("kubectl create the CRDs: %v\n%s", err, out)
		}
		out, err = c.kubectl("wait", "--for", "condition=Established", "--timeout", "60s",
			"crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
		if err != nil {
			t.Fatalf("CRDs not established: %v\n%s", err, out)
		}
	})

	t.Run("ServerSideDryRunOfEveryScenario", func(t *testing.T) {
		if out, err := c.kubectl("create", "namespace", "dry-run"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		for _, f := range scenarios(t) {
			t.Run(filepath.Base(f), func(t *testing.T) {
				// Hooks and helm test pods are in helm template's output.
				manifest := render(t, "dry-run", f)
				out, err := c.kubectlStdin(manifest, "apply", "--dry-run=server", "-f", "-")
				if err != nil {
					t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
				}
				n := strings.Count(out, "(server dry run)")
				if n == 0 || n != strings.Count(manifest, "\nkind: ") {
					t.Errorf("%d objects passed the dry run, %d rendered:\n%s", n, strings.Count(manifest, "\nkind: "), out)
				}
				t.Logf("%d objects pass a server-side dry run", n)
			})
		}
	})

	// The release the VK runs with: remote mode pointed at the test's
	// interlink, the token from a Secret, the serving certificate from the
	// CSR API, the API server's kubelet client CA.
	token := "chart-e2e-token-" + fmt.Sprint(time.Now().UnixNano())
	installSets := []string{"--set", "nodeName=" + nodeName, "--set", "interlink.url=http://127.0.0.1",
		"--set", "token.existingSecret=interlink-vk-token",
		"--set", "kubeletCert.mode=csr", "--set", "kubeletCert.clientCAConfigMap=kube-root-ca.crt",
		"--set", "tests.image=busybox"}
	t.Run("HelmInstall", func(t *testing.T) {
		if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.cs.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "interlink-vk-token"},
			StringData: map[string]string{"token": token}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := c.helm(append([]string{"install", release, chartDir, "-n", namespace}, installSets...)...)
		if err != nil {
			t.Fatalf("helm install: %v\n%s", err, out)
		}
		t.Logf("helm install in %s", time.Since(start).Round(time.Millisecond))
		if !strings.Contains(out, "kubectl get node "+nodeName) {
			t.Errorf("NOTES do not tell how to check the node:\n%s", out)
		}
	})

	t.Run("KustomizeOverlaysServerSideDryRun", func(t *testing.T) {
		// After HelmInstall: the namespace exists, as it must for a dry run.
		dirs, _ := filepath.Glob("kustomize/overlays/*")
		for _, d := range append([]string{"kustomize/base"}, dirs...) {
			out, err := c.kubectl("apply", "-k", d, "--dry-run=server")
			if err != nil {
				t.Errorf("kubectl apply -k %s --dry-run=server: %v\n%s", d, err, out)
				continue
			}
			t.Logf("%s: %d objects pass a server-side dry run", d, strings.Count(out, "(server dry run)"))
		}
	})

	// The VK outside the cluster, with the chart's ServiceAccount and config.
	vkDir := filepath.Join(dir, "vk")
	if err := os.MkdirAll(vkDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var vk *proc
	var vkEnv []string
	kubeletPort := e2eenv.FreePort(t)
	parent := t
	t.Run("VKWithTheChartsServiceAccount", func(t *testing.T) {
		kubeconfig := serviceAccountKubeconfig(t, c, vkDir, fullname)
		// The chart's own VK config, as its pod would read it.
		cm, err := c.cs.CoreV1().ConfigMaps(namespace).Get(ctx, fullname, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vkConfig := filepath.Join(vkDir, "vk.yaml")
		if err := os.WriteFile(vkConfig, []byte(cm.Data["vk.yaml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		tokenFile, tokensCSV := filepath.Join(vkDir, "token"), filepath.Join(vkDir, "tokens.csv")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tokensCSV, []byte(token+","+nodeName+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		simSock, ilPort := filepath.Join(vkDir, "sim.sock"), e2eenv.FreePort(t)
		startProc(parent, vkDir, "interlink-sim", []string{"INTERLINK_SIM_LISTEN=unix://" + simSock, "INTERLINK_SIM_RUN_DURATION=2s"})
		startProc(parent, vkDir, "interlink", []string{"SIDECARSERVICE=sim", "SIDECARURL=unix://" + simSock, "INTERLINKPORT=" + ilPort,
			"INTERLINK_AUTH_STATIC_TOKENS_FILE=" + tokensCSV})
		// What differs outside the pod: the kubeconfig (the pod would use its
		// mounted token), file paths and loopback ports.
		vkEnv = []string{"VK_CONFIG_PATH=" + vkConfig, "KUBECONFIG=" + kubeconfig,
			"INTERLINKPORT=" + ilPort, "VKTOKENFILE=" + tokenFile, "POD_IP=127.0.0.1", "KUBELET_PORT=" + kubeletPort,
			"INTERLINK_KUBELET_CERT_DIR=" + filepath.Join(vkDir, "pki"),
			"INTERLINK_KUBELET_CLIENT_CA_FILE=" + filepath.Join(c.dir, "pki/ca.crt"),
			"INTERLINK_STATUS_INTERVAL=1s", "INTERLINK_PING_INTERVAL=1s"}
		vk = startProc(parent, vkDir, "interlink-vk", vkEnv)
		approveCtx, stopApprover := context.WithCancel(ctx)
		parent.Cleanup(stopApprover)
		go approveCSRs(approveCtx, c)
		start := time.Now()
		nodeReady(t, c)
		t.Logf("node %s registered and Ready %s after the VK started", nodeName, time.Since(start).Round(time.Millisecond))
	})
	if vk == nil {
		t.FailNow()
	}

	t.Run("PodEndToEnd", func(t *testing.T) {
		podEndToEnd(t, c, kubeletPort)
	})

	t.Run("HelmTest", func(t *testing.T) {
		// templates/tests: a pod on the virtual node, run through interLink.
		out, err := c.helm("test", release, "-n", namespace, "--timeout", "2m")
		if err != nil {
			t.Fatalf("helm test: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Phase:          Succeeded") {
			t.Errorf("helm test: %s", out)
		}
	})

	t.Run("CanIGrantsOnlyWhatTheVKUses", func(t *testing.T) {
		var b strings.Builder
		for _, ns := range []string{namespace, "kube-node-lease"} {
			out, err := c.kubectl("auth", "can-i", "--list", "--as", saUser, "-n", ns)
			if err != nil {
				t.Fatalf("kubectl auth can-i --list: %v\n%s", err, out)
			}
			// Sorted: kubectl lists rules in no stable order. Self-reviews,
			// clustertrustbundles and the non-resource URLs are every
			// authenticated user's.
			lines := strings.Split(strings.TrimSpace(out), "\n")
			header, rules := lines[0], lines[1:]
			sort.Strings(rules)
			fmt.Fprintf(&b, "# kubectl auth can-i --list --as %s -n %s\n%s\n%s\n", saUser, ns, header, strings.Join(slices.Compact(rules), "\n"))
		}
		golden := "testdata/can-i.txt"
		if *update {
			if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), b.String()); diff != "" {
			t.Errorf("the chart's grants changed (-%s +now); review, then run with -update:\n%s", golden, diff)
		}
		// Beyond the golden list: nothing cluster-wide that a VK never needs.
		for _, verb := range [][]string{{"create", "pods"}, {"update", "secrets"}, {"delete", "nodes/other-node"},
			{"create", "clusterrolebindings"}, {"get", "nodes/proxy"}, {"create", "pods/exec"}, {"delete", "leases/other-node", "-n", "kube-node-lease"}} {
			out, err := c.kubectl(append([]string{"auth", "can-i", "--quiet", "--as", saUser}, verb...)...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("kubectl auth can-i %v: %v %s, want no (exit status 1)", verb, err, out)
			}
		}
	})

	t.Run("VKDeletesItsNodeOnSIGTERM", func(t *testing.T) {
		vk.Stop(syscall.SIGTERM)
		if code := vk.ExitCode(); code != 0 {
			t.Errorf("the VK exited with %d after SIGTERM", code)
		}
		_, err := c.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("node %s after the VK's graceful stop: %v, want NotFound", nodeName, err)
		}
	})

	t.Run("AuditLogMatchesTheRBAC", func(t *testing.T) {
		auditMatchesRBAC(t, c)
	})

	t.Run("PreDeleteHookWithItsOwnServiceAccount", func(t *testing.T) {
		// The VK again (the release is still installed), with a running pod.
		vk = startProc(parent, vkDir, "interlink-vk", vkEnv)
		nodeReady(t, c)
		preDeleteHook(t, c, vkDir, installSets)
		vk.Stop(syscall.SIGTERM)
		if _, err := c.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("node %s after the hook and the VK's stop: %v, want NotFound", nodeName, err)
		}
	})
}

// nodeReady waits for the virtual node to be Ready.
func nodeReady(t *testing.T, c *cluster) {
	t.Helper()
	e2eenv.Eventually(t, "node Ready", 60*time.Second, func() error {
		n, err := c.cs.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", n.Status.Conditions)
	})
}

// preDeleteHook runs the chart's pre-delete hook as its Job would (no
// kubelet runs the Job here): its ServiceAccount, ClusterRole and binding
// are created from the chart, and each of the Job's containers' kubectl
// command lines is run, in order, with a TokenRequest token of that
// ServiceAccount, while the VK runs a pod on the node. The node must be
// cordoned first, the pod then gone (deleted through the VK, which cancels
// its job) and then the node:
// proof that the hook's RBAC is enough for what its commands do.
func preDeleteHook(t *testing.T, c *cluster, dir string, sets []string) {
	ctx := context.Background()
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: before-uninstall, namespace: default, annotations: {interlink.io/sim-outcome: running}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: ` + nodeName + `}
  tolerations: [{key: virtual-node.interlink/no-schedule, operator: Exists}]
  containers: [{name: main, image: busybox}]
`
	if out, err := c.kubectlStdin(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	e2eenv.Eventually(t, "pod before-uninstall Running", 60*time.Second, func() error {
		p, err := c.cs.CoreV1().Pods("default").Get(ctx, "before-uninstall", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %q", p.Status.Phase)
		}
		return nil
	})

	out, err := helm(nil, append([]string{"template", release, chartDir, "-n", namespace, "--kube-version", kubeVersion,
		"--show-only", "templates/pre-delete-hook.yaml"}, sets...)...)
	if err != nil {
		t.Fatalf("helm template of the hook: %v\n%s", err, out)
	}
	var job struct {
		Spec struct {
			Template struct {
				Spec struct {
					ServiceAccountName string             `json:"serviceAccountName"`
					InitContainers     []corev1.Container `json:"initContainers"`
					Containers         []corev1.Container `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	var rbac []string
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Job":
			if err := yaml.Unmarshal([]byte(doc), &job); err != nil {
				t.Fatal(err)
			}
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			rbac = append(rbac, doc)
		}
	}
	spec := job.Spec.Template.Spec
	if len(rbac) != 3 || spec.ServiceAccountName == "" || len(spec.Containers) == 0 {
		t.Fatalf("the hook renders %d RBAC objects and a Job %+v:\n%s", len(rbac), spec, out)
	}
	if out, err := c.kubectlStdin(strings.Join(rbac, "\n---\n"), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of the hook's ServiceAccount and RBAC: %v\n%s", err, out)
	}
	kubeconfig := serviceAccountKubeconfig(t, c, t.TempDir(), spec.ServiceAccountName)
	start := time.Now()
	for _, ctr := range append(spec.InitContainers, spec.Containers...) {
		if len(ctr.Command) > 0 {
			t.Fatalf("container %s has a command; the test runs kubectl with its args", ctr.Name)
		}
		out, err := command(nil, filepath.Join(k8sBin, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, ctr.Args...)...)
		if err != nil {
			t.Fatalf("the hook's %s (kubectl %s) as %s: %v\n%s", ctr.Name, strings.Join(ctr.Args, " "), spec.ServiceAccountName, err, out)
		}
		if strings.Contains(out, "forbidden") {
			t.Errorf("the hook's %s was refused something (kubectl retried): %s", ctr.Name, out)
		}
		t.Logf("%s: %s", ctr.Name, strings.TrimSpace(out))
		if ctr.Name == "cordon" {
			n, err := c.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil || !n.Spec.Unschedulable {
				t.Errorf("node %s after the hook's cordon: %v, want it unschedulable", nodeName, err)
			}
		}
	}
	if _, err := c.cs.CoreV1().Pods("default").Get(ctx, "before-uninstall", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod before-uninstall after the hook: %v, want NotFound", err)
	}
	if _, err := c.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node %s after the hook: %v, want NotFound", nodeName, err)
	}
	t.Logf("the hook deleted the node's pod, then the node, in %s", time.Since(start).Round(time.Millisecond))
}

// serviceAccountKubeconfig writes a kubeconfig (mode 0600) for one of the
// chart's ServiceAccounts with a token from the TokenRequest API.
func serviceAccountKubeconfig(t *testing.T, c *cluster, dir, sa string) string {
	t.Helper()
	out, err := c.kubectl("create", "token", sa, "-n", namespace, "--duration", "2h")
	if err != nil {
		t.Fatalf("kubectl create token (TokenRequest): %v", err) // the output would be the token
	}
	admin, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cur := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: cur.Server, CertificateAuthority: cur.CertificateAuthority}
	cfg.AuthInfos["vk"] = &clientcmdapi.AuthInfo{Token: strings.TrimSpace(out)}
	cfg.Contexts["vk"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "vk"}
	cfg.CurrentContext = "vk"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// approveCSRs approves kubelet-serving CSRs, as a cluster admin would.
func approveCSRs(ctx context.Context, c *cluster) {
	for ctx.Err() == nil {
		out, err := c.kubectl("get", "csr", "-o", "jsonpath={range .items[?(@.spec.signerName==\"kubernetes.io/kubelet-serving\")]}{.metadata.name}{\"\\n\"}{end}")
		if err == nil {
			for _, name := range strings.Fields(out) {
				_, _ = c.kubectl("certificate", "approve", name)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// podEndToEnd runs a pod with a ConfigMap, a Secret and a projected token on
// the node, reads its logs through the kubelet API, deletes a running pod,
// and reads the VK's metrics with a bearer token: every path of the RBAC.
func podEndToEnd(t *testing.T, c *cluster, kubeletPort string) {
	ctx := context.Background()
	manifest := `apiVersion: v1
kind: ConfigMap
metadata: {name: hello-config, namespace: default}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: hello-secret, namespace: default}
stringData: {password: not-a-real-password}
---
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: default}
spec:
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: ` + nodeName + `}
  tolerations: [{key: virtual-node.interlink/no-schedule, operator: Exists}]
  containers:
    - name: main
      image: busybox
      command: [sh, -c, echo hi]
      env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: hello-config, key: greeting}}}]
      volumeMounts: [{name: secret, mountPath: /secret}]
  volumes: [{name: secret, secret: {secretName: hello-secret}}]
---
apiVersion: v1
kind: Pod
metadata: {name: forever, namespace: default, annotations: {interlink.io/sim-outcome: running}}
spec:
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: ` + nodeName + `}
  tolerations: [{key: virtual-node.interlink/no-schedule, operator: Exists}]
  containers: [{name: main, image: busybox}]
`
	start := time.Now()
	if out, err := c.kubectlStdin(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	pods := c.cs.CoreV1().Pods("default")
	phase := func(name string, want corev1.PodPhase) func() error {
		return func() error {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != want {
				return fmt.Errorf("phase %q %s", p.Status.Phase, p.Status.Message)
			}
			return nil
		}
	}
	e2eenv.Eventually(t, "pod hello Succeeded", 60*time.Second, phase("hello", corev1.PodSucceeded))
	t.Logf("kubectl apply -> pod Succeeded through the chart's VK: %s", time.Since(start).Round(time.Millisecond))
	var logs string
	e2eenv.Eventually(t, "kubectl logs through the kubelet API", 30*time.Second, func() error {
		out, err := c.kubectl("logs", "hello", "-n", "default")
		logs = out
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	for _, want := range []string{"secret/hello-secret[password]", "projected/kube-api-access-"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	e2eenv.Eventually(t, "pod forever Running", 60*time.Second, phase("forever", corev1.PodRunning))
	if out, err := c.kubectl("delete", "pod", "forever", "-n", "default", "--grace-period=1", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("kubectl delete pod: %v\n%s", err, out)
	}
	// The kubelet API's /metrics with a bearer token: TokenReview, then
	// SubjectAccessReview (nodes/metrics), both by the VK's ServiceAccount.
	admin, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var bearer string
	for _, a := range admin.AuthInfos {
		bearer = a.Token
	}
	code, err := curlWithBearer("https://127.0.0.1:"+kubeletPort+"/metrics", bearer)
	if err != nil || code != "200" {
		t.Errorf("GET /metrics with a bearer token: %q %v", code, err)
	}
}

// curlWithBearer GETs url with the token in a header read from standard
// input (never on the command line) and returns the status code.
func curlWithBearer(url, token string) (string, error) {
	cmd := exec.Command("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H", "@-", url)
	cmd.Stdin = strings.NewReader("Authorization: Bearer " + token + "\n")
	out, err := cmd.Output()
	return string(out), err
}

// auditEvent is what the test reads of an audit log line.
type auditEvent struct {
	Verb      string                    `json:"verb"`
	User      struct{ Username string } `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		APIGroup    string `json:"apiGroup"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// auditMatchesRBAC reads what the VK's ServiceAccount did (the API server's
// audit log) and checks it against the chart's ClusterRole and Role: nothing
// was refused, and every granted verb was used, but for the ones listed
// with the reason they did not come up here.
func auditMatchesRBAC(t *testing.T, c *cluster) {
	ctx := context.Background()
	f, err := os.Open(filepath.Join(c.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	used := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit log: %v", err)
		}
		if e.User.Username != saUser || e.ObjectRef == nil {
			continue
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		key := e.Verb + " " + e.ObjectRef.APIGroup + "/" + res
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("refused to the VK: %s %s/%s", key, e.ObjectRef.Namespace, e.ObjectRef.Name)
		}
		used[key]++
	}
	if len(used) == 0 {
		t.Fatal("the audit log holds no request of the VK's ServiceAccount")
	}
	cr, err := c.cs.RbacV1().ClusterRoles().Get(ctx, fullname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role, err := c.cs.RbacV1().Roles("kube-node-lease").Get(ctx, fullname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Granted, and needed, but not exercised by this run.
	notHere := map[string]string{
		"patch /nodes":    "taints are patched only when interLink's ping reports taints (the sim reports none)",
		"create /events":  "only warning events are recorded, and this run has none",
		"patch /events":   "an event is patched only when it repeats",
		"get /configmaps": "read from the API server only when the informer cache lacks one",
		"get /secrets":    "read from the API server only when the informer cache lacks one",
		// client-go's informers list through a watch (WatchList streaming)
		// on this API server; list is what they fall back to on others.
		"list /pods": "informers list with a streaming watch here", "list /configmaps": "informers list with a streaming watch here",
		"list /secrets": "informers list with a streaming watch here", "list /services": "informers list with a streaming watch here",
	}
	var unused []string
	for _, r := range append(cr.Rules, role.Rules...) {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					key := v + " " + g + "/" + res
					if used[key] == 0 {
						if why, ok := notHere[key]; ok {
							t.Logf("granted, not exercised here: %s (%s)", key, why)
							continue
						}
						unused = append(unused, key)
					}
				}
			}
		}
	}
	if len(unused) > 0 {
		t.Errorf("granted but never used by the VK: %v", unused)
	}
	var lines []string
	for k, n := range used {
		lines = append(lines, fmt.Sprintf("%6d %s", n, k))
	}
	sort.Strings(lines)
	t.Logf("requests of the VK's ServiceAccount, by verb and resource:\n%s", strings.Join(lines, "\n"))
}
