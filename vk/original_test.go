package vk

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// load reads a testdata config as the binary does, with env as the only
// environment variables read by the original-compat checks.
func load(t *testing.T, path string, env map[string]string) (Config, []string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg := DefaultConfig()
	warnings, err := Load(&cfg, Flags{Path: path}, func(k string) string { return env[k] })
	return cfg, warnings, err
}

func hasWarning(warnings []string, sub string) bool {
	for _, w := range warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// TestOriginalConfigLoads: a VK config with every key of the original, in
// its shapes, loads with the original's meaning; the keys without effect
// are warned about, and no key is left unknown.
func TestOriginalConfigLoads(t *testing.T) {
	cfg, warnings, err := load(t, "testdata/original-full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if hasWarning(warnings, "unknown config keys") {
		t.Errorf("original keys reported unknown: %q", warnings)
	}
	if diff := cmp.Diff(Labels{"site": "cnaf", "kubernetes.io/os": "virtual-kubelet"}, cfg.NodeLabels); diff != "" {
		t.Errorf("NodeLabels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Taints{DefaultTaint, "site=cnaf:NoExecute"}, cfg.NodeTaints); diff != "" {
		t.Errorf("NodeTaints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"nvidia.com/gpu": "6", "amd.com/gpu": "1"}, cfg.Resources.Accelerators); diff != "" {
		t.Errorf("Accelerators (-want +got):\n%s", diff)
	}
	if cfg.Resources.CPU != "64" || cfg.Resources.Memory != "256Gi" || cfg.Resources.Pods != "500" {
		t.Errorf("Resources %+v", cfg.Resources)
	}
	if cfg.InterlinkEndpoint() != "https://interlink.example.org:3000" || cfg.VKTokenFile != "/opt/interlink/token" {
		t.Errorf("endpoint %s token %s", cfg.InterlinkEndpoint(), cfg.VKTokenFile)
	}
	if !cfg.TLS.Enabled || cfg.TLS.CertFile == "" || cfg.interlinkCAFromOriginal() != "/etc/interlink/tls/ca.crt" {
		t.Errorf("TLS %+v", cfg.TLS)
	}
	if cfg.KubernetesAPIAddr != "k8s.example.org" || cfg.KubernetesAPIPort != "6443" || !strings.Contains(cfg.KubernetesAPICaCrt, "BEGIN CERTIFICATE") {
		t.Errorf("Kubernetes API %q %q", cfg.KubernetesAPIAddr, cfg.KubernetesAPIPort)
	}
	if cfg.JobScriptBuilderURL != "http://builder.example.org/build" || cfg.PodCIDR.Subnet != "10.7.0.0/24" {
		t.Errorf("JobScriptBuilderURL %q PodCIDR %+v", cfg.JobScriptBuilderURL, cfg.PodCIDR)
	}
	if !cfg.Pprof.Enabled || cfg.Pprof.Address != "127.0.0.1" || cfg.Pprof.Port != "6060" {
		t.Errorf("Pprof %+v", cfg.Pprof)
	}
	// DisableCSR wins over the signer, as in the original.
	if cfg.certMode() != CertModeSelfSigned || cfg.csrSigner() != "clusterissuers.cert-manager.io/kubelet" {
		t.Errorf("cert mode %s signer %s", cfg.certMode(), cfg.csrSigner())
	}
	if level := cfg.VerboseLogging; !level {
		t.Error("VerboseLogging not read")
	}
	for _, want := range []string{"VKConfigPath", "PodIP", "SkipDownwardAPIResolution", "KubeletHTTP", "PodCIDR.MinIP",
		"Network keys ServiceCIDR, WSTunnelExecutable, WildcardDNS", "amd.com/gpu gives no node label"} {
		if !hasWarning(warnings, want) {
			t.Errorf("no warning about %s: %q", want, warnings)
		}
	}
}

// TestOriginalExampleConfig: the original's example VK config loads; its
// HTTP.Insecure (on an http URL) and KubeletHTTP.Insecure have no effect,
// and ServiceAccount is said to deliver a kubeconfig.
func TestOriginalExampleConfig(t *testing.T) {
	cfg, warnings, err := load(t, "testdata/original-example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InterlinkEndpoint() != "http://interlink:3000" || cfg.Resources.Memory != "128Gi" || cfg.Namespace != "interlink" {
		t.Errorf("config %+v", cfg)
	}
	for _, want := range []string{"HTTP.Insecure has no effect", "KubeletHTTP has no effect", "ServiceAccount interlink/virtual-kubelet"} {
		if !hasWarning(warnings, want) {
			t.Errorf("no warning %q: %q", want, warnings)
		}
	}
	if hasWarning(warnings, "unknown config keys") {
		t.Errorf("original keys reported unknown: %q", warnings)
	}
}

// TestOriginalVersions: the shapes of older originals load: 0.3.x's
// top-level capacity, and 0.4-0.6.0's numeric Available.
func TestOriginalVersions(t *testing.T) {
	cfg, warnings, err := load(t, "testdata/original-0.3.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Resources.CPU != "48" || cfg.Resources.Memory != "96Gi" || cfg.Resources.Pods != "200" || cfg.Resources.Accelerators["nvidia.com/gpu"] != "2" {
		t.Errorf("0.3 resources %+v", cfg.Resources)
	}
	// ExportPodData is a key of other binaries sharing the file: unknown here.
	if !hasWarning(warnings, "unknown config keys ignored: ExportPodData") || hasWarning(warnings, "CPU") {
		t.Errorf("warnings %q", warnings)
	}
	cfg, _, err = load(t, "testdata/original-0.5.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"intel.com/fpga": "1"}, cfg.Resources.Accelerators); diff != "" {
		t.Errorf("Accelerators (-want +got):\n%s", diff)
	}
	labels, _ := cfg.Resources.modelLabels()
	if diff := cmp.Diff(map[string]string{"intel-fpga-type": "agilex", "nvidia-gpu-type": "t4"}, labels); diff != "" {
		t.Errorf("model labels (-want +got):\n%s", diff)
	}
}

// TestOriginalConfigRefused: the original's settings this VK cannot honor
// stop it at start, with an error naming the key.
func TestOriginalConfigRefused(t *testing.T) {
	files, err := filepath.Glob("testdata/original-refused/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	for _, f := range files {
		key := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(key, func(t *testing.T) {
			_, _, err := load(t, f, nil)
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("error does not name %s: %v", key, err)
			}
		})
	}
}

// TestOurShapesStillLoad: our map and string forms are unchanged.
func TestOurShapesStillLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vk.yaml")
	yaml := "NodeLabels:\n  site: x\nNodeTaints: [\"a=b:NoSchedule\"]\nResources:\n  Accelerators:\n    nvidia.com/gpu: \"3\"\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := load(t, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeLabels["site"] != "x" || len(cfg.NodeTaints) != 1 || cfg.NodeTaints[0] != "a=b:NoSchedule" || cfg.Resources.Accelerators["nvidia.com/gpu"] != "3" {
		t.Errorf("config %+v %+v %+v", cfg.NodeLabels, cfg.NodeTaints, cfg.Resources)
	}
	// And from the environment.
	cfg, _, err = load(t, "", map[string]string{"INTERLINK_NODE_LABELS": "a=1,b=2", "INTERLINK_NODE_TAINTS": "k=v:NoExecute"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeLabels["b"] != "2" || cfg.NodeTaints[0] != "k=v:NoExecute" {
		t.Errorf("from env: %+v %+v", cfg.NodeLabels, cfg.NodeTaints)
	}
}

// TestOriginalFlagsAndEnv: the original's flags and variables.
func TestOriginalFlagsAndEnv(t *testing.T) {
	env := map[string]string{"CONFIGPATH": "testdata/original-example.yaml"}
	getenv := func(k string) string { return env[k] }
	f, err := ParseFlags(nil, getenv)
	if err != nil || f.Path != "testdata/original-example.yaml" {
		t.Errorf("CONFIGPATH: %+v %v", f, err)
	}
	env["VK_CONFIG_PATH"] = "ours.yaml"
	if f, _ := ParseFlags(nil, getenv); f.Path != "ours.yaml" {
		t.Errorf("VK_CONFIG_PATH does not win over CONFIGPATH: %+v", f)
	}
	f, err = ParseFlags([]string{"-configpath", "testdata/original-0.5.yaml", "-nodename", "flagged"}, getenv)
	if err != nil || f.Path != "testdata/original-0.5.yaml" || f.NodeName != "flagged" {
		t.Fatalf("flags: %+v %v", f, err)
	}
	t.Setenv("NODENAME", "from-env")
	t.Setenv("POD_IP", "10.1.2.3")
	t.Setenv("KUBELET_PORT", "10251")
	t.Setenv("KUBELET_URL", "0.0.0.0")
	t.Setenv("KUBECONFIG", "/etc/kube/config")
	t.Setenv("ENABLE_PPROF", "true")
	t.Setenv("PPROF_PORT", "6061")
	t.Setenv("INTERLINKURL", "http://il-env")
	t.Setenv("INTERLINKPORT", "4000")
	t.Setenv("VKTOKENFILE", "/token")
	cfg := DefaultConfig()
	if _, err := Load(&cfg, f, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "flagged" || cfg.NodeAddress != "10.1.2.3" || cfg.KubeletPort != "10251" || cfg.KubeletAddress != "0.0.0.0" ||
		cfg.Kubeconfig != "/etc/kube/config" || cfg.InterlinkEndpoint() != "http://il-env:4000" || cfg.VKTokenFile != "/token" || !cfg.Pprof.Enabled || cfg.Pprof.Port != "6061" || cfg.Pprof.Address != DefaultPprofAddress {
		t.Errorf("config %+v", cfg)
	}
	cfg = DefaultConfig()
	if _, err := Load(&cfg, Flags{}, func(string) string { return "" }); err != nil || cfg.NodeName != "from-env" {
		t.Errorf("NODENAME: %q %v", cfg.NodeName, err)
	}
}

// TestOriginalTracingEnv: ENABLE_TRACING=1 needs our OTLP/HTTP endpoint,
// and the original's OTLP/gRPC variables are refused with it.
func TestOriginalTracingEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		warn    string
	}{
		{"no endpoint", map[string]string{"ENABLE_TRACING": "1"}, "ENABLE_TRACING=1", ""},
		{"gRPC endpoint", map[string]string{"ENABLE_TRACING": "1", "INTERLINK_TRACING_ENDPOINT": "http://c:4318", "TELEMETRY_ENDPOINT": "c:4317"}, "TELEMETRY_ENDPOINT", ""},
		{"ours", map[string]string{"ENABLE_TRACING": "1", "INTERLINK_TRACING_ENDPOINT": "http://c:4318"}, "", ""},
		{"off", map[string]string{"TELEMETRY_ENDPOINT": "c:4317"}, "", "TELEMETRY_ENDPOINT have no effect"},
		{"old shared", map[string]string{"SHARED_FS": "true"}, "", "SHARED_FS has no effect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := load(t, "", tt.env)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one naming %s", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.warn != "" && !hasWarning(warnings, tt.warn):
				t.Errorf("warnings %q, want %q", warnings, tt.warn)
			}
			if tt.name == "ours" && cfg.Tracing.Endpoint != "http://c:4318" {
				t.Errorf("endpoint %q", cfg.Tracing.Endpoint)
			}
		})
	}
}

// TestOriginalNode: the node carries the original's labels, taints,
// providerID and podCIDR; NodeLabels override the defaults.
func TestOriginalNode(t *testing.T) {
	cfg, _, err := load(t, "testdata/original-full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeName = "vk-cnaf"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vk-cnaf"}}
	if err := nodeSpec(&cfg, node); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"virtual-node.interlink/type": "virtual-kubelet", "type": "virtual-kubelet", "kubernetes.io/role": "agent",
		"kubernetes.io/hostname": "vk-cnaf", "alpha.service-controller.kubernetes.io/exclude-balancer": "true",
		"node.kubernetes.io/exclude-from-external-load-balancers": "true",
		"kubernetes.io/os": "virtual-kubelet", // NodeLabels override the default linux
		"site":             "cnaf", "nvidia-gpu-type": "a100", "xilinx-fpga-type": "u250",
	} {
		if node.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, node.Labels[k], v)
		}
	}
	want := []corev1.Taint{{Key: "virtual-node.interlink/no-schedule", Value: "true", Effect: corev1.TaintEffectNoSchedule},
		{Key: "site", Value: "cnaf", Effect: corev1.TaintEffectNoExecute}}
	if diff := cmp.Diff(want, node.Spec.Taints); diff != "" {
		t.Errorf("taints (-want +got):\n%s", diff)
	}
	if node.Spec.ProviderID != "external:///vk-cnaf" || node.Spec.PodCIDR != "10.7.0.0/24" {
		t.Errorf("spec %+v", node.Spec)
	}
	if q := node.Status.Capacity["nvidia.com/gpu"]; q.String() != "6" {
		t.Errorf("gpu capacity %s", q.String())
	}
	// Without NodeLabels the os label is linux.
	def := DefaultConfig()
	node = &corev1.Node{}
	if err := nodeSpec(&def, node); err != nil || node.Labels["kubernetes.io/os"] != "linux" {
		t.Errorf("default os label %q %v", node.Labels["kubernetes.io/os"], err)
	}
}

// TestOriginalCertModes: DisableCSR and KubeletCSRSignerName choose the
// kubelet certificate as in the original (a static cert first).
func TestOriginalCertModes(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Config)
		mode   string
		signer string
	}{
		{"default", func(*Config) {}, CertModeSelfSigned, "kubernetes.io/kubelet-serving"},
		{"signer", func(c *Config) { c.KubeletCSRSignerName = "example.org/s"; c.KubeletCertDir = "/d" }, CertModeCSR, "example.org/s"},
		{"signer and DisableCSR", func(c *Config) { c.KubeletCSRSignerName = "example.org/s"; c.DisableCSR = true }, CertModeSelfSigned, "example.org/s"},
		{"static cert first", func(c *Config) {
			c.KubeletCSRSignerName = "example.org/s"
			c.KubeletCertFile, c.KubeletKeyFile = "/c", "/k"
		}, CertModeFiles, "example.org/s"},
		{"csr mode, default signer", func(c *Config) { c.KubeletCertMode = CertModeCSR; c.KubeletCertDir = "/d" }, CertModeCSR, "kubernetes.io/kubelet-serving"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if cfg.certMode() != tt.mode || cfg.csrSigner() != tt.signer {
				t.Errorf("mode %s signer %s, want %s %s", cfg.certMode(), cfg.csrSigner(), tt.mode, tt.signer)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.KubeletCertMode, cfg.KubeletCertDir, cfg.DisableCSR = CertModeCSR, "/d", true
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "DisableCSR") {
		t.Errorf("DisableCSR with csr mode: %v", err)
	}
}

// TestOriginalInterlinkTLS: the TLS block and HTTP.CaCert (DER, as the
// original reads it, or PEM) reach the client's config.
func TestOriginalInterlinkTLS(t *testing.T) {
	dir := t.TempDir()
	der := testCert(t)
	derPath, pemPath := filepath.Join(dir, "ca.der"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(derPath, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.InterlinkURL = "https://il"
	cfg.HTTP.CaCert = derPath
	cc, cleanup, err := interlinkClientConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cc.CAFile)
	if blk, _ := pem.Decode(b); err != nil || blk == nil || string(blk.Bytes) != string(der) {
		t.Errorf("DER CA not handed over as PEM: %s %v", cc.CAFile, err)
	}
	cleanup()
	if _, err := os.Stat(cc.CAFile); !os.IsNotExist(err) {
		t.Errorf("PEM copy left behind: %v", err)
	}
	cfg.HTTP.CaCert = pemPath
	if cc, _, err := interlinkClientConfig(&cfg); err != nil || cc.CAFile != pemPath || cc.CertFile != "" {
		t.Errorf("PEM CA: %+v %v", cc, err)
	}
	cfg.HTTP.CaCert = ""
	cfg.TLS = TLSConfig{Enabled: true, CertFile: "/c.pem", KeyFile: "/k.pem", CACertFile: pemPath}
	if cc, _, err := interlinkClientConfig(&cfg); err != nil || cc.CAFile != pemPath || cc.CertFile != "/c.pem" || cc.KeyFile != "/k.pem" {
		t.Errorf("TLS block: %+v %v", cc, err)
	}
	cfg.InterlinkCAFile = "/other.pem"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "InterlinkCAFile") {
		t.Errorf("two different CAs: %v", err)
	}
}

func testCert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestKubeconfigForRemotePods: with KubernetesApiAddr and KubernetesApiPort
// the kubeconfig delivered to pods points there, with KubernetesApiCaCrt.
func TestKubeconfigForRemotePods(t *testing.T) {
	rc := &rest.Config{Host: "https://10.96.0.1:443", TLSClientConfig: rest.TLSClientConfig{CAFile: "/var/run/ca.crt"}}
	cfg := DefaultConfig()
	if got := podsRestConfig(rc, &cfg); got != rc {
		t.Errorf("changed without KubernetesApiAddr: %+v", got)
	}
	cfg.KubernetesAPIAddr, cfg.KubernetesAPIPort, cfg.KubernetesAPICaCrt = "k8s.example.org", "6443", "PEM"
	got := podsRestConfig(rc, &cfg)
	if got.Host != "https://k8s.example.org:6443" || string(got.CAData) != "PEM" || got.CAFile != "" || rc.Host != "https://10.96.0.1:443" {
		t.Errorf("rest config %+v (given %+v)", got, rc)
	}
}

// TestValidationOrderIsStable: the errors about a map's entries come out
// in the same order every time (by key), not in map order.
func TestValidationOrderIsStable(t *testing.T) {
	var first string
	for range 20 {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		cfg.InterlinkURL = "http://127.0.0.1:3000"
		cfg.NodeLabels = Labels{"bad key 1": "x", "bad key 2": "y", "bad key 3": "z", "bad key 4": "w"}
		err := cfg.Validate()
		if err == nil {
			t.Fatal("invalid labels accepted")
		}
		if first == "" {
			first = err.Error()
		} else if err.Error() != first {
			t.Fatalf("the errors changed order:\n%s\n---\n%s", first, err)
		}
	}
}
