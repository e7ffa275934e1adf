//go:build e2e

package installer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"sigs.k8s.io/yaml"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// The installer tier: interlink-installer is run as a user would run it,
// its units pass systemd-analyze verify (Debian's systemd; PID 1 here is
// not systemd, so the commands in ExecStart are started directly, as the
// unit says: its user, its environment, its arguments), the remote side it
// wrote answers /pinglink through interlink's embedded proxy with a real
// sidecar behind (Docker on a private dockerd; SLURM on a private
// slurm-wlm), and its Helm values install on a real control plane.

const kubeVersion = "1.37.2" // the cached helm lacks its client-go version stamp

var (
	repoDir  string
	buildErr error
	binDir   string
	once     sync.Once
)

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	repoDir = filepath.Dir(filepath.Dir(wd))
	base, err := os.MkdirTemp("", "interlink-installer-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// '%' in the binaries' directory: the units must escape it.
	binDir = filepath.Join(base, "bin%1")
	code := m.Run()
	_ = os.RemoveAll(base)
	os.Exit(code)
}

func needCommand(t *testing.T, name, install string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		e2eenv.Prerequisite(t, "%s (run %s)", name, install)
	}
}

// build compiles the binaries the units name, once.
func build(t *testing.T) {
	t.Helper()
	once.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/",
			"./functions/cmd/interlink", "./functions/cmd/interlink-installer", "./sidecars/docker/cmd/interlink-docker",
			"./sidecars/slurm/cmd/interlink-slurm", "./sidecars/slurm/cmd/interlink-envexec", "./sidecars/slurm/cmd/interlink-prober",
			"./vk/cmd/interlink-token-refresher")
		cmd.Dir = repoDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func currentUser(t *testing.T) string {
	me, err := osuser.Current()
	if err != nil {
		t.Fatal(err)
	}
	return me.Username
}

// script runs a .ci script or examples/cluster/cluster.sh, failing the test
// on error.
func script(t *testing.T, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoDir, path), args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v", path, strings.Join(args, " "), err)
	}
	return out.String()
}

// install runs interlink-installer with an answers file, as a user would
// (no terminal: no prompts), and returns what it printed.
func install(t *testing.T, answers map[string]any, extra ...string) string {
	t.Helper()
	raw, err := yaml.Marshal(answers)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "answers.yaml")
	if err := os.WriteFile(f, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "interlink-installer"), append([]string{"--answers", f}, extra...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("interlink-installer: %v\n%s", err, out)
	}
	t.Logf("interlink-installer said:\n%s", out)
	return string(out)
}

// verifyUnits runs systemd-analyze verify: it must pass and say nothing
// (an unknown key, bad quoting or a missing executable is a message).
func verifyUnits(t *testing.T, units ...string) {
	t.Helper()
	cmd := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...)
	cmd.Dir = filepath.Dir(units[0])
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify %v: %v\n%s", units, err, out)
	}
	for _, u := range units {
		out, _ := exec.Command("systemd-analyze", "security", "--offline=yes", u).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s:\n%s", u, out)
		}
		level, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("systemd-analyze security: %s exposure %.1f", filepath.Base(u), level)
		if level > 3.0 {
			t.Errorf("%s: exposure %.1f, want at most 3.0 (systemd's \"OK\")", u, level)
		}
	}
}

// service is a unit's command as systemd would start it.
type started struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

// startUnit starts the ExecStart of a unit file directly, with the unit's
// Environment= and User= (which must be the current user here).
func startUnit(t *testing.T, path string, extraArgs ...string) *started {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatal(err)
	}
	var argv []string
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "USER=" + currentUser(t)}
	for _, o := range opts {
		switch o.Name {
		case "ExecStart":
			if argv, err = splitExec(o.Value); err != nil {
				t.Fatalf("%s: ExecStart: %v", path, err)
			}
		case "Environment":
			kv, err := splitEnv(o.Value)
			if err != nil {
				t.Fatalf("%s: Environment: %v", path, err)
			}
			for k, v := range kv {
				env = append(env, k+"="+v)
			}
		case "User":
			if o.Value != currentUser(t) {
				t.Fatalf("%s: User=%s, but the test runs as %s", path, o.Value, currentUser(t))
			}
		}
	}
	if len(argv) == 0 {
		t.Fatalf("%s: no ExecStart", path)
	}
	s := &started{name: filepath.Base(path), log: &bytes.Buffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(argv[0], append(argv[1:], extraArgs...)...)
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *started) stop(t *testing.T) {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if t.Failed() {
		t.Logf("--- %s log:\n%s", s.name, s.log.String())
	}
}

func (s *started) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitHTTP waits until url answers 200 or the process exits.
func waitHTTP(t *testing.T, url string, procs ...*started) {
	t.Helper()
	waitHTTPClient(t, http.DefaultClient, url, procs...)
}

func waitHTTPClient(t *testing.T, client *http.Client, url string, procs ...*started) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("%s exited:\n%s", p.name, p.log.String())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within 30 s", url)
}

// pinglink POSTs /pinglink with a bearer token ("" for none).
func pinglink(t *testing.T, base, token string) (int, string) {
	t.Helper()
	return pinglinkClient(t, http.DefaultClient, base, token)
}

func pinglinkClient(t *testing.T, client *http.Client, base, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/pinglink", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// postStatus POSTs an empty /status (a ping) to a sidecar without a token.
func postStatus(t *testing.T, client *http.Client, base string) (int, string) {
	t.Helper()
	resp, err := client.Post(base+"/status", "application/json", strings.NewReader("[]"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestE2EDockerDeviceCode: docker sidecar, OIDC with the device-code grant
// from an in-process issuer; the refresh token it stored is used by the
// real interlink-token-refresher, and its access token passes interlink's
// proxy.
func TestE2EDockerDeviceCode(t *testing.T) {
	needCommand(t, "systemd-analyze", ".ci/systemd.sh install")
	needCommand(t, "dockerd", ".ci/docker.sh install")
	build(t)
	base := t.TempDir()
	dockerDir := filepath.Join(base, "docker")
	t.Cleanup(func() { script(t, ".ci/docker.sh", "down", dockerDir) })
	script(t, ".ci/docker.sh", "up", dockerDir)

	f := newFakeIssuer(t, "interlink-vk")
	f.pending = 1
	port, sidecarPort := e2eenv.FreePortNumber(t), e2eenv.FreePortNumber(t)
	// interlink serves https with a certificate of a private CA, which the
	// cluster side gets in a Secret.
	caFile, certFile, keyFile := writeTLS(t, filepath.Join(base, "tls"))
	// '%' and '$' in the config directory: the units must escape them.
	a := map[string]any{
		"Sidecar":     "docker",
		"PublicURL":   fmt.Sprintf("https://127.0.0.1:%d", port),
		"TLSCertFile": certFile,
		"TLSKeyFile":  keyFile,
		"TLSCAFile":   caFile,
		"SidecarPort": sidecarPort,
		"Auth":        map[string]any{"Issuer": f.URL(), "ClientID": "interlink-vk", "AllowedGroups": []string{"interlink"}},
		"User":        currentUser(t),
		"BinDir":      binDir,
		"ConfigDir":   filepath.Join(base, "etc%i$HOME"),
		"StateDir":    filepath.Join(base, "state"),
		"UnitDir":     filepath.Join(base, "units"),
		"OutDir":      filepath.Join(base, "cluster"),
		"Docker": map[string]any{
			"DockerHost": "unix://" + filepath.Join(dockerDir, "docker.sock"), "Group": "", "NetworkMode": "none",
		},
	}
	said := install(t, a, "--non-interactive")
	if !strings.Contains(said, fakeUserCode) || !strings.Contains(said, f.URL()+"/activate") {
		t.Errorf("the verification URI and user code were not shown")
	}
	if strings.Contains(said, fakeRefresh) {
		t.Fatal("the refresh token was printed")
	}
	rt := filepath.Join(base, "cluster", RefreshTokenName)
	if st, err := os.Stat(rt); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", rt, st, err)
	}

	units := filepath.Join(base, "units")
	verifyUnits(t, filepath.Join(units, "interlink-docker.service"), filepath.Join(units, "interlink.service"))

	sc := startUnit(t, filepath.Join(units, "interlink-docker.service"))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", sidecarPort), sc)
	// On TCP the sidecar requires the token the installer gave interlink.
	if code, _ := postStatus(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d", sidecarPort)); code != http.StatusUnauthorized {
		t.Errorf("the sidecar's /status without a token: %d, want 401", code)
	}
	il := startUnit(t, filepath.Join(units, "interlink.service"))
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	// Trust only the CA the installer put in the cluster side's Secret.
	client := clientTrusting(t, filepath.Join(base, "cluster", SecretsName))
	waitHTTPClient(t, client, url+"/healthz", il)

	if code, _ := pinglinkClient(t, client, url, ""); code != http.StatusUnauthorized {
		t.Errorf("/pinglink without a token: %d, want 401", code)
	}
	if code, _ := pinglinkClient(t, client, url, "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("/pinglink with a bad token: %d, want 401", code)
	}

	// The cluster side's token refresher, configured from the Helm values,
	// turns the stored refresh token into access tokens.
	values := readValues(t, filepath.Join(base, "cluster", ValuesName))
	r := values["token"].(map[string]any)["refresher"].(map[string]any)
	tokenFile := filepath.Join(base, "vk-token")
	refCfg := map[string]any{
		"TokenURL": r["tokenURL"], "Grant": r["grant"], "ClientID": r["clientID"], "Audience": r["audience"],
		"Scopes": r["scopes"], "RefreshTokenFile": rt, "TokenFile": tokenFile, "LogFormat": "text",
	}
	raw, _ := yaml.Marshal(refCfg)
	refPath := filepath.Join(base, "refresher.yaml")
	if err := os.WriteFile(refPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ref := &started{name: "interlink-token-refresher", log: &bytes.Buffer{}, done: make(chan struct{})}
	ref.cmd = exec.Command(filepath.Join(binDir, "interlink-token-refresher"), "--config", refPath)
	ref.cmd.Stdout, ref.cmd.Stderr = ref.log, ref.log
	if err := ref.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = ref.cmd.Wait(); close(ref.done) }()
	t.Cleanup(func() { ref.stop(t) })
	var tok []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if tok, _ = os.ReadFile(tokenFile); len(tok) > 0 || ref.exited() {
			break
		}
	}
	if len(tok) == 0 {
		t.Fatalf("the token refresher wrote no token:\n%s", ref.log.String())
	}
	code, body := pinglinkClient(t, client, url, strings.TrimSpace(string(tok)))
	if code != http.StatusOK {
		t.Fatalf("/pinglink with the refreshed token: %d %s", code, body)
	}
	t.Logf("/pinglink over https through the proxy to the Docker sidecar: %d %s", code, strings.TrimSpace(body))
	for _, p := range []*started{il, sc, ref} {
		if strings.Contains(p.log.String(), fakeRefresh) || strings.Contains(p.log.String(), string(tok)) {
			t.Errorf("%s logged a token", p.name)
		}
	}

	helmInstall(t, base, filepath.Join(base, "cluster"), "interlink", "refresh_token")
}

// TestE2ESlurmStatic: SLURM sidecar with a static token; SLURM_CONF comes
// from the unit's Environment= (a path with a space and a '%').
func TestE2ESlurmStatic(t *testing.T) {
	needCommand(t, "systemd-analyze", ".ci/systemd.sh install")
	needCommand(t, "slurmctld", ".ci/slurm.sh install")
	build(t)
	base := t.TempDir()
	// slurm.conf under a directory with a '%': the sidecar gets it only
	// through the unit's Environment=.
	// munged runs as munge: the directory must be reachable for it (a
	// t.TempDir is 0700).
	slurmDir, err := os.MkdirTemp("", "interlink-installer-slurm%d-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(slurmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { script(t, ".ci/slurm.sh", "down", slurmDir); _ = os.RemoveAll(slurmDir) })
	script(t, ".ci/slurm.sh", "up", slurmDir)
	port := e2eenv.FreePortNumber(t)
	// No SidecarPort: interlink reaches the sidecar on a unix socket in
	// StateDir.
	a := map[string]any{
		"Sidecar":   "slurm",
		"PublicURL": fmt.Sprintf("http://127.0.0.1:%d", port),
		"Auth":      map[string]any{"Mode": "static"},
		"User":      currentUser(t),
		"BinDir":    binDir,
		"ConfigDir": filepath.Join(base, "etc"),
		"StateDir":  filepath.Join(base, "state"),
		"UnitDir":   filepath.Join(base, "units"),
		"OutDir":    filepath.Join(base, "cluster"),
		"Namespace": "interlink-slurm",
		"Slurm": map[string]any{
			"SlurmConf": filepath.Join(slurmDir, "slurm.conf"), "Runtime": "charliecloud",
			"DataRootFolder": filepath.Join(base, "shared", "jobs"),
		},
	}
	install(t, a, "--non-interactive")
	units := filepath.Join(base, "units")
	verifyUnits(t, filepath.Join(units, "interlink-slurm.service"), filepath.Join(units, "interlink.service"))

	sc := startUnit(t, filepath.Join(units, "interlink-slurm.service"))
	sock := filepath.Join(base, "state", "slurm.sock")
	onSocket := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	waitHTTPClient(t, onSocket, "http://unix/metrics", sc)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("the sidecar's socket %s: %v %v, want mode 0660", sock, st, err)
	}
	il := startUnit(t, filepath.Join(units, "interlink.service"))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, url+"/healthz", il)

	tok, err := os.ReadFile(filepath.Join(base, "cluster", VKTokenName))
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := pinglink(t, url, ""); code != http.StatusUnauthorized {
		t.Errorf("/pinglink without a token: %d, want 401", code)
	}
	code, body := pinglink(t, url, strings.TrimSpace(string(tok)))
	if code != http.StatusOK {
		t.Fatalf("/pinglink with the static token: %d %s", code, body)
	}
	t.Logf("/pinglink through the proxy to the SLURM sidecar (sinfo): %d %s", code, strings.TrimSpace(body))

	helmInstall(t, base, filepath.Join(base, "cluster"), "interlink-slurm", "")
}

// helmInstall applies the written Secrets and installs charts/interlink
// with the written values on a real control plane (no --wait: there is no
// kubelet to run the VK's pod), then checks what the chart made of them.
func helmInstall(t *testing.T, base, outDir, namespace, grant string) {
	t.Helper()
	k8sBin := strings.TrimSpace(script(t, "examples/cluster/build.sh"))
	clusterDir := filepath.Join(base, "k8s")
	t.Cleanup(func() { script(t, "examples/cluster/cluster.sh", "down", clusterDir) })
	script(t, "examples/cluster/cluster.sh", "up", clusterDir)
	kubeconfig := filepath.Join(clusterDir, "kubeconfig")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(k8sBin, name), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HELM_CACHE_HOME="+filepath.Join(clusterDir, "helm-cache"),
			"HELM_CONFIG_HOME="+filepath.Join(clusterDir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(clusterDir, "helm-data"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	chart := filepath.Join(repoDir, "charts", "interlink")
	valuesFile := filepath.Join(outDir, ValuesName)
	values := readValues(t, valuesFile)
	run("kubectl", "create", "namespace", namespace)
	run("kubectl", "apply", "-n", namespace, "-f", filepath.Join(outDir, SecretsName))
	manifest := run("helm", "template", "interlink", chart, "-n", namespace, "--kube-version", kubeVersion, "-f", valuesFile)
	mf := filepath.Join(base, "manifest.yaml")
	if err := os.WriteFile(mf, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	run("kubectl", "apply", "--dry-run=server", "-f", mf)
	run("helm", "install", "interlink", chart, "-n", namespace, "-f", valuesFile)
	deploy := run("kubectl", "get", "deployment", "-n", namespace, "-o", "yaml")
	checks := []string{"interlink-vk"}
	if strings.HasPrefix(values["interlink"].(map[string]any)["url"].(string), "https") {
		checks = append(checks, CASecretName)
	}
	if grant != "" {
		checks = append(checks, "interlink-token-refresher", RefreshSecretName)
	} else {
		checks = append(checks, TokenSecretName)
	}
	for _, want := range checks {
		if !strings.Contains(deploy, want) {
			t.Errorf("the installed Deployment does not mention %q", want)
		}
	}
	t.Logf("helm install of the written values in namespace %s: ok", namespace)
}

// TestE2EGoldenValuesTemplate: the Helm values of every golden case (OIDC
// device code with a CA Secret, client credentials on IPv6, static) pass
// the chart's schema and render.
func TestE2EGoldenValuesTemplate(t *testing.T) {
	k8sBin := strings.TrimSpace(script(t, "examples/cluster/build.sh"))
	chart := filepath.Join(repoDir, "charts", "interlink")
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*", "*", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob(filepath.Join("testdata", "golden", "*", "root", "*", "values.yaml"))
	files = append(files, more...)
	if len(files) != len(goldenCases) {
		t.Fatalf("found %d golden values files, want %d: %v", len(files), len(goldenCases), files)
	}
	for _, f := range files {
		out, err := exec.Command(filepath.Join(k8sBin, "helm"), "template", "interlink", chart, "-n", "interlink",
			"--kube-version", kubeVersion, "-f", f).CombinedOutput()
		if err != nil {
			t.Errorf("helm template -f %s: %v\n%s", f, err, out)
			continue
		}
		if !strings.Contains(string(out), "kind: Deployment") {
			t.Errorf("helm template -f %s: no Deployment", f)
		}
	}
}

// writeTLS writes a CA and a serving certificate for 127.0.0.1 signed by it.
func writeTLS(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "installer-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, cert, key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for p, b := range map[string][]byte{
		ca:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, cert, key
}

// clientTrusting is an HTTP client trusting only the CA of the
// interlink-ca Secret in a secrets.yaml the installer wrote.
func clientTrusting(t *testing.T, secretsFile string) *http.Client {
	t.Helper()
	raw, err := os.ReadFile(secretsFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var obj struct {
			Metadata   struct{ Name string }
			StringData map[string]string `json:"stringData"`
		}
		if yaml.Unmarshal([]byte(doc), &obj) == nil && obj.Metadata.Name == CASecretName {
			pool.AppendCertsFromPEM([]byte(obj.StringData["ca.crt"]))
		}
	}
	if len(pool.Subjects()) == 0 { //nolint:staticcheck // only counted
		t.Fatalf("no %s Secret with a CA in %s", CASecretName, secretsFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
