//go:build e2e

package slurm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// TestE2EProbes runs probes, hooks and termination messages in real jobs
// with Charliecloud: exec probes through nsenter into the container.
func TestE2EProbes(t *testing.T) {
	s := newSidecar(t, "")
	execProbe := func(cmd string, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", cmd}}},
			PeriodSeconds: period, FailureThreshold: 1}
	}

	t.Run("ReadinessAndPreStop", func(t *testing.T) {
		t.Parallel()
		// Ready once /tmp/ready exists (in the container's private /tmp);
		// the preStop hook writes to an emptyDir, and the postStart hook
		// ran before (it made /tmp/hooked).
		d := e2ePod("probes-ready", `trap 'exit 0' TERM; sleep 4; touch /tmp/ready; while :; do sleep 1; done`)
		d.Pod.Spec.TerminationGracePeriodSeconds = ptr(int64(10))
		d.Pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		c := &d.Pod.Spec.Containers[0]
		c.VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
		c.ReadinessProbe = execProbe("test -e /tmp/ready", 1)
		c.Lifecycle = &corev1.Lifecycle{
			PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "touch /tmp/hooked"}}},
			PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c",
				"test -e /tmp/hooked && echo bye from $GREETING > /shared/bye; sleep 3"}}},
		}
		c.Env = []corev1.EnvVar{{Name: "GREETING", Value: "main"}}
		create(t, s, d)
		waitFor(t, s, &d.Pod, 90*time.Second, "running, not ready", func(st api.PodStatus) bool {
			cs := st.Containers[0]
			return cs.State.Running != nil && !cs.Ready && cs.Started != nil && *cs.Started
		})
		waitFor(t, s, &d.Pod, 60*time.Second, "ready", func(st api.PodStatus) bool { return st.Containers[0].Ready })

		bye := filepath.Join(s.rootDir, d.Pod.Namespace+"-"+string(d.Pod.UID), dataDirName, "volumes", "shared", "bye")
		// Delete returns once the job is signaled; the preStop hook writes,
		// then sleeps 3 s before the container gets SIGTERM, and the pod is
		// removed once the job ended.
		start := time.Now()
		if err := s.Delete(context.Background(), &d.Pod); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("Delete took %s: it should return once the job is signaled", took)
		}
		var got []byte
		for deadline := time.Now().Add(20 * time.Second); got == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if b, err := os.ReadFile(bye); err == nil && len(b) > 0 {
				got = b
			}
		}
		if string(got) != "bye from main\n" {
			t.Errorf("the preStop hook wrote %q", got)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if _, ok := s.store.get(string(d.Pod.UID)); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the pod is still there 30 s after its deletion (grace 10 s)")
			}
		}
	})

	t.Run("LivenessRestarts", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("probes-live", `touch /tmp/alive; sleep 3; rm /tmp/alive; while :; do sleep 1; done`)
		d.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		d.Pod.Spec.Containers[0].LivenessProbe = execProbe("test -e /tmp/alive", 1)
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, 120*time.Second, "restarted by its liveness probe", func(st api.PodStatus) bool {
			cs := st.Containers[0]
			return cs.RestartCount >= 1 && cs.LastTerminationState.Terminated != nil
		})
		if m := st.Containers[0].LastTerminationState.Terminated.Message; !strings.Contains(m, "Liveness probe failed") {
			t.Errorf("last state %+v, want the liveness failure", st.Containers[0].LastTerminationState.Terminated)
		}
	})

	t.Run("Exec", func(t *testing.T) {
		t.Parallel()
		// kubectl exec: srun joins the job, the prober enters the
		// container's current run (its private /tmp, its env), and the
		// command's output and exit code come back.
		d := e2ePod("probes-exec", `echo inside > /tmp/made-by-main; while :; do sleep 1; done`)
		d.Pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "it's 'quoted' $HOME"}}
		create(t, s, d)
		waitFor(t, s, &d.Pod, 90*time.Second, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
		req := &api.ExecRequest{Namespace: d.Pod.Namespace, PodName: d.Pod.Name, PodUID: string(d.Pod.UID), ContainerName: "c0",
			Command: []string{"/bin/sh", "-c", `cat /tmp/made-by-main; printf '%s\n' "$GREETING"; exit 7`}}
		var out strings.Builder
		var code int
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for {
			out.Reset()
			code, err = s.Exec(context.Background(), req, &out)
			if err != nil || code != 126 || time.Now().After(deadline) {
				break // 126: the runtime had not entered the container yet
			}
			time.Sleep(time.Second)
		}
		if err != nil || code != 7 || out.String() != "inside\nit's 'quoted' $HOME\n" {
			t.Errorf("exec: code %d, err %v, output %q", code, err, out.String())
		}
		req.ContainerName = "nope"
		if _, err := s.Exec(context.Background(), req, &out); !api.IsNotFound(err) {
			t.Errorf("exec in a container the pod lacks: %v, want not found", err)
		}
	})

	t.Run("TerminationMessage", func(t *testing.T) {
		t.Parallel()
		// ch-run binds the host's /dev: the message goes elsewhere.
		d := e2ePod("probes-msg", `printf 'all done' > /tmp/msg; exit 3`, `echo first; echo last words; exit 4`)
		d.Pod.Spec.Containers[0].TerminationMessagePath = "/tmp/msg"
		d.Pod.Spec.Containers[1].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, 90*time.Second, "terminated", terminated)
		for i, want := range []string{"all done", "first\nlast words\n"} {
			if tm := st.Containers[i].State.Terminated; tm == nil || tm.Message != want {
				t.Errorf("container %d: %+v, want message %q", i, st.Containers[i].State.Terminated, want)
			}
		}
	})
}
