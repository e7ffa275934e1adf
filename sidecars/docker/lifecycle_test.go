package docker

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// TestLifecycleValidation: invalid probes and hooks, and what the sidecar
// cannot probe, are refused at create naming the container and the field.
func TestLifecycleValidation(t *testing.T) {
	d := testDocker(t, nil)
	exec := corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}
	for _, tc := range []struct {
		name string
		mut  func(c *corev1.Container)
		want string // "" for valid
	}{
		{name: "Valid", mut: func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: exec}
			c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}}
		}},
		{name: "NoHandler", mut: func(c *corev1.Container) { c.LivenessProbe = &corev1.Probe{} },
			want: "container c0: livenessProbe: names 0 handlers"},
		{name: "TwoHandlers", mut: func(c *corev1.Container) {
			c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: exec.Exec, Sleep: &corev1.SleepAction{Seconds: 1}}}
		}, want: "container c0: lifecycle.postStart: names 2 handlers"},
		{name: "HostOfItsOwn", mut: func(c *corev1.Container) {
			c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "169.254.169.254", Port: intstr.FromInt32(80)}}}
		}, want: `container c0: startupProbe: host "169.254.169.254"`},
		{name: "BadPolicy", mut: func(c *corev1.Container) { c.TerminationMessagePolicy = "Other" },
			want: `terminationMessagePolicy "Other"`},
		{name: "RelativeMessagePath", mut: func(c *corev1.Container) { c.TerminationMessagePath = "tmp/msg" },
			want: `terminationMessagePath "tmp/msg"`},
		{name: "MessagePathOnAVolume", mut: func(c *corev1.Container) {
			c.TerminationMessagePath = "/v"
			c.VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/v/"}}
		}, want: `is the mount path of volume "v"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := secPod(func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
				tc.mut(&p.Spec.Containers[0])
			})
			specs, _, err := d.podSpecs(data, "/data/ns-uid-1")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				l := lifecycleOf(specs[0].create.Labels)
				if l.Readiness == nil || l.preStop() == nil || !l.gated() {
					t.Errorf("label %q lost the probes", specs[0].create.Labels[LabelLifecycle])
				}
				return
			}
			if api.ReasonOf(err) != api.ReasonInvalid || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want an Invalid error saying %q", err, tc.want)
			}
		})
	}
}

// TestNetworkHandlersWithoutNetwork: a pod on NetworkMode none has no
// address the sidecar reaches: httpGet, tcpSocket and grpc are refused.
func TestNetworkHandlersWithoutNetwork(t *testing.T) {
	d := testDocker(t, func(c *Config) { c.NetworkMode = "none" })
	data := secPod(func(p *corev1.Pod) {
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
	})
	if _, _, err := d.podSpecs(data, "/d"); err == nil || !strings.Contains(err.Error(), "NetworkMode is none") {
		t.Errorf("%v, want the tcpSocket probe refused", err)
	}
}

// TestTerminationMounts: each container gets its own file (0666) at its
// terminationMessagePath, in a directory closed to other users (0700).
func TestTerminationMounts(t *testing.T) {
	specs := []spec{{name: "a", create: container.Config{Labels: map[string]string{}}},
		{name: "b", create: container.Config{Labels: map[string]string{LabelLifecycle: `{"path":"/tmp/msg"}`}}}}
	files := terminationMounts(specs, "/data/ns-uid")
	if len(files) != 3 || files[0].Mode != 0o700 || files[1].Path != "termination-log/a" || files[1].Mode != 0o666 {
		t.Errorf("files %+v", files)
	}
	for i, want := range []string{"/dev/termination-log", "/tmp/msg"} {
		m := specs[i].host.Mounts
		if len(m) != 1 || m[0].Target != want || m[0].Source != "/data/ns-uid/termination-log/"+specs[i].name {
			t.Errorf("%s: mounts %+v, want the file at %s", specs[i].name, m, want)
		}
	}
}

func tarOf(t *testing.T, h tar.Header, body string) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	h.Size = int64(len(body))
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
		body = ""
	}
	if err := w.WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(body))
	_ = w.Close()
	return &b
}

// TestMessageFromTar: a regular file, at most 4096 bytes; a symlink or a
// directory gives no message.
func TestMessageFromTar(t *testing.T) {
	big := strings.Repeat("x", 5000)
	if got := messageFromTar(tarOf(t, tar.Header{Name: "termination-log", Typeflag: tar.TypeReg, Mode: 0o644}, big), "termination-log"); len(got) != probe.MaxMessageBytes {
		t.Errorf("read %d bytes, want %d", len(got), probe.MaxMessageBytes)
	}
	if got := messageFromTar(tarOf(t, tar.Header{Name: "msg", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, ""), "msg"); got != nil {
		t.Errorf("symlink gave %q", got)
	}
	if got := messageFromTar(tarOf(t, tar.Header{Name: "msg/", Typeflag: tar.TypeDir, Mode: 0o755}, ""), "msg"); got != nil {
		t.Errorf("directory gave %q", got)
	}
	if got := messageFromTar(strings.NewReader("not a tar"), "msg"); got != nil {
		t.Errorf("garbage gave %q", got)
	}
}

func TestTailBuffer(t *testing.T) {
	var tb tailBuffer
	for range 300 {
		_, _ = tb.Write([]byte("0123456789\n"))
	}
	if len(tb.b) != probe.MaxLogMessageBytes || !strings.HasSuffix(string(tb.b), "0123456789\n") {
		t.Errorf("kept %d bytes ending %q", len(tb.b), tb.b[len(tb.b)-11:])
	}
	_, _ = tb.Write(bytes.Repeat([]byte("y"), 3000))
	if len(tb.b) != probe.MaxLogMessageBytes || tb.b[0] != 'y' {
		t.Errorf("a long write: kept %d bytes", len(tb.b))
	}
}

// TestSupervisedStatus: Started and Ready follow the supervisor for gated
// containers; termination messages and the sidecar's pending restart show.
func TestSupervisedStatus(t *testing.T) {
	const t0, t1 = "2026-01-02T03:04:05Z", "2026-01-02T03:04:07Z"
	gated := map[string]string{LabelContainer: "c0", LabelRole: roleApp, LabelLifecycle: `{"readiness":{"exec":{"command":["true"]}}}`}
	plain := map[string]string{LabelContainer: "c0", LabelRole: roleApp}
	running := &container.InspectResponse{HostConfig: &container.HostConfig{}, State: &container.State{Status: container.StateRunning, StartedAt: t0}}
	exited := &container.InspectResponse{HostConfig: &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways}},
		State: &container.State{Status: container.StateExited, ExitCode: 137, StartedAt: t0, FinishedAt: t1}}
	fin := parseTime(t1).Time
	for _, tc := range []struct {
		name         string
		labels       map[string]string
		in           *container.InspectResponse
		h            history
		ready, start bool
		waiting, msg string
		lastStateMsg string
	}{
		{name: "GatedNotYet", labels: gated, in: running, h: history{run: t0, started: true}, start: true},
		{name: "GatedReady", labels: gated, in: running, h: history{run: t0, started: true, ready: true}, start: true, ready: true},
		{name: "GatedOtherRun", labels: gated, in: running, h: history{run: "2025", started: true, ready: true}},
		{name: "Plain", labels: plain, in: running, start: true, ready: true},
		{name: "Message", labels: plain, in: exited, h: history{msgs: []runMessage{{fin, "bye"}}}, msg: "bye"},
		{name: "BackOff", labels: plain, in: exited, h: history{backoff: "Liveness probe failed: x", msgs: []runMessage{{fin, "Liveness probe failed: x"}}},
			waiting: "CrashLoopBackOff", lastStateMsg: "Liveness probe failed: x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := containerStatus(container.Summary{ID: "c1", Labels: tc.labels}, tc.in, true, tc.h, time.Now())
			if cs.State.Running != nil && (cs.Ready != tc.ready || cs.Started == nil || *cs.Started != tc.start) {
				t.Errorf("ready %v started %v, want %v %v", cs.Ready, cs.Started, tc.ready, tc.start)
			}
			if tc.msg != "" && (cs.State.Terminated == nil || cs.State.Terminated.Message != tc.msg) {
				t.Errorf("state %+v, want message %q", cs.State, tc.msg)
			}
			if tc.waiting != "" && (cs.State.Waiting == nil || cs.State.Waiting.Reason != tc.waiting ||
				cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.Message != tc.lastStateMsg) {
				t.Errorf("state %+v last %+v", cs.State, cs.LastTerminationState)
			}
		})
	}
}

// TestMessageOf: exact for Docker's end time, within a second for the
// time of a die event.
func TestMessageOf(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := []runMessage{{base, "first"}, {base.Add(500 * time.Millisecond), "second"}}
	if m, ok := messageOf(msgs, base.Add(450*time.Millisecond), time.Second); !ok || m != "second" {
		t.Errorf("nearest: %q %v", m, ok)
	}
	if _, ok := messageOf(msgs, base.Add(time.Millisecond), 0); ok {
		t.Error("exact lookup matched another time")
	}
	if _, ok := messageOf(msgs, base.Add(3*time.Second), time.Second); ok {
		t.Error("matched a run ended seconds apart")
	}
	d := &Sidecar{}
	d.addMessage("c", base, "")
	d.addMessage("c", base, "why")
	d.addMessage("c", base, "later")
	if m, _ := messageOf(d.historyCopy("c").msgs, base, 0); m != "why" {
		t.Errorf("message %q: an empty one is filled, a set one kept", m)
	}
}
