//go:build e2e

package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/sidecarstest"
)

// The e2e tier runs a private dockerd (Debian's docker.io, started by
// .ci/docker.sh with --bridge=none on its own socket) and busybox imported
// from a tarball: no registry is reached but a local one.

var (
	script     string // .ci/docker.sh
	dockerDir  string
	dockerHost string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	script, _ = filepath.Abs("../../.ci/docker.sh")
	if _, err := exec.LookPath("dockerd"); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL: dockerd is missing: run .ci/docker.sh install")
			return 1
		}
		fmt.Fprintln(os.Stderr, "SKIP: dockerd is missing (run .ci/docker.sh install)")
		return 0
	}
	base, err := os.MkdirTemp("", "interlink-docker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(base) }()
	dockerDir = filepath.Join(base, "docker")
	up := exec.Command(script, "up", dockerDir)
	up.Stdout, up.Stderr = os.Stderr, os.Stderr
	if err := up.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "docker.sh up:", err)
		_ = exec.Command(script, "down", dockerDir).Run()
		return 1
	}
	defer func() {
		down := exec.Command(script, "down", dockerDir)
		down.Stdout, down.Stderr = os.Stderr, os.Stderr
		_ = down.Run()
	}()
	dockerHost = "unix://" + filepath.Join(dockerDir, "docker.sock")
	return m.Run()
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.DockerHost = dockerHost
	cfg.DataRootFolder = filepath.Join(t.TempDir(), "data")
	cfg.NetworkMode = "none" // the test dockerd has no bridge
	cfg.PauseImage = "busybox:latest"
	cfg.PauseCommand = []string{"sleep", "2147483647"}
	return cfg
}

func newSidecar(t testing.TB, cfg Config) *Sidecar {
	t.Helper()
	d, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestE2EConformance(t *testing.T) {
	d := newSidecar(t, testConfig(t))
	sidecarstest.Run(t, d, sidecarstest.Config{Image: "busybox:latest", Timeout: 60 * time.Second, WantLog: "conformance-hello"})
}

// pod is a pod of busybox containers running the given shell commands.
func pod(name string, cmds ...string) *api.RetrievedPodData {
	d := &api.RetrievedPodData{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e", UID: types.UID(uuid.NewString())},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever},
	}}
	for i, c := range cmds {
		n := fmt.Sprintf("c%d", i)
		d.Pod.Spec.Containers = append(d.Pod.Spec.Containers, corev1.Container{Name: n, Image: "busybox:latest", Command: []string{"/bin/sh", "-c", c}})
		d.Containers = append(d.Containers, api.RetrievedContainer{Name: n})
	}
	return d
}

func create(t *testing.T, d *Sidecar, data *api.RetrievedPodData) string {
	t.Helper()
	res, err := d.Create(context.Background(), data)
	if err != nil {
		t.Fatalf("create %s: %v", data.Pod.Name, err)
	}
	t.Cleanup(func() { _ = d.Delete(context.Background(), &data.Pod) })
	return res.PodJID
}

func waitFor(t *testing.T, d *Sidecar, p *corev1.Pod, what string, ok func(api.PodStatus) bool) api.PodStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last api.PodStatus
	for time.Now().Before(deadline) {
		st, err := d.Status(context.Background(), []corev1.Pod{*p})
		if err == nil && len(st) == 1 {
			if last = st[0]; ok(last) {
				return last
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod %s: not %s within a minute; last %+v", p.Name, what, last)
	return last
}

func allTerminated(st api.PodStatus) bool {
	for _, c := range st.Containers {
		if c.State.Terminated == nil {
			return false
		}
	}
	return len(st.Containers) > 0
}

func logs(t *testing.T, d *Sidecar, p *corev1.Pod, c string, o api.ContainerLogOpts) string {
	t.Helper()
	rc, err := d.Logs(context.Background(), &api.LogRequest{Namespace: p.Namespace, PodUID: string(p.UID), PodName: p.Name, ContainerName: c, Opts: o})
	if err != nil {
		t.Fatalf("logs %s: %v", c, err)
	}
	defer func() { _ = rc.Close() }()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func TestE2EPods(t *testing.T) {
	cfg := testConfig(t)
	dataRoot := cfg.DataRootFolder
	d := newSidecar(t, cfg)
	t.Run("LocalhostBetweenContainers", func(t *testing.T) {
		t.Parallel()
		// The listener's input stays open (sleep): busybox nc may end a
		// connection at its input's end (Docker gives it /dev/null) before
		// the other side's line arrived.
		data := pod("localhost", "sleep 10 | nc -l -p 8080", "until echo hello-over-localhost | nc 127.0.0.1 8080; do sleep 0.2; done")
		create(t, d, data)
		waitFor(t, d, &data.Pod, "terminated", allTerminated)
		// The engine may copy a container's last output after its exit.
		var got string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if got = logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}); strings.Contains(got, "hello-over-localhost") {
				break
			}
		}
		if !strings.Contains(got, "hello-over-localhost") {
			t.Errorf("c0 received %q", got)
		}
	})
	t.Run("InitOrder", func(t *testing.T) {
		t.Parallel()
		data := pod("init", "cat /shared/order")
		for i, c := range []string{"sleep 1; echo first >> /shared/order", "echo second >> /shared/order"} {
			data.Pod.Spec.InitContainers = append(data.Pod.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("init%d", i), Image: "busybox:latest",
				Command: []string{"/bin/sh", "-c", c}, VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}})
		}
		data.Pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
		data.Pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if len(st.InitContainers) != 2 || st.InitContainers[1].State.Terminated == nil {
			t.Errorf("init containers %+v", st.InitContainers)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}); got != "first\nsecond\n" {
			t.Errorf("order %q, want first then second", got)
		}
	})
	t.Run("FailedInitStopsThePod", func(t *testing.T) {
		t.Parallel()
		data := pod("init-fails", "echo must-not-run")
		data.Pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:latest", Command: []string{"/bin/sh", "-c", "exit 5"}}}
		create(t, d, data)
		waitFor(t, d, &data.Pod, "init failed", func(st api.PodStatus) bool {
			return len(st.InitContainers) == 1 && st.InitContainers[0].State.Terminated != nil
		})
		time.Sleep(time.Second)
		st := waitFor(t, d, &data.Pod, "status", func(api.PodStatus) bool { return true })
		if st.InitContainers[0].State.Terminated.ExitCode != 5 || st.Containers[0].State.Waiting == nil {
			t.Errorf("init %+v, container %+v: want exit 5 and the container never started", st.InitContainers[0].State, st.Containers[0].State)
		}
	})
	t.Run("ExitCode", func(t *testing.T) {
		t.Parallel()
		data := pod("exit3", "exit 3")
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if c := st.Containers[0].State.Terminated; c.ExitCode != 3 || c.Reason != "Error" {
			t.Errorf("terminated %+v", c)
		}
	})
	t.Run("OOMKilled", func(t *testing.T) {
		t.Parallel()
		data := pod("oom", `x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived`)
		data.Pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("20Mi"), corev1.ResourceCPU: resource.MustParse("500m")}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if c := st.Containers[0].State.Terminated; c.Reason != "OOMKilled" || c.ExitCode != 137 {
			t.Errorf("terminated %+v, want OOMKilled 137", c)
		}
	})
	t.Run("RestartOnFailure", func(t *testing.T) {
		t.Parallel()
		data := pod("restarts", "echo attempt; sleep 0.5; exit 1")
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		create(t, d, data)
		waitFor(t, d, &data.Pod, "restarted", func(st api.PodStatus) bool { return st.Containers[0].RestartCount >= 2 })
	})
	t.Run("DataAndLiteralEnv", func(t *testing.T) {
		t.Parallel()
		data := pod("data", `cat /etc/cfg/greeting; echo; stat -c '%a' /etc/sec/password; cat /etc/sec/password; echo; printf '%s|' "$EVIL"; ls /tmp/pwned 2>&1`)
		c := &data.Pod.Spec.Containers[0]
		c.Env = []corev1.EnvVar{{Name: "EVIL", Value: "$(touch /tmp/pwned) `id` 'q'\nline2"}}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "sec", MountPath: "/etc/sec"}}
		data.Pod.Spec.Volumes = []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
		}
		data.Containers[0].ConfigMaps = []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"greeting": "hello $(id)"}}}
		data.Containers[0].Secrets = []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("p4ss")}}}
		create(t, d, data)
		waitFor(t, d, &data.Pod, "terminated", allTerminated)
		want := "hello $(id)\n644\np4ss\n$(touch /tmp/pwned) `id` 'q'\nline2|ls: /tmp/pwned: No such file or directory\n"
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}); got != want {
			t.Errorf("logs %q, want %q", got, want)
		}
		// On the host the pod's data stays closed to other users.
		podDir := filepath.Join(dataRoot, data.Pod.Namespace+"-"+string(data.Pod.UID))
		if fi, err := os.Stat(podDir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("the pod's data directory on the host: %v %v, want mode 0700", fi, err)
		}
	})
	t.Run("NonRootContainerUsesItsData", func(t *testing.T) {
		t.Parallel()
		// A container running as another user than the sidecar reads its
		// Secret (0644 by default, as on a kubelet) and writes into its
		// emptyDir (0777).
		data := pod("nonroot", `id -u; cat /etc/sec/password; echo; echo written > /scratch/f && cat /scratch/f`)
		uid := int64(1000)
		data.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid}
		c := &data.Pod.Spec.Containers[0]
		c.VolumeMounts = []corev1.VolumeMount{{Name: "sec", MountPath: "/etc/sec"}, {Name: "scratch", MountPath: "/scratch"}}
		data.Pod.Spec.Volumes = []corev1.Volume{
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		data.Containers[0].Secrets = []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("p4ss")}}}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{})
		if code := st.Containers[0].State.Terminated.ExitCode; code != 0 || got != "1000\np4ss\nwritten\n" {
			t.Errorf("exit %d, logs %q, want 1000, the secret and the emptyDir file", code, got)
		}
	})
	t.Run("LogOptions", func(t *testing.T) {
		t.Parallel()
		data := pod("logs", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done; echo to-stderr >&2")
		create(t, d, data)
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{Follow: true}); got != "line1\nline2\nline3\nline4\nline5\nto-stderr\n" {
			t.Errorf("followed %q", got)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{Tail: 2}); got != "line5\nto-stderr\n" {
			t.Errorf("tail 2: %q", got)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{LimitBytes: 8}); got != "line1\nli" {
			t.Errorf("limit 8: %q", got)
		}
		ts := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{Timestamps: true, Tail: 1})
		stamp, text, _ := strings.Cut(ts, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || text != "to-stderr\n" {
			t.Fatalf("timestamped %q: %v", ts, err)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{SinceTime: at}); got != "to-stderr\n" {
			t.Errorf("since the last line: %q", got)
		}
	})
	t.Run("DeleteWithinGracePeriod", func(t *testing.T) {
		t.Parallel()
		data := pod("grace", "trap '' TERM; sleep 600", "sleep 600")
		data.Pod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
		create(t, d, data)
		waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
		start := time.Now()
		if err := d.Delete(context.Background(), &data.Pod); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("delete took %s with a 1 s grace period", took)
		}
		if left := dockerCLI(t, "ps", "-aq", "--filter", "label="+LabelUID+"="+string(data.Pod.UID)); left != "" {
			t.Errorf("containers left: %s", left)
		}
	})
}

func dockerCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/docker", append([]string{"-H", dockerHost}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestE2ERecovery: a sidecar stopped while a pod's init container runs is
// replaced by a new one, which finds the pod in Docker and finishes
// starting it; then dockerd itself restarts.
func TestE2ERecovery(t *testing.T) {
	cfg := testConfig(t)
	d := newSidecar(t, cfg)
	data := pod("recover", "echo main-ran; sleep 600")
	data.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	data.Pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:latest", Command: []string{"/bin/sh", "-c", "sleep 2"}}}
	jid := create(t, d, data)
	time.Sleep(500 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = newSidecar(t, cfg)
	if res, err := d.Create(context.Background(), data); err != nil || res.PodJID != jid {
		t.Fatalf("create after restart: %+v %v, want job %s", res, err, jid)
	}
	waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
	if out, err := exec.Command(script, "restart", dockerDir).CombinedOutput(); err != nil {
		t.Fatalf("restart dockerd: %v\n%s", err, out)
	}
	waitFor(t, d, &data.Pod, "running after dockerd restarted", func(st api.PodStatus) bool {
		return st.Containers[0].State.Running != nil && st.JobID == jid
	})
}

// TestE2EPullSecrets: an image from a loopback registry requiring basic
// auth is pulled with the pod's imagePullSecret, and refused without it.
func TestE2EPullSecrets(t *testing.T) {
	regDir := filepath.Join(t.TempDir(), "registry")
	if out, err := exec.Command(script, "registry-up", regDir, "puller", "s3cret pass", dockerDir).CombinedOutput(); err != nil {
		t.Fatalf("registry-up: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(script, "registry-down", regDir).Run() })
	env := map[string]string{}
	b, err := os.ReadFile(filepath.Join(regDir, "registry.env"))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "="); ok {
			if uq, err := unquote(v); err == nil {
				v = uq
			}
			env[k] = v
		}
	}
	d := newSidecar(t, testConfig(t))

	without := pod("no-secret", "echo pulled")
	without.Pod.Spec.Containers[0].Image = env["REGISTRY_IMAGE"]
	if _, err := d.Create(context.Background(), without); api.ReasonOf(err) != api.ReasonImageNotFound || !strings.Contains(err.Error(), "no basic auth credentials") ||
		!strings.Contains(err.Error(), env["REGISTRY_IMAGE"]) {
		t.Errorf("create without credentials: %v, want ImageNotFound naming the image and the refused pull", err)
	}

	with := pod("with-secret", "echo pulled-with-secret")
	with.Pod.Spec.Containers[0].Image = env["REGISTRY_IMAGE"]
	with.Pod.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	with.Pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	auth := base64.StdEncoding.EncodeToString([]byte(env["REGISTRY_USER"] + ":" + env["REGISTRY_PASSWORD"]))
	cfgJSON, _ := json.Marshal(map[string]any{"auths": map[string]any{env["REGISTRY"]: map[string]string{"auth": auth}}})
	with.Containers[0].Secrets = []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: cfgJSON}}}
	create(t, d, with)
	waitFor(t, d, &with.Pod, "terminated", allTerminated)
	if got := logs(t, d, &with.Pod, "c0", api.ContainerLogOpts{}); got != "pulled-with-secret\n" {
		t.Errorf("logs %q", got)
	}
}

// unquote reads a value written by printf %q in bash.
func unquote(v string) (string, error) {
	out, err := exec.Command("bash", "-c", "printf '%s' "+v).Output()
	return string(bytes.TrimRight(out, "\x00")), err
}

func TestE2EMetrics(t *testing.T) {
	d := newSidecar(t, testConfig(t))
	reg := prometheus.NewPedanticRegistry()
	if err := d.Register(reg); err != nil {
		t.Fatal(err)
	}
	data := pod("metrics", "echo hi")
	create(t, d, data)
	waitFor(t, d, &data.Pod, "terminated", allTerminated)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}
	for _, name := range []string{"interlink_docker_api_duration_seconds", "interlink_docker_create_duration_seconds"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
}

// overHTTP puts d behind the sidecar's HTTP handler, as interLink reaches it,
// and returns a client of it.
func overHTTP(t *testing.T, d *Sidecar) *sidecars.Client {
	t.Helper()
	srv := httptest.NewServer(sidecars.NewHandler(d, sidecars.HandlerConfig{MaxBodyBytes: 1 << 20}))
	t.Cleanup(srv.Close)
	c, err := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL, Retries: 1, CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestE2ESecurityContext: a restricted pod runs as restricted as it asks;
// pods asking for what the operator did not allow are refused with a 400
// before any container is made.
func TestE2ESecurityContext(t *testing.T) {
	d := newSidecar(t, testConfig(t))
	c := overHTTP(t, d)
	t.Run("Restricted", func(t *testing.T) {
		t.Parallel()
		data := pod("restricted", `id -u; cat /proc/self/status | grep -E 'CapEff|NoNewPrivs|Seccomp'; touch /x`)
		data.Pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			RunAsUser: ptr(int64(1000)), RunAsNonRoot: ptr(true), AllowPrivilegeEscalation: ptr(false),
			Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem: ptr(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{})
		for _, want := range []string{"1000\n", "CapEff:\t0000000000000000\n", "NoNewPrivs:\t1\n", "Seccomp:\t2\n", "Read-only file system"} {
			if !strings.Contains(got, want) {
				t.Errorf("logs %q, want %q", got, want)
			}
		}
		if code := st.Containers[0].State.Terminated.ExitCode; code == 0 {
			t.Errorf("exit 0: touch /x succeeded on a read-only root filesystem")
		}
	})
	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, want string
			mut        func(p *corev1.Pod)
		}{
			{"privileged", "AllowPrivileged", func(p *corev1.Pod) {
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
			}},
			{"host-pid", "AllowHostNamespaces", func(p *corev1.Pod) { p.Spec.HostPID = true }},
			{"cap-add", "AllowedCapabilities", func(p *corev1.Pod) {
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
			}},
			{"image-root", "the image runs as root", func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}
			}},
		} {
			data := pod(tc.name, "echo must-not-run")
			tc.mut(&data.Pod)
			_, err := c.Create(context.Background(), data)
			if code := api.HTTPStatus(api.ReasonOf(err)); code != 400 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v (%d), want a 400 naming %s", tc.name, err, code, tc.want)
			}
			if left := dockerCLI(t, "ps", "-aq", "--filter", "label="+LabelUID+"="+string(data.Pod.UID)); left != "" {
				t.Errorf("%s: containers made for a refused pod: %s", tc.name, left)
			}
		}
	})
	t.Run("AllowedCapability", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t)
		cfg.AllowedCapabilities = []string{"NET_BIND_SERVICE"}
		d := newSidecar(t, cfg)
		data := pod("cap-allowed", `grep CapEff /proc/self/status`)
		data.Pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}}}
		create(t, d, data)
		waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}); got != "CapEff:\t0000000000000400\n" {
			t.Errorf("logs %q, want only CAP_NET_BIND_SERVICE (bit 10)", got)
		}
	})
}

// TestE2ELongLine: a container prints 200 MiB without a newline. Its log
// with Tail=1 comes promptly and is one capped piece of the line; the
// whole log streams through the sidecar's HTTP handler while the sidecar's
// heap (it runs in this process) stays small.
func TestE2ELongLine(t *testing.T) {
	const size = 200 << 20
	d := newSidecar(t, testConfig(t))
	c := overHTTP(t, d)
	data := pod("long-line", `head -c 209715200 /dev/zero | tr '\0' x`)
	create(t, d, data)
	waitFor(t, d, &data.Pod, "terminated", allTerminated)

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	req := func(o api.ContainerLogOpts) *api.LogRequest {
		return &api.LogRequest{Namespace: data.Pod.Namespace, PodUID: string(data.Pod.UID), PodName: data.Pod.Name, ContainerName: "c0", Opts: o}
	}
	start := time.Now()
	rc, err := c.Logs(context.Background(), req(api.ContainerLogOpts{Tail: 1}))
	if err != nil {
		t.Fatal(err)
	}
	last, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	_ = rc.Close()
	if took := time.Since(start); err != nil || took > 10*time.Second {
		t.Errorf("tail 1: %v after %s", err, took)
	}
	if len(last) == 0 || len(last) > outputChunk*2 || len(bytes.Trim(last, "x")) > 0 {
		t.Errorf("tail 1: %d bytes (%.40q...), want one piece of the line", len(last), last)
	}

	rc, err = c.Logs(context.Background(), req(api.ContainerLogOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	var all pieces
	n, err := io.CopyBuffer(&all, rc, make([]byte, 1<<20))
	_ = rc.Close()
	close(stop)
	<-sampled
	if err != nil || n != size || all.bad {
		t.Errorf("the whole log: %d bytes (bad %v), %v; want %d bytes of x", n, all.bad, err, size)
	}
	if p := peak.Load(); p > 200<<20 {
		t.Errorf("heap in use peaked at %d MiB while serving the line, want under 200 MiB", p>>20)
	} else {
		t.Logf("heap in use peaked at %d MiB; the line is %d MiB", p>>20, size>>20)
	}
}

// entryImage is an image with an ENTRYPOINT, a CMD, ENV and a WORKDIR, made
// from busybox on the test dockerd. Its entrypoint prints its arguments,
// two variables and its working directory.
func entryImage(t *testing.T) string {
	t.Helper()
	const img = "e2e/entry:1"
	id := dockerCLI(t, "create", "busybox:latest")
	defer dockerCLI(t, "rm", id)
	dockerCLI(t, "commit",
		"--change", `ENTRYPOINT ["/bin/sh", "-c", "echo \"$0 $* A=$A B=$B pwd=$(pwd)\"", "ep"]`,
		"--change", `CMD ["cmd1", "cmd2"]`,
		"--change", `ENV A=img-a B=img-b`,
		"--change", `WORKDIR /imgwd`, id, img)
	return img
}

// podOf is a pod (restartPolicy Never) of the given containers, each with
// the data the VK would send it.
func podOf(name string, cs ...corev1.Container) *api.RetrievedPodData {
	d := &api.RetrievedPodData{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e", UID: types.UID(uuid.NewString())},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: cs},
	}}
	for _, c := range cs {
		d.Containers = append(d.Containers, api.RetrievedContainer{Name: c.Name})
	}
	return d
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox:latest", Command: []string{"/bin/sh", "-c", script}}
}

// decoded reads lines NAME=BASE64 into a map.
func decoded(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		m[k] = string(b)
	}
	return m
}

// b64 is a shell snippet printing NAME=base64 of each file or variable.
func b64(kind string, items ...string) string {
	var b strings.Builder
	for _, it := range items {
		src := `printf '%s' "$` + it + `"`
		if kind == "file" {
			src = "cat '" + it + "'"
		}
		fmt.Fprintf(&b, "printf '%%s=' '%s'; %s | base64 | tr -d '\\n'; echo; ", it, src)
	}
	return b.String()
}

// TestE2EKubeletBehavior: what a kubelet does for ordinary pods, the
// Docker sidecar does too.
func TestE2EKubeletBehavior(t *testing.T) {
	d := newSidecar(t, testConfig(t))
	entry := entryImage(t)

	t.Run("CommandArgsEnvWorkingDir", func(t *testing.T) {
		t.Parallel()
		c := func(name string, mut func(*corev1.Container)) corev1.Container {
			ct := corev1.Container{Name: name, Image: entry, ImagePullPolicy: corev1.PullIfNotPresent}
			if mut != nil {
				mut(&ct)
			}
			return ct
		}
		data := podOf("command-args",
			c("neither", nil),
			c("args", func(c *corev1.Container) { c.Args = []string{"x", "y"} }),
			c("command", func(c *corev1.Container) { c.Command = []string{"/bin/sh", "-c", `echo "cmd $# [$*] A=$A"`} }),
			c("both", func(c *corev1.Container) {
				c.Command, c.Args = []string{"/bin/sh", "-c", `echo "$0 $*"`}, []string{"a0", "a1"}
			}),
			c("override", func(c *corev1.Container) {
				c.Env, c.WorkingDir = []corev1.EnvVar{{Name: "A", Value: "pod-a"}}, "/not/in/the/image"
			}),
			c("expanded", func(c *corev1.Container) {
				c.Env = []corev1.EnvVar{{Name: "X", Value: "ex"}}
				c.Args = []string{"$(X)", "$$(X)", "$(NOPE)", "$(A)"}
			}),
		)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		for name, want := range map[string]string{
			"neither":  "ep cmd1 cmd2 A=img-a B=img-b pwd=/imgwd\n",
			"args":     "ep x y A=img-a B=img-b pwd=/imgwd\n",
			"command":  "cmd 0 [] A=img-a\n",
			"both":     "a0 a1\n",
			"override": "ep cmd1 cmd2 A=pod-a B=img-b pwd=/not/in/the/image\n",
			// $(A) is the image's: Kubernetes expands the pod's env only.
			"expanded": "ep ex $(X) $(NOPE) $(A) A=img-a B=img-b pwd=/imgwd\n",
		} {
			if got := logs(t, d, &data.Pod, name, api.ContainerLogOpts{}); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		for _, cs := range st.Containers {
			if tm := cs.State.Terminated; tm.ExitCode != 0 || tm.Reason != "Completed" {
				t.Errorf("%s: %+v, want exit 0 Completed", cs.Name, tm)
			}
		}
	})

	t.Run("EnvBytes", func(t *testing.T) {
		t.Parallel()
		want := map[string]string{
			"QUOTES":    `a"b'c` + "`d`",
			"DOLLARS":   `$HOME ex $ \$ $(UNDEFINED) $(`,
			"BACKSLASH": `\n \t \\ \`,
			"NEWLINES":  "l1\nl2\n\n",
			"UNICODE":   "héllo ✓ 日本語 \u00a0",
			"EMPTY":     "",
			"SPACES":    "  two  ",
			"EQUALS":    "=a=b=",
			"FROM_CM":   "cm value\n$(X)",
			"FROM_SEC":  "s3cr3t\r\n",
			"POD_NAME":  "env-bytes",
			"P_KEY":     "from envFrom",
			"MEM":       "64",
		}
		c := sh("c0", b64("var", "QUOTES", "DOLLARS", "BACKSLASH", "NEWLINES", "UNICODE", "EMPTY", "SPACES", "EQUALS",
			"FROM_CM", "FROM_SEC", "POD_NAME", "P_KEY", "MEM")+`[ "${EMPTY+set}" = set ] && echo EMPTY_IS_SET=c2V0`)
		// As the VK sends env: resolved and expanded by virtual-kubelet's
		// pod controller (valueFrom, envFrom, $(VAR)); the sidecar passes
		// each value as it is.
		for _, k := range slices.Sorted(maps.Keys(want)) {
			c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: want[k]})
		}
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
		data := podOf("env-bytes", c)
		create(t, d, data)
		waitFor(t, d, &data.Pod, "terminated", allTerminated)
		got := decoded(t, logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}))
		want["EMPTY_IS_SET"] = "set"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("env (-want +got):\n%s", diff)
		}
	})

	t.Run("VolumeFiles", func(t *testing.T) {
		t.Parallel()
		files := map[string]string{
			"/cfg/text":           "line1\nline2\n",
			"/cfg/nonl":           "no newline at the end",
			"/cfg/bin":            "\x00\x01\xfe\xff\n\r\n",
			"/cfg/unicode":        "日本語 ✓\n",
			"/sec/crlf":           "user:pass\r\n",
			"/proj/token":         "tok\n",
			"/proj/ns":            "e2e",
			"/down/labels":        "app=\"demo\"\n",
			"/etc/app.conf":       "line1\nline2\n",
			"/emptyDir/only/file": "written by init\n",
		}
		paths := make([]string, 0, len(files))
		for p := range files {
			paths = append(paths, p)
		}
		check := sh("check", b64("file", paths...)+
			`touch /cfg/x 2>/dev/null && echo CFG_WRITABLE=eA==; touch /ro/x 2>/dev/null && echo RO_WRITABLE=eA==; `+
			`ls /etc/passwd >/dev/null && echo ETC_KEPT=eWVz`)
		check.VolumeMounts = []corev1.VolumeMount{
			{Name: "cfg", MountPath: "/cfg"}, {Name: "sec", MountPath: "/sec"}, {Name: "proj", MountPath: "/proj"},
			{Name: "down", MountPath: "/down"}, {Name: "cfg", MountPath: "/etc/app.conf", SubPath: "text"},
			{Name: "scratch", MountPath: "/ro", ReadOnly: true}, {Name: "scratch", MountPath: "/emptyDir/only", SubPath: "sub/dir"},
		}
		init := sh("init", `mkdir -p /all/sub/dir && printf 'written by init\n' > /all/sub/dir/file`)
		init.VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/all"}}
		data := podOf("volume-files", check)
		data.Pod.Spec.InitContainers = []corev1.Container{init}
		data.Pod.Spec.Volumes = []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
			{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
			{Name: "down", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		data.Containers = []api.RetrievedContainer{{Name: "init"}, {Name: "check",
			ConfigMaps: []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "cm"},
				Data:       map[string]string{"text": files["/cfg/text"], "nonl": files["/cfg/nonl"], "unicode": files["/cfg/unicode"]},
				BinaryData: map[string][]byte{"bin": []byte(files["/cfg/bin"])}}},
			Secrets: []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"crlf": []byte(files["/sec/crlf"])}}},
			ProjectedVolumeMaps: []corev1.ConfigMap{
				{ObjectMeta: metav1.ObjectMeta{Name: "proj"}, Data: map[string]string{"token": files["/proj/token"], "ns": files["/proj/ns"]}},
				{ObjectMeta: metav1.ObjectMeta{Name: "down"}, Data: map[string]string{"labels": files["/down/labels"]}},
			}}}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		got := decoded(t, logs(t, d, &data.Pod, "check", api.ContainerLogOpts{}))
		files["ETC_KEPT"] = "yes"
		if diff := cmp.Diff(files, got); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
		if c := st.Containers[0].State.Terminated; c.ExitCode != 0 {
			t.Errorf("check: %+v", c)
		}
	})

	t.Run("EmptyDirSharedAndSubPathPinned", func(t *testing.T) {
		t.Parallel()
		// writer and reader share the emptyDir; attacker, which sees it
		// whole, tries to swap the subPath of victim for a symlink to the
		// host's /; victim, restarted once (OnFailure), must still see its
		// own directory.
		writer := sh("writer", `echo shared-data > /shared/f; sleep 1`)
		writer.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
		reader := sh("reader", `until [ -e /shared/f ]; do sleep 0.1; done; cat /shared/f`)
		reader.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared", ReadOnly: true}}
		attacker := sh("attacker", `until [ -e /all/sub/dir/ran ]; do sleep 0.1; done; `+
			`mv /all/sub/dir /all/moved 2>&1; mv /all/sub /all/moved 2>&1; rm -rf /all/sub 2>&1; ln -s / /all/sub/dir 2>&1; ls /all/sub/dir`)
		attacker.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/all"}}
		victim := sh("victim", `if [ -e /v/ran ]; then ls -A /v; exit 0; fi; touch /v/ran; sleep 2; exit 1`)
		victim.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/v", SubPath: "sub/dir"}}
		data := podOf("emptydir", writer, reader, attacker, victim)
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		data.Pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if got := logs(t, d, &data.Pod, "reader", api.ContainerLogOpts{}); got != "shared-data\n" {
			t.Errorf("reader: %q", got)
		}
		if got := logs(t, d, &data.Pod, "victim", api.ContainerLogOpts{}); !strings.HasSuffix(got, "ran\n") || strings.Contains(got, "proc") {
			t.Errorf("victim after its restart: %q, want only its file", got)
		}
		att := logs(t, d, &data.Pod, "attacker", api.ContainerLogOpts{})
		if strings.Count(att, "Resource busy")+strings.Count(att, "resource busy") < 3 {
			t.Errorf("attacker: %q, want its moves and removal refused (busy)", att)
		}
		if st.Containers[3].RestartCount < 1 {
			t.Errorf("victim restarted %d times, want 1", st.Containers[3].RestartCount)
		}
	})

	t.Run("InitRetriedUnderOnFailure", func(t *testing.T) {
		t.Parallel()
		init := sh("init", `if [ -e /s/once ]; then echo init-ok; exit 0; fi; touch /s/once; exit 1`)
		init.VolumeMounts = []corev1.VolumeMount{{Name: "s", MountPath: "/s"}}
		main := sh("main", `ls /s`)
		main.VolumeMounts = init.VolumeMounts
		data := podOf("init-retried", main)
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		data.Pod.Spec.InitContainers = []corev1.Container{init}
		data.Pod.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if i := st.InitContainers[0]; i.RestartCount < 1 || i.State.Terminated == nil || i.State.Terminated.ExitCode != 0 {
			t.Errorf("init: %+v (restarts %d), want it restarted and then succeeded", i.State, i.RestartCount)
		}
		if got := logs(t, d, &data.Pod, "main", api.ContainerLogOpts{}); got != "once\n" {
			t.Errorf("main: %q", got)
		}
	})

	t.Run("ExitCodesAndReasons", func(t *testing.T) {
		t.Parallel()
		cmd := func(name string, command ...string) corev1.Container {
			return corev1.Container{Name: name, Image: "busybox:latest", Command: command}
		}
		data := podOf("exit-codes",
			sh("ok", "exit 0"), sh("one", "exit 1"),
			sh("sh126", "/etc/passwd"), sh("sh127", "no-such-command"),
			cmd("notexec", "/etc/passwd"), cmd("notfound", "/no/such/command"), cmd("notinpath", "no-such-command"),
			sh("runs", "echo still-runs"))
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		want := map[string]corev1.ContainerStateTerminated{
			"ok": {ExitCode: 0, Reason: "Completed"}, "one": {ExitCode: 1, Reason: "Error"},
			"sh126": {ExitCode: 126, Reason: "Error"}, "sh127": {ExitCode: 127, Reason: "Error"},
			"notexec": {ExitCode: 126, Reason: ReasonCannotRun}, "notfound": {ExitCode: 127, Reason: ReasonCannotRun},
			"notinpath": {ExitCode: 127, Reason: ReasonCannotRun}, "runs": {ExitCode: 0, Reason: "Completed"},
		}
		for _, cs := range st.Containers {
			tm := cs.State.Terminated
			if w := want[cs.Name]; tm.ExitCode != w.ExitCode || tm.Reason != w.Reason {
				t.Errorf("%s: exit %d %s (%s), want %d %s", cs.Name, tm.ExitCode, tm.Reason, tm.Message, w.ExitCode, w.Reason)
			}
			if tm.Reason == ReasonCannotRun && !strings.Contains(tm.Message, "/etc/passwd") && !strings.Contains(tm.Message, "no-such-command") &&
				!strings.Contains(tm.Message, "/no/such/command") {
				t.Errorf("%s: message %q does not name the command", cs.Name, tm.Message)
			}
		}
		if got := logs(t, d, &data.Pod, "runs", api.ContainerLogOpts{}); got != "still-runs\n" {
			t.Errorf("the container beside those that cannot run: %q", got)
		}
		if got := logs(t, d, &data.Pod, "notfound", api.ContainerLogOpts{Follow: true}); got != "" {
			t.Errorf("followed log of a container that cannot run: %q", got)
		}
	})

	t.Run("CannotRunIsRetriedUnderAlways", func(t *testing.T) {
		t.Parallel()
		data := podOf("cannot-run-always", corev1.Container{Name: "c0", Image: "busybox:latest", Command: []string{"/no/such/command"}})
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "retried", func(st api.PodStatus) bool { return st.Containers[0].RestartCount >= 2 })
		c := st.Containers[0]
		if w, l := c.State.Waiting, c.LastTerminationState.Terminated; w == nil || w.Reason != "CrashLoopBackOff" || l == nil || l.ExitCode != 127 || l.Reason != ReasonCannotRun {
			t.Errorf("state %+v, last %+v; want CrashLoopBackOff after exit 127 %s", c.State, c.LastTerminationState, ReasonCannotRun)
		}
	})

	t.Run("InitCannotRunFailsThePod", func(t *testing.T) {
		t.Parallel()
		data := podOf("init-cannot-run", sh("main", "echo must-not-run"))
		data.Pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:latest", Command: []string{"/no/such/command"}}}
		create(t, d, data)
		waitFor(t, d, &data.Pod, "init failed", func(st api.PodStatus) bool { return st.InitContainers[0].State.Terminated != nil })
		time.Sleep(time.Second)
		st := waitFor(t, d, &data.Pod, "status", func(api.PodStatus) bool { return true })
		if i := st.InitContainers[0].State.Terminated; i.ExitCode != 127 || i.Reason != ReasonCannotRun {
			t.Errorf("init %+v, want 127 %s", i, ReasonCannotRun)
		}
		if w := st.Containers[0].State.Waiting; w == nil || w.Reason != "PodInitializing" {
			t.Errorf("main %+v, want waiting PodInitializing (never started)", st.Containers[0].State)
		}
	})

	t.Run("RestartOnFailureLastState", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "if [ -e /w/ran ]; then echo second; exit 0; fi; touch /w/ran; echo first; exit 1")
		c.VolumeMounts = []corev1.VolumeMount{{Name: "w", MountPath: "/w"}}
		data := podOf("onfailure-last-state", c)
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		data.Pod.Spec.Volumes = []corev1.Volume{{Name: "w", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		cs := st.Containers[0]
		if cs.RestartCount != 1 || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("restarts %d, state %+v; want 1 restart, then exit 0", cs.RestartCount, cs.State.Terminated)
		}
		if l := cs.LastTerminationState.Terminated; l == nil || l.ExitCode != 1 || l.Reason != "Error" || l.FinishedAt.IsZero() {
			t.Errorf("last state %+v, want exit 1 Error", cs.LastTerminationState)
		}
		// As a kubelet shows them: the current run's log, and the one before.
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}); got != "second\n" {
			t.Errorf("logs %q, want the last run's", got)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{Previous: true}); got != "first\n" {
			t.Errorf("previous logs %q, want the first run's", got)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{Previous: true, Timestamps: true}); !strings.HasSuffix(got, " first\n") {
			t.Errorf("previous logs with timestamps %q", got)
		}
	})

	t.Run("RestartAlways", func(t *testing.T) {
		t.Parallel()
		data := podOf("restart-always", sh("c0", "echo run; sleep 0.3; exit 0"))
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "restarted twice", func(st api.PodStatus) bool { return st.Containers[0].RestartCount >= 2 })
		if st.Containers[0].State.Terminated != nil {
			t.Errorf("terminated under restartPolicy Always: %+v", st.Containers[0].State)
		}
		st = waitFor(t, d, &data.Pod, "running with a last state", func(st api.PodStatus) bool {
			return st.Containers[0].State.Running != nil && st.Containers[0].LastTerminationState.Terminated != nil
		})
		if l := st.Containers[0].LastTerminationState.Terminated; l.ExitCode != 0 || l.Reason != "Completed" {
			t.Errorf("last state %+v, want exit 0 Completed", l)
		}
	})

	t.Run("LogsFollowAndSince", func(t *testing.T) {
		t.Parallel()
		data := podOf("logs-since", sh("c0", "echo old; sleep 6; echo new; for i in 1 2 3 4 5 6; do echo tick$i; sleep 0.5; done"))
		create(t, d, data)
		c := overHTTP(t, d)
		waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
		req := &api.LogRequest{Namespace: data.Pod.Namespace, PodUID: string(data.Pod.UID), PodName: data.Pod.Name, ContainerName: "c0",
			Opts: api.ContainerLogOpts{Follow: true, Timestamps: true}}
		rc, err := c.Logs(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rc.Close() }()
		// The lines come as they are written, while the container runs.
		r := bufio.NewReader(rc)
		for _, want := range []string{" old\n", " new\n"} {
			if l, err := r.ReadString('\n'); err != nil || !strings.HasSuffix(l, want) {
				t.Fatalf("followed line %q, %v; want one ending in %q", l, err, want)
			}
			if st := waitFor(t, d, &data.Pod, "status", func(api.PodStatus) bool { return true }); st.Containers[0].State.Running == nil {
				t.Errorf("%q came after the container ended", want)
			}
		}
		// "new" was written just now, "old" 6 s before it.
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{SinceSeconds: 3}); strings.Contains(got, "old") || !strings.HasPrefix(got, "new\n") {
			t.Errorf("since 3 s: %q", got)
		}
		rest, _ := io.ReadAll(r)
		if lines := strings.Count(string(rest), "\n"); lines != 6 || !strings.HasSuffix(string(rest), " tick6\n") {
			t.Errorf("the rest of the followed log: %q", rest)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{Tail: 3}); got != "tick4\ntick5\ntick6\n" {
			t.Errorf("tail 3: %q", got)
		}
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{SinceSeconds: 600}); !strings.HasPrefix(got, "old\nnew\n") {
			t.Errorf("since 10 min: %q", got)
		}
		req.Opts = api.ContainerLogOpts{Previous: true}
		if _, err := d.Logs(context.Background(), req); !api.IsNotFound(err) || !strings.Contains(err.Error(), "previous terminated container") {
			t.Errorf("previous of a container that never restarted: %v, want not found", err)
		}
	})

	t.Run("ImageReferences", func(t *testing.T) {
		t.Parallel()
		var cs []corev1.Container
		for i, img := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "docker.io/library/busybox"} {
			for _, pol := range []corev1.PullPolicy{"", corev1.PullIfNotPresent, corev1.PullNever} {
				c := sh(fmt.Sprintf("c%d%s", i, strings.ToLower(string(pol))), "echo ran")
				c.Image, c.ImagePullPolicy = img, pol
				cs = append(cs, c)
			}
		}
		data := podOf("image-refs", cs...)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		for _, c := range st.Containers {
			if c.State.Terminated.ExitCode != 0 {
				t.Errorf("%s: %+v", c.Name, c.State.Terminated)
			}
		}
		// A pod of one container (no pause container) too.
		one := podOf("image-ref-one", corev1.Container{Name: "c0", Image: "docker.io/library/busybox:latest", ImagePullPolicy: corev1.PullNever, Command: []string{"true"}})
		create(t, d, one)
		waitFor(t, d, &one.Pod, "terminated", allTerminated)
	})

	t.Run("MissingImage", func(t *testing.T) {
		t.Parallel()
		c := overHTTP(t, d)
		for _, pol := range []corev1.PullPolicy{corev1.PullIfNotPresent, corev1.PullNever, corev1.PullAlways} {
			img := "e2e/missing-" + strings.ToLower(string(pol)) + ":" + uuid.NewString()[:8]
			data := podOf("missing-image", sh("c0", "echo must-not-run"), sh("c1", "true"))
			data.Pod.Spec.Containers[0].Image, data.Pod.Spec.Containers[0].ImagePullPolicy = img, pol
			_, err := c.Create(context.Background(), data)
			if api.ReasonOf(err) != api.ReasonImageNotFound || !strings.Contains(err.Error(), img) {
				t.Errorf("%s: %v (%s), want ImageNotFound naming %s", pol, err, api.ReasonOf(err), img)
			}
			if pol == corev1.PullIfNotPresent && (err == nil || !strings.Contains(err.Error(), "registry-1.docker.io")) {
				t.Errorf("%s: %v, want the pull's error", pol, err)
			}
			if left := dockerCLI(t, "ps", "-aq", "--filter", "label="+LabelUID+"="+string(data.Pod.UID)); left != "" {
				t.Errorf("%s: containers made for a pod whose image is missing: %s", pol, left)
			}
			if pol == corev1.PullIfNotPresent {
				// Once the image is there, the retried create runs the pod.
				dockerCLI(t, "tag", "busybox:latest", img)
				t.Cleanup(func() { _ = exec.Command("/usr/bin/docker", "-H", dockerHost, "rmi", img).Run() })
				create(t, d, data)
				waitFor(t, d, &data.Pod, "terminated", allTerminated)
			}
		}
	})
}
