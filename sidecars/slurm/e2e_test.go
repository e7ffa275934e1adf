//go:build e2e

package slurm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions"
	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/functions/client"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/sidecarstest"
)

// The e2e tier runs a private SLURM (slurm-wlm, started by .ci/slurm.sh on
// free loopback ports) and real containers with Charliecloud.

var (
	slurmDir string // the private SLURM's directory
	imageDir string // holds the busybox image directory
	envExec  string // the interlink-envexec helper, built for the tests
	// proberBin is the interlink-prober helper, built for the tests.
	proberBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	script, _ := filepath.Abs("../../.ci/slurm.sh")
	for _, c := range []string{"slurmctld", "munged", "ch-run", "sbatch"} {
		if _, err := exec.LookPath(c); err != nil {
			if _, err := os.Stat("/usr/sbin/" + c); err == nil {
				continue
			}
			if os.Getenv("CI") == "true" {
				fmt.Fprintf(os.Stderr, "FAIL: %s is missing: run .ci/slurm.sh install\n", c)
				return 1
			}
			fmt.Fprintf(os.Stderr, "SKIP: %s is missing (run .ci/slurm.sh install)\n", c)
			return 0
		}
	}
	base, err := os.MkdirTemp("", "interlink-slurm-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = os.Chmod(base, 0o755)
	defer func() { _ = os.RemoveAll(base) }()
	slurmDir, imageDir, envExec = filepath.Join(base, "slurm"), filepath.Join(base, "images"), filepath.Join(base, "interlink-envexec")
	if out, err := exec.Command("go", "build", "-o", envExec, "./cmd/interlink-envexec").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build interlink-envexec: %v\n%s", err, out)
		return 1
	}
	proberBin = filepath.Join(base, "interlink-prober")
	build := exec.Command("go", "build", "-o", proberBin, "./cmd/interlink-prober")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build interlink-prober: %v\n%s", err, out)
		return 1
	}
	for _, args := range [][]string{{"image", imageDir}, {"up", slurmDir}} {
		cmd := exec.Command(script, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "slurm.sh %s: %v\n", args[0], err)
			_ = exec.Command(script, "down", slurmDir).Run()
			return 1
		}
	}
	defer func() {
		cmd := exec.Command(script, "down", slurmDir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		_ = cmd.Run()
	}()
	os.Setenv("SLURM_CONF", filepath.Join(slurmDir, "slurm.conf"))
	return m.Run()
}

// newSidecar returns a SLURM sidecar running containers with Charliecloud,
// its data and state under a fresh directory (or stateDir, to restart one).
func newSidecar(t testing.TB, stateDir string) *Sidecar {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
		_ = os.Chmod(stateDir, 0o755)
	}
	cfg := DefaultConfig()
	cfg.DataRootFolder = filepath.Join(stateDir, "jobs")
	cfg.StatePath = filepath.Join(stateDir, "state.db")
	cfg.Runtime = RuntimeCharliecloud
	cfg.ImageRoot = imageDir
	cfg.EnvExecPath = envExec
	cfg.ProberPath = proberBin
	cfg.Accounting = true
	cfg.SacctArgs = []string{"-c"} // the jobcomp file: no slurmdbd here
	cfg.LogPollInterval = config.D(100 * time.Millisecond)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestE2EConformance(t *testing.T) {
	s := newSidecar(t, "")
	sidecarstest.Run(t, s, sidecarstest.Config{Timeout: 60 * time.Second, WantLog: "conformance-hello", Concurrency: 6})
}

// e2ePod is a pod of busybox containers running the given shell commands.
func e2ePod(name string, cmds ...string) *api.RetrievedPodData {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e", UID: types.UID(uuid.NewString()), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever},
	}
	data := &api.RetrievedPodData{Pod: p}
	for i, c := range cmds {
		data.Pod.Spec.Containers = append(data.Pod.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("c%d", i), Image: "busybox", Command: []string{"/bin/sh", "-c", c}})
		data.Containers = append(data.Containers, api.RetrievedContainer{Name: fmt.Sprintf("c%d", i)})
	}
	return data
}

func create(t *testing.T, s *Sidecar, d *api.RetrievedPodData) string {
	t.Helper()
	res, err := s.Create(context.Background(), d)
	if err != nil {
		t.Fatalf("create %s: %v", d.Pod.Name, err)
	}
	t.Cleanup(func() { _ = s.Delete(context.Background(), &d.Pod) })
	return res.PodJID
}

// waitFor polls the pod's status until ok says so.
func waitFor(t *testing.T, s *Sidecar, p *corev1.Pod, timeout time.Duration, what string, ok func(api.PodStatus) bool) api.PodStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last api.PodStatus
	for time.Now().Before(deadline) {
		st, err := s.Status(context.Background(), []corev1.Pod{*p})
		if err == nil && len(st) == 1 {
			last = st[0]
			if ok(last) {
				return last
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("pod %s: not %s within %s; last status %+v", p.Name, what, timeout, last)
	return last
}

func terminated(st api.PodStatus) bool {
	for _, c := range append(append([]corev1.ContainerStatus{}, st.InitContainers...), st.Containers...) {
		if c.State.Terminated == nil && (c.State.Waiting == nil || c.State.Waiting.Reason != "PodInitializing") {
			return false
		}
	}
	return len(st.Containers) > 0
}

func logs(t *testing.T, s *Sidecar, p *corev1.Pod, container string, opts api.ContainerLogOpts) string {
	t.Helper()
	rc, err := s.Logs(context.Background(), &api.LogRequest{Namespace: p.Namespace, PodUID: string(p.UID), PodName: p.Name, ContainerName: container, Opts: opts})
	if err != nil {
		t.Fatalf("logs %s/%s: %v", p.Name, container, err)
	}
	defer func() { _ = rc.Close() }()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func slurmCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestE2EJobs(t *testing.T) {
	s := newSidecar(t, "")
	t.Run("ExitCode3", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("exit3", "echo failing; exit 3")
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
		if c := st.Containers[0].State.Terminated; c.ExitCode != 3 || c.Reason != "Error" {
			t.Errorf("terminated %+v, want exit code 3, reason Error", c)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("timeout", "echo start; sleep 600")
		d.Pod.Spec.ActiveDeadlineSeconds = ptr(int64(30)) // Slurm rounds up to a minute
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, 3*time.Minute, "terminated", terminated)
		if c := st.Containers[0].State.Terminated; c.Reason != "DeadlineExceeded" || c.ExitCode == 0 {
			t.Errorf("terminated %+v, want DeadlineExceeded", c)
		}
	})
	t.Run("OutOfMemory", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("oom", "echo eating; x=$(head -c 400000000 /dev/zero | tr '\\0' a); sleep 30")
		d.Pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")}
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, 2*time.Minute, "terminated", terminated)
		if c := st.Containers[0].State.Terminated; c.Reason != "OOMKilled" || c.ExitCode != 137 {
			t.Errorf("terminated %+v, want OOMKilled with 137", c)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("cancelled", "echo start; sleep 600")
		jid := create(t, s, d)
		waitFor(t, s, &d.Pod, time.Minute, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
		slurmCmd(t, "scancel", jid)
		st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
		if c := st.Containers[0].State.Terminated; c.Reason != "Cancelled" || c.ExitCode != 143 {
			t.Errorf("terminated %+v, want Cancelled with 143", c)
		}
	})
	t.Run("PendingWithReason", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("held", "echo never")
		d.Pod.Annotations[AnnotationFlags] = "--hold"
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, time.Minute, "waiting", func(st api.PodStatus) bool { return st.Containers[0].State.Waiting != nil })
		if w := st.Containers[0].State.Waiting; w.Reason != "JobHeldUser" || !strings.Contains(w.Message, "PENDING") {
			t.Errorf("waiting %+v, want the Slurm reason JobHeldUser", w)
		}
	})
	t.Run("InitOrderAndSharedEmptyDir", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("init", "cat /shared/order; while [ ! -f /shared/from-c2 ]; do sleep 0.2; done; cat /shared/from-c2",
			"echo hello-from-c2 > /shared/from-c2")
		for i, c := range []string{"echo first >> /shared/order", "sleep 1; echo second >> /shared/order"} {
			d.Pod.Spec.InitContainers = append(d.Pod.Spec.InitContainers, corev1.Container{
				Name: fmt.Sprintf("init%d", i), Image: "busybox", Command: []string{"/bin/sh", "-c", c}})
		}
		d.Pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		for _, cs := range [][]corev1.Container{d.Pod.Spec.InitContainers, d.Pod.Spec.Containers} {
			for i := range cs {
				cs[i].VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
			}
		}
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
		for _, c := range append(st.InitContainers, st.Containers...) {
			if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
				t.Errorf("container %s: %+v, want exit 0", c.Name, c.State)
			}
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); got != "first\nsecond\nhello-from-c2\n" {
			t.Errorf("c0 logs %q: want the init containers in order, then c2's file", got)
		}
	})
	// An emptyDir subPath is bound from the directory the job opened beneath
	// the volume; a symlink swapped in by an init container (to the host's
	// /) is refused when the container starts, never followed.
	t.Run("SubPathAndSymlinkSwap", func(t *testing.T) {
		t.Parallel()
		marker := t.TempDir()
		for _, tc := range []struct {
			name, init, main string
			wantExit         bool
		}{
			{"subpath-ok", "mkdir -p /ed/sub && echo inside > /ed/sub/f", "cat /sub/f", true},
			{"subpath-swap", "rm -rf /ed/sub; ln -s / /ed/sub", "ls /sub; touch /sub" + marker + "/escaped", false},
			{"subpath-swap-deep", "rm -rf /ed/a/b; ln -s " + marker + " /ed/a/b", "touch /sub/escaped", false},
		} {
			d := e2ePod(tc.name, tc.main)
			sub := "sub"
			if tc.name == "subpath-swap-deep" {
				sub = "a/b"
			}
			d.Pod.Spec.Volumes = []corev1.Volume{{Name: "ed", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			d.Pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Command: []string{"/bin/sh", "-c", tc.init},
				VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/ed"}}}}
			d.Pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "ed", MountPath: "/sub", SubPath: sub}}
			create(t, s, d)
			st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
			c := st.Containers[0].State.Terminated
			out := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{})
			if tc.wantExit && (c.ExitCode != 0 || out != "inside\n") {
				t.Errorf("%s: %+v %q, want exit 0 and the file", tc.name, c, out)
			}
			if !tc.wantExit && (c.ExitCode == 0 || !strings.Contains(out, "crosses a symlink")) {
				t.Errorf("%s: %+v %q, want a refusal naming the symlink", tc.name, c, out)
			}
		}
		if entries, _ := os.ReadDir(marker); len(entries) != 0 {
			t.Errorf("a container wrote on the host through a swapped subPath: %v", entries)
		}
	})
	t.Run("FailedInitStopsThePod", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("init-fails", "echo must-not-run")
		d.Pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Command: []string{"/bin/sh", "-c", "exit 4"}}}
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, time.Minute, "terminated", func(st api.PodStatus) bool {
			return len(st.InitContainers) == 1 && st.InitContainers[0].State.Terminated != nil && st.Containers[0].State.Terminated != nil
		})
		if code := st.InitContainers[0].State.Terminated.ExitCode; code != 4 {
			t.Errorf("init exit code %d, want 4", code)
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); strings.Contains(got, "must-not-run") {
			t.Errorf("the container ran after its init container failed: %q", got)
		}
	})
	t.Run("ConfigMapSecretAndLiteralEnv", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("data", `cat /etc/cfg/greeting; echo; stat -c '%a' /etc/sec/password; cat /etc/sec/password; echo; printf '%s|' "$EVIL"; echo; ls /tmp/pwned 2>&1`)
		d.Pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "EVIL", Value: "$(touch /tmp/pwned) `id` 'q' \"d\"\nline2 ; rm -rf ~"}}
		d.Pod.Spec.Volumes = []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
		}
		d.Pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "sec", MountPath: "/etc/sec"}}
		d.Containers[0].ConfigMaps = []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"greeting": "hello $(id)"}}}
		d.Containers[0].Secrets = []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("p4ss")}}}
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
		got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{})
		want := "hello $(id)\n600\np4ss\n$(touch /tmp/pwned) `id` 'q' \"d\"\nline2 ; rm -rf ~|\nls: /tmp/pwned: No such file or directory\n"
		if got != want {
			t.Errorf("logs:\n%q\nwant\n%q (status %+v)", got, want, st.Containers[0].State)
		}
		if _, err := os.Stat("/tmp/pwned"); err == nil {
			t.Error("an env value was executed on the host")
		}
	})
	t.Run("GPUGres", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("gpu", "echo gpu")
		d.Pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{resourceNvidiaGPU: resource.MustParse("1")}
		jid := create(t, s, d)
		out := slurmCmd(t, "scontrol", "show", "job", jid)
		if !strings.Contains(out, "gres/gpu=1") && !strings.Contains(out, "gres:gpu:1") {
			t.Errorf("job %s does not hold a GPU:\n%s", jid, out)
		}
		waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
	})
	t.Run("LogsFollowAndOptions", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("logs", "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done")
		create(t, s, d)
		waitFor(t, s, &d.Pod, time.Minute, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
		followed := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{Follow: true})
		if followed != "line1\nline2\nline3\nline4\nline5\n" {
			t.Errorf("followed logs %q", followed)
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{Tail: 2}); got != "line4\nline5\n" {
			t.Errorf("tail 2: %q", got)
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{LimitBytes: 8}); got != "line1\nli" {
			t.Errorf("limit 8 bytes: %q", got)
		}
		ts := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{Timestamps: true, Tail: 1})
		stamp, text, _ := strings.Cut(ts, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || text != "line5\n" || time.Since(at) > time.Minute {
			t.Errorf("timestamped line %q: %v", ts, err)
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{SinceTime: at}); got != "line5\n" {
			t.Errorf("since the last line's time: %q", got)
		}
	})
	// ch-run binds only read-write: the helper makes a readOnly mount
	// read-only, and the reader can undo it neither by a remount nor with a
	// capability; the writer of the same emptyDir still writes.
	t.Run("ReadOnlyMount", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("readonly",
			`echo data > /shared/from-writer; while [ ! -f /signal/done ]; do sleep 0.2; done; cat /shared/from-writer; echo more >> /shared/from-writer && echo writer-still-writes`,
			`while [ ! -f /shared/from-writer ]; do sleep 0.2; done
rm /shared/from-writer 2>/dev/null || echo rm-refused
touch /shared/new 2>/dev/null || echo touch-refused
mount -o remount,rw /shared 2>/dev/null || echo remount-refused
touch /shared/new 2>/dev/null || echo still-refused
touch /.interlink/new 2>/dev/null || echo helper-dir-refused
grep CapBnd /proc/self/status
cat /shared/from-writer
touch /signal/done`)
		d.Pod.Spec.Volumes = []corev1.Volume{
			{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "signal", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
		d.Pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}, {Name: "signal", MountPath: "/signal"}}
		d.Pod.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared", ReadOnly: true}, {Name: "signal", MountPath: "/signal"}}
		create(t, s, d)
		st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
		for _, c := range st.Containers {
			if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
				t.Errorf("container %s: %+v, want exit 0", c.Name, c.State)
			}
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); got != "data\nwriter-still-writes\n" {
			t.Errorf("writer logs %q: want its file kept and still writable", got)
		}
		got := logs(t, s, &d.Pod, "c1", api.ContainerLogOpts{})
		head, bnd, _ := strings.Cut(got, "CapBnd:")
		if want := "rm-refused\ntouch-refused\nremount-refused\nstill-refused\nhelper-dir-refused\n"; head != want {
			t.Errorf("reader logs %q: want %q first", got, want)
		}
		var caps uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(bnd), "%x", &caps); err != nil || caps&(1<<21) != 0 { // CAP_SYS_ADMIN
			t.Errorf("reader's bounding set %q (%v): want it without CAP_SYS_ADMIN", bnd, err)
		}
		if !strings.HasSuffix(got, "\ndata\n") {
			t.Errorf("reader logs %q: want the writer's file", got)
		}
	})
	// restartPolicy OnFailure: an init container and a container that each
	// fail on their first run (a counter in an emptyDir) are started again
	// after the kubelet's first back-off, 10 s, and the pod succeeds.
	t.Run("RestartOnFailure", func(t *testing.T) {
		t.Parallel()
		failOnce := func(name string) string {
			return "n=$(cat /data/" + name + " 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/" + name + "; echo " + name + "-run$n; [ $n -ge 2 ]"
		}
		d := e2ePod("restart-on-failure", failOnce("main"))
		d.Pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		d.Pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Command: []string{"/bin/sh", "-c", failOnce("init")}}}
		d.Pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		for _, c := range []*corev1.Container{&d.Pod.Spec.InitContainers[0], &d.Pod.Spec.Containers[0]} {
			c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}
		jid := create(t, s, d)
		backedOff := map[string]bool{}
		st := waitFor(t, s, &d.Pod, 2*time.Minute, "terminated", func(st api.PodStatus) bool {
			for _, c := range append(append([]corev1.ContainerStatus{}, st.InitContainers...), st.Containers...) {
				if w := c.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
					backedOff[c.Name] = true
					if want := "back-off 10s restarting failed container " + c.Name; w.Message != want || c.RestartCount != 0 ||
						c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.ExitCode != 1 {
						t.Errorf("waiting to restart: %+v, want %q, no restart yet and the failed run as last state", c, want)
					}
				}
			}
			return terminated(st)
		})
		for _, c := range append(st.InitContainers, st.Containers...) {
			if tm := c.State.Terminated; tm == nil || tm.ExitCode != 0 || tm.Reason != "Completed" || c.RestartCount != 1 ||
				c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.ExitCode != 1 ||
				tm.StartedAt.Sub(c.LastTerminationState.Terminated.FinishedAt.Time) < 9*time.Second {
				t.Errorf("container %s: %+v, want it succeeded after one restart, 10 s after the failed run", c.Name, c)
			}
			if !backedOff[c.Name] {
				t.Errorf("container %s was never seen in CrashLoopBackOff", c.Name)
			}
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); got != "main-run1\nmain-run2\n" {
			t.Errorf("logs %q, want both runs", got)
		}
		if out := strings.TrimSpace(slurmCmd(t, "squeue", "--noheader", "--states=all", "--jobs="+jid, "--format=%T")); out != "COMPLETED" && out != "COMPLETING" {
			t.Errorf("job %s is %s, want COMPLETED", jid, out)
		}
	})
	// restartPolicy Always: a container that exits 0 is started again, and
	// its pod does not end until the job's time limit.
	t.Run("RestartAlways", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("restart-always", "echo tick")
		d.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		d.Pod.Spec.ActiveDeadlineSeconds = ptr(int64(30)) // Slurm rounds up to a minute
		jid := create(t, s, d)
		st := waitFor(t, s, &d.Pod, 2*time.Minute, "restarted and waiting again", func(st api.PodStatus) bool {
			if c := st.Containers[0]; c.State.Terminated != nil {
				t.Fatalf("the container ended: %+v", c)
			}
			c := st.Containers[0]
			return c.RestartCount >= 1 && c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff"
		})
		c := st.Containers[0]
		if last := c.LastTerminationState.Terminated; last == nil || last.ExitCode != 0 || last.Reason != "Completed" ||
			!strings.HasPrefix(c.State.Waiting.Message, "back-off 20s ") {
			t.Errorf("container %+v: want the second back-off (20 s) after a run that exited 0", c)
		}
		if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); !strings.HasPrefix(got, "tick\ntick\n") {
			t.Errorf("logs %q, want every run's lines", got)
		}
		if out := strings.TrimSpace(slurmCmd(t, "squeue", "--noheader", "--states=all", "--jobs="+jid, "--format=%T")); out != "RUNNING" {
			t.Errorf("job %s is %s, want RUNNING", jid, out)
		}
		st = waitFor(t, s, &d.Pod, 3*time.Minute, "terminated", terminated)
		if c := st.Containers[0]; c.State.Terminated.Reason != "DeadlineExceeded" || c.RestartCount < 2 {
			t.Errorf("at the time limit: %+v, want DeadlineExceeded after restarts", c)
		}
	})
	t.Run("ConcurrentCreatesOneJob", func(t *testing.T) {
		t.Parallel()
		d := e2ePod("once", "sleep 2")
		var wg sync.WaitGroup
		ids := make([]string, 5)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := s.Create(context.Background(), d)
				if err != nil {
					t.Error(err)
				}
				ids[i] = res.PodJID
			}()
		}
		wg.Wait()
		t.Cleanup(func() { _ = s.Delete(context.Background(), &d.Pod) })
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("job IDs %v: want one job", ids)
			}
		}
		out := slurmCmd(t, "squeue", "--noheader", "--states=all", "--name=e2e-once", "--format=%i")
		if n := len(strings.Fields(out)); n != 1 {
			t.Errorf("squeue lists %d jobs named e2e-once, want 1:\n%s", n, out)
		}
	})
}

// TestE2ERestarts: the sidecar restarted mid-job recovers it from its
// store; slurmctld restarted mid-job loses nothing.
func TestE2ERestarts(t *testing.T) {
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	s := newSidecar(t, dir)
	d := e2ePod("restart", "echo before; sleep 6; echo after")
	jid := create(t, s, d)
	waitFor(t, s, &d.Pod, time.Minute, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = newSidecar(t, dir)
	if res, err := s.Create(context.Background(), d); err != nil || res.PodJID != jid {
		t.Fatalf("create after restart: %+v %v, want the same job %s", res, err, jid)
	}
	script, _ := filepath.Abs("../../.ci/slurm.sh")
	if out, err := exec.Command(script, "restart-ctld", slurmDir).CombinedOutput(); err != nil {
		t.Fatalf("restart slurmctld: %v\n%s", err, out)
	}
	st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
	if c := st.Containers[0].State.Terminated; c.ExitCode != 0 {
		t.Errorf("after the restarts: %+v, want exit 0", c)
	}
	if got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{}); got != "before\nafter\n" {
		t.Errorf("logs %q", got)
	}
	if err := s.Delete(context.Background(), &d.Pod); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), &d.Pod); !api.IsNotFound(err) {
		t.Errorf("second delete: %v, want NotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs", "e2e-"+string(d.Pod.UID))); !os.IsNotExist(err) {
		t.Errorf("the pod directory is left after delete: %v", err)
	}
}

// TestE2EDeleteCancels: deleting a running pod leaves no job in squeue.
func TestE2EDeleteCancels(t *testing.T) {
	s := newSidecar(t, "")
	d := e2ePod("delete", "sleep 600")
	jid := create(t, s, d)
	waitFor(t, s, &d.Pod, time.Minute, "running", func(st api.PodStatus) bool { return st.Containers[0].State.Running != nil })
	if err := s.Delete(context.Background(), &d.Pod); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := slurmCmd(t, "squeue", "--noheader", "--states=all", "--jobs="+jid, "--format=%T")
		if st := strings.TrimSpace(out); st == "CANCELLED" || st == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after delete", jid, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestE2EPing(t *testing.T) {
	s := newSidecar(t, "")
	res, err := s.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Resources == nil || res.Resources.CPU == "" || res.Resources.Memory == "" || len(res.Resources.Accelerators) != 1 {
		t.Fatalf("ping %+v: want free CPU, memory and the two fake GPUs", res.Resources)
	}
	t.Logf("ping: cpu %s memory %s gpus %d", res.Resources.CPU, res.Resources.Memory, res.Resources.Accelerators[0].Available)
}

// TestE2ETsocks runs a container whose TCP goes through tsocks and an SSH
// SOCKS tunnel (a real sshd on loopback standing for the login node) to an
// HTTP server on this machine's own non-loopback address (tsocks never
// tunnels 127.0.0.0/8). The container is a dynamically linked GNU wget:
// LD_PRELOAD does nothing to a static busybox.
func TestE2ETsocks(t *testing.T) {
	script, _ := filepath.Abs("../../.ci/slurm.sh")
	sshDir := filepath.Join(t.TempDir(), "ssh")
	if out, err := exec.Command(script, "sshd-up", sshDir).CombinedOutput(); err != nil {
		t.Fatalf("sshd-up: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(script, "sshd-down", sshDir).Run() })
	env := readEnvFile(t, filepath.Join(sshDir, "ssh.env"))
	if env["HOST_IP"] == "" {
		e2eenv.Prerequisite(t, "a non-loopback address to tunnel to")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(env["HOST_IP"], "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "through-the-tunnel\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	images := t.TempDir()
	_ = os.Chmod(images, 0o755)
	dynamicImage(t, filepath.Join(imageDir, "busybox"), filepath.Join(images, "wget"), "/usr/bin/wget")

	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	cfg := DefaultConfig()
	cfg.DataRootFolder, cfg.StatePath = filepath.Join(dir, "jobs"), filepath.Join(dir, "state.db")
	cfg.Runtime, cfg.ImageRoot, cfg.EnvExecPath = RuntimeCharliecloud, images, envExec
	cfg.Tsocks, cfg.TsocksPath, cfg.TsocksLoginNode = true, env["TSOCKS_LIB"], "login"
	cfg.SSHArgs = []string{"-F", env["SSH_CONFIG"]}
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	d := e2ePod("tsocks", "")
	d.Pod.Spec.Containers[0].Image = "wget"
	// The full path: busybox sh would run its own wget applet for "wget".
	d.Pod.Spec.Containers[0].Command = []string{"/usr/bin/wget", "-q", "-O-", "http://" + ln.Addr().String() + "/"}
	create(t, s, d)
	st := waitFor(t, s, &d.Pod, time.Minute, "terminated", terminated)
	got := logs(t, s, &d.Pod, "c0", api.ContainerLogOpts{})
	if c := st.Containers[0].State.Terminated; c.ExitCode != 0 || got != "through-the-tunnel\n" {
		t.Fatalf("exit %d, logs %q", c.ExitCode, got)
	}
	sshdLog, _ := os.ReadFile(filepath.Join(sshDir, "sshd.log"))
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if want := "connected to " + env["HOST_IP"] + " port " + port; !strings.Contains(string(sshdLog), want) {
		t.Errorf("sshd did not forward the connection (%q not in its log): it went around the tunnel", want)
	}
}

func readEnvFile(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "="); ok {
			out[k] = v
		}
	}
	return out
}

// dynamicImage copies the busybox image to dst and adds bin with the
// shared libraries ldd lists for it.
func dynamicImage(t *testing.T, busybox, dst, bin string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", busybox, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy image: %v %s", err, out)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	files := []string{bin}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for _, f := range files {
		target := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(target) // busybox's applet link
		if out, err := exec.Command("cp", "-L", f, target).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v %s", f, err, out)
		}
	}
}

// TestE2EOrphanJobCancelled: a job the sidecar submitted but never recorded
// (it stopped between sbatch and saving the job ID) is cancelled when the
// sidecar starts again; jobs of other directories are left alone.
func TestE2EOrphanJobCancelled(t *testing.T) {
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	jobs := filepath.Join(dir, "jobs")
	other := t.TempDir()
	_ = os.Chmod(other, 0o755)
	if err := os.MkdirAll(jobs, 0o755); err != nil {
		t.Fatal(err)
	}
	submit := func(chdir string) string {
		out := slurmCmd(t, "sbatch", "--parsable", "--hold", "--comment="+jobComment(types.UID(uuid.NewString())),
			"--chdir="+chdir, "--output=/dev/null", "--wrap=sleep 600")
		id := strings.TrimSpace(out)
		t.Cleanup(func() { _ = exec.Command("scancel", id).Run() })
		return id
	}
	orphan, foreign := submit(jobs), submit(other)
	newSidecar(t, dir)
	state := func(id string) string {
		return strings.TrimSpace(slurmCmd(t, "squeue", "--noheader", "--states=all", "--jobs="+id, "--format=%T"))
	}
	if st := state(orphan); st != "CANCELLED" {
		t.Errorf("orphan job %s is %s, want CANCELLED", orphan, st)
	}
	if st := state(foreign); st != "PENDING" {
		t.Errorf("a job of another directory (%s) is %s, want it left PENDING", foreign, st)
	}
}

// TestE2EBinary runs interlink-slurm itself, configured by a YAML file with
// the original's keys, and drives it over HTTP: ping, a pod, /metrics.
func TestE2EBinary(t *testing.T) {
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "interlink-slurm")
	// The helper beside the sidecar, where an installation puts it.
	if out, err := exec.Command("go", "build", "-o", dir+"/", "./cmd/interlink-slurm", "./cmd/interlink-envexec").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	// On TCP the sidecar requires a credential: interlink's token, listed
	// in the sidecar's Auth.TokenFile and sent from its SidecarTokenFile.
	const token = "e2e-binary-sidecar-token" //nolint:gosec // G101: a test token
	tokens, tokenFile := filepath.Join(dir, "tokens.csv"), filepath.Join(dir, "sidecar-token")
	for f, data := range map[string]string{tokens: token + ",interlink\n", tokenFile: token + "\n"} {
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgFile := filepath.Join(dir, "slurm.yaml")
	yaml := fmt.Sprintf("Listen: %q\nAuth: {TokenFile: %q}\nDataRootFolder: %q\nStatePath: %q\nRuntime: charliecloud\nImageRoot: %q\nSbatchPath: sbatch\n",
		addr, tokens, filepath.Join(dir, "jobs"), filepath.Join(dir, "state.db"), imageDir)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without it, the sidecar does not start on TCP.
	noAuth := filepath.Join(dir, "no-auth.yaml")
	if err := os.WriteFile(noAuth, []byte(fmt.Sprintf("Listen: %q\nDataRootFolder: %q\nStatePath: %q\n", addr, filepath.Join(dir, "jobs"), filepath.Join(dir, "state.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--config", noAuth, "--config-test").CombinedOutput(); err == nil || !strings.Contains(string(out), "Auth.TokenFile") {
		t.Errorf("a TCP sidecar without a credential: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--config", cfgFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c, err := sidecars.NewClient(sidecars.ClientConfig{URL: "http://" + addr, Retries: 1, Header: client.NewTokenFile(tokenFile).Header})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := c.Ping(ctx)
		if err == nil && res.Resources != nil && res.Resources.CPU != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ping answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A caller without the token (any local user) gets 401, whatever it asks.
	for _, tc := range []struct{ path, token string }{{api.PathCreate, ""}, {api.PathStatus, ""}, {api.PathCreate, "not-" + token}} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+tc.path, strings.NewReader("{}"))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with token %q: %d, want 401", tc.path, tc.token, resp.StatusCode)
		}
	}
	// interlink, configured with SidecarTokenFile, reaches it.
	ilCfg := functions.DefaultConfig()
	ilCfg.Sidecars, ilCfg.SidecarTokenFile = map[string]string{"slurm": "http://" + addr}, tokenFile
	il, _, err := functions.FromConfig(ilCfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	il.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, api.PathPing, nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "cpu") {
		t.Errorf("interlink's /pinglink through the sidecar's token: %d %s", rec.Code, rec.Body.String())
	}
	d := e2ePod("binary", "echo from-the-binary")
	if _, err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Minute)
	for {
		st, err := c.Status(ctx, []corev1.Pod{d.Pod})
		if err == nil && len(st) == 1 && st[0].Containers[0].State.Terminated != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod did not end: %+v %v", st, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{`interlink_slurm_command_duration_seconds_count{command="sbatch"} 1`, `interlink_slurm_submit_duration_seconds_count 1`, `interlink_build_info{binary="interlink-slurm"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := c.Delete(ctx, &d.Pod); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), token) {
		t.Errorf("the token was logged:\n%s", stderr.String())
	}
}
