//go:build e2e

package docker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/seed-3f807049/interlink/functions/api"
)

// probeSidecar is a sidecar whose pods are on a bridge network of their
// own (the test dockerd has no default bridge), which the sidecar reaches
// from the host: network probes connect to the pod's address there.
func probeSidecar(t *testing.T) *Sidecar {
	t.Helper()
	name := "ilprobe-" + uuid.NewString()[:8]
	dockerCLI(t, "network", "create", "--driver", "bridge", name)
	cfg := testConfig(t)
	cfg.NetworkMode = name
	cfg.AllowedHostPaths = []string{t.TempDir()}
	d := newSidecar(t, cfg)
	// Registered after newSidecar: runs before its Close, after the pods' deletes.
	t.Cleanup(func() {
		if left := dockerCLI(t, "ps", "-aq", "--filter", "network="+name); left != "" {
			t.Errorf("containers left behind: %s", left)
		}
		_ = d.Close()
		dockerCLI(t, "network", "rm", name)
	})
	return d
}

func execProbe(cmd string, period int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", cmd}}},
		PeriodSeconds: period, FailureThreshold: 1, TimeoutSeconds: 2}
}

func grace(p *corev1.Pod, s int64) { p.Spec.TerminationGracePeriodSeconds = &s }

func container0(st api.PodStatus) corev1.ContainerStatus {
	if len(st.Containers) == 0 {
		return corev1.ContainerStatus{}
	}
	return st.Containers[0]
}

// TestE2EProbes: probes and hooks act as the kubelet's on a real dockerd.
func TestE2EProbes(t *testing.T) {
	d := probeSidecar(t)
	t.Run("ReadinessFlips", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "sleep 3; touch /tmp/ready; sleep 600")
		c.ReadinessProbe = execProbe("test -e /tmp/ready", 1)
		data := podOf("readiness", c)
		grace(&data.Pod, 1)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return container0(st).State.Running != nil })
		if cs := container0(st); cs.Ready {
			t.Errorf("ready at once: %+v", cs)
		}
		waitFor(t, d, &data.Pod, "ready", func(st api.PodStatus) bool { return container0(st).Ready })
	})
	t.Run("LivenessRestarts", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "sleep 600")
		c.LivenessProbe = execProbe("exit 1", 1)
		data := podOf("liveness", c)
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		grace(&data.Pod, 1)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "restarted", func(st api.PodStatus) bool {
			cs := container0(st)
			return cs.RestartCount >= 1 && cs.State.Running != nil && cs.LastTerminationState.Terminated != nil
		})
		last := container0(st).LastTerminationState.Terminated
		if !strings.Contains(last.Message, "Liveness probe failed") || last.ExitCode != 137 && last.ExitCode != 143 {
			t.Errorf("last state %+v, want exit 137 or 143 and a message naming the liveness probe", last)
		}
	})
	t.Run("StartupGatesLiveness", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "sleep 4; touch /tmp/up; sleep 600")
		c.StartupProbe = execProbe("test -e /tmp/up", 1)
		c.StartupProbe.FailureThreshold = 30
		c.LivenessProbe = execProbe("test -e /tmp/up", 1) // would kill it at once without the startup probe
		data := podOf("startup", c)
		data.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		grace(&data.Pod, 1)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return container0(st).State.Running != nil })
		if cs := container0(st); cs.Started == nil || *cs.Started || cs.Ready {
			t.Errorf("started or ready before the startup probe passed: %+v", cs)
		}
		waitFor(t, d, &data.Pod, "started", func(st api.PodStatus) bool { cs := container0(st); return cs.Started != nil && *cs.Started && cs.Ready })
		time.Sleep(2 * time.Second)
		st = waitFor(t, d, &data.Pod, "status", func(api.PodStatus) bool { return true })
		if cs := container0(st); cs.RestartCount != 0 {
			t.Errorf("restarted: %+v", cs)
		}
	})
	t.Run("HTTPGetAndTCPSocket", func(t *testing.T) {
		t.Parallel()
		web := sh("web", "mkdir -p /www && echo ok > /www/index.html; sleep 2; exec httpd -f -p 8080 -h /www")
		web.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		web.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromString("http")}}, PeriodSeconds: 1}
		tcp := sh("tcp", "sleep 2; exec nc -ll -p 9090 -e true")
		tcp.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9090)}}, PeriodSeconds: 1}
		data := podOf("network", web, tcp)
		grace(&data.Pod, 1)
		create(t, d, data)
		waitFor(t, d, &data.Pod, "ready", func(st api.PodStatus) bool {
			return len(st.Containers) == 2 && st.Containers[0].Ready && st.Containers[1].Ready
		})
	})
	t.Run("PostStart", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "until test -e /tmp/hook; do sleep 0.2; done; cat /tmp/hook")
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo from-post-start > /tmp/hook"}}}}
		data := podOf("poststart", c)
		create(t, d, data)
		waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if got := logs(t, d, &data.Pod, "c0", api.ContainerLogOpts{}); got != "from-post-start\n" {
			t.Errorf("log %q, want the hook's line", got)
		}
	})
	t.Run("PostStartFails", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "sleep 600")
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "exit 3"}}}}
		data := podOf("poststartfails", c)
		grace(&data.Pod, 1)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		if m := container0(st).State.Terminated.Message; !strings.Contains(m, "FailedPostStartHook") {
			t.Errorf("message %q, want FailedPostStartHook", m)
		}
	})
	t.Run("PreStop", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "sleep 600")
		c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo pre-stop-ran > /out/stop"}}}}
		data := podOf("prestop", c)
		data.Pod.Spec.Volumes = []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: d.cfg.AllowedHostPaths[0]}}}}
		grace(&data.Pod, 5)
		create(t, d, data)
		waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return container0(st).State.Running != nil })
		t0 := time.Now()
		if err := d.Delete(context.Background(), &data.Pod); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(t0); el > 7*time.Second {
			t.Errorf("delete took %v, more than the grace period", el)
		}
		if got, _ := os.ReadFile(d.cfg.AllowedHostPaths[0] + "/stop"); string(got) != "pre-stop-ran\n" {
			t.Errorf("preStop wrote %q", got)
		}
	})
	t.Run("PreStopBounded", func(t *testing.T) {
		t.Parallel()
		c := sh("c0", "sleep 600")
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "60"}}}}
		data := podOf("prestopbounded", c)
		grace(&data.Pod, 2)
		create(t, d, data)
		waitFor(t, d, &data.Pod, "running", func(st api.PodStatus) bool { return container0(st).State.Running != nil })
		t0 := time.Now()
		if err := d.Delete(context.Background(), &data.Pod); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(t0); el > 5*time.Second {
			t.Errorf("delete took %v with a grace period of 2 s", el)
		}
	})
	t.Run("TerminationMessage", func(t *testing.T) {
		t.Parallel()
		file := sh("file", "echo -n written-message > /dev/termination-log; exit 2")
		custom := sh("custom", "echo -n custom-path > /tmp/msg; exit 0")
		custom.TerminationMessagePath = "/tmp/msg"
		logs := sh("logs", "echo line-one; echo last-line; exit 1")
		logs.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		data := podOf("termmsg", file, custom, logs)
		create(t, d, data)
		st := waitFor(t, d, &data.Pod, "terminated", allTerminated)
		want := map[string]string{"file": "written-message", "custom": "custom-path", "logs": "line-one\nlast-line\n"}
		for _, cs := range st.Containers {
			if got := cs.State.Terminated.Message; got != want[cs.Name] {
				t.Errorf("%s: message %q, want %q", cs.Name, got, want[cs.Name])
			}
		}
		// The files are the containers' to write, their directory closed to
		// other users of the host.
		dir := filepath.Join(d.dataDir, data.Pod.Namespace+"-"+string(data.Pod.UID), terminationDir)
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", dir, fi, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "file")); err != nil || fi.Mode().Perm() != 0o666 {
			t.Errorf("termination-log/file: %v %v, want mode 0666", fi, err)
		}
	})
}
