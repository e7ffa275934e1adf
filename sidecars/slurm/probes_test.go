package slurm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

// TestProberSpec: the spec holds the containers with probes or hooks, how
// the prober runs a command in each, and the grace period.
func TestProberSpec(t *testing.T) {
	for _, tt := range []struct {
		runtime   string
		wantExec  []string
		wantNs    string
		wantInner []string
	}{
		{RuntimeCharliecloud, nil, "/usr/bin/nsenter", []string{"/.interlink/envexec", "/.interlink/env", "--"}},
		{RuntimeApptainer, nil, "/usr/bin/nsenter", []string{"/.interlink/envexec", "/.interlink/env", "--"}},
		{RuntimePodman, []string{"podman", "exec", "il-" + testUID + "-main"}, "", []string{"/.interlink/envexec", "-C", "/srv", "/.interlink/env", "--"}},
	} {
		t.Run(tt.runtime, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Runtime, cfg.ImageRoot = tt.runtime, "/images"
			data := testPod()
			if tt.runtime == RuntimePodman {
				data = podmanTestPod()
			}
			withProbes(data)
			j := mustJob(t, cfg, data)
			var spec prober.Spec
			if err := json.Unmarshal(j.spec, &spec); err != nil {
				t.Fatal(err)
			}
			if err := spec.Validate(); err != nil {
				t.Error(err)
			}
			if len(spec.Containers) != 1 || spec.GracePeriodSeconds != 20 {
				t.Fatalf("spec %+v, want the main container and a grace of 20 s", spec)
			}
			// Every container is sampled, init containers too; Podman's
			// processes are found below the container's own first process,
			// the others' below the first that holds the helper.
			var pidOf func(string) []string
			if tt.runtime == RuntimePodman {
				pidOf = func(n string) []string {
					return []string{"podman", "container", "inspect", "--format", "{{.State.Pid}}", "il-" + testUID + "-" + n}
				}
			}
			var wantSampled []prober.Sampled
			for _, n := range []string{"setup", "main", "sidecar"} {
				s := prober.Sampled{Name: n}
				switch {
				case pidOf != nil:
					s.PIDOf = pidOf(n)
				case tt.runtime == RuntimeApptainer && n == "sidecar":
					// Run under mpiexec, with apptainer run and an env file, not the helper: rooted at the run.
				default: // rooted in the container, not at the runtime
					s.Inside = "/.interlink/envexec"
				}
				wantSampled = append(wantSampled, s)
			}
			if d := cmp.Diff(wantSampled, spec.Sampled); d != "" || spec.UsageInterval != 0 {
				t.Errorf("sampled (-want +got):\n%s", d)
			}
			c := spec.Containers[0]
			if c.Name != "main" || c.Host != "127.0.0.1" || c.LivenessProbe == nil || c.Lifecycle == nil || len(c.Ports) != 1 {
				t.Errorf("container %+v", c)
			}
			if diff := cmp.Diff(tt.wantExec, c.Exec); diff != "" || c.Nsenter != tt.wantNs || !cmp.Equal(tt.wantInner, c.Inner) {
				t.Errorf("exec %q nsenter %q inner %q, want %q %q %q", c.Exec, c.Nsenter, c.Inner, tt.wantExec, tt.wantNs, tt.wantInner)
			}
			want := podProbes{Probed: []string{"main"}, Messages: []string{"setup", "main", "sidecar"}, FallbackToLogs: []string{"main"}, StopGrace: 20, Usage: true}
			if tt.runtime == RuntimeCharliecloud {
				want.Messages = []string{"main"} // /dev/termination-log is the host's
			}
			if tt.runtime == RuntimeApptainer {
				want.Messages = []string{"setup", "main"} // the sidecar runs its image (no helper)
			}
			// Every container's entry is kept for kubectl exec, nsenter
			// whether or not its probes need it.
			wantEntry := prober.Container{Name: "main", Exec: tt.wantExec, Nsenter: tt.wantNs, Inner: tt.wantInner,
				Ports: data.Pod.Spec.Containers[0].Ports} // for kubectl port-forward
			if tt.runtime == RuntimePodman {
				wantEntry.Running = []string{"podman", "container", "inspect", "--format", "{{.State.Running}}", tt.wantExec[2]}
				wantEntry.ExecStdin = []string{"podman", "exec", "--interactive", tt.wantExec[2]}
				wantEntry.ExecTTY = []string{"podman", "exec", "--interactive", "--tty", tt.wantExec[2]}
			}
			if len(j.status.Entries) != len(data.Pod.Spec.Containers) || !cmp.Equal(j.status.Entries[0], wantEntry) {
				t.Errorf("entries %+v, want %+v first, one per container", j.status.Entries, wantEntry)
			}
			want.Entries = j.status.Entries
			if diff := cmp.Diff(want, j.status); diff != "" {
				t.Errorf("status needs (-want +got):\n%s", diff)
			}
			bashSyntax(t, j.script)
		})
	}
	// Without probes or hooks: the prober samples the usage alone; no
	// trap.
	j := mustJob(t, testConfig(t), testPod())
	var spec prober.Spec
	if err := json.Unmarshal(j.spec, &spec); err != nil || len(spec.Containers) != 0 || len(spec.Sampled) != 3 {
		t.Errorf("spec %s (%v), want the three containers sampled, none probed", j.spec, err)
	}
	if !strings.Contains(j.script, `"$IL_PROBER" run "$IL_DIR"/probes.json &`) || strings.Contains(j.script, "trap il_stop") ||
		strings.Contains(j.script, `"$IL_PROBER" stop`) || !j.status.Usage {
		t.Errorf("a pod without probes: the prober does not sample it, or stops it")
	}
	// A site without the prober: no spec, no prober, no usage.
	cfg := testConfig(t)
	j, err := buildJob(&cfg, &site{missing: map[string]error{"ProberPath": errors.New("not found")}}, testPod(), "/d")
	if err != nil {
		t.Fatal(err)
	}
	if j.spec != nil || strings.Contains(j.script, "IL_PROBER") || j.status.Usage {
		t.Errorf("a site without the prober: spec %s, usage %v", j.spec, j.status.Usage)
	}
	bashSyntax(t, j.script)
}

// TestProbeValidation: a probe or hook the prober cannot run, one on an
// init container, a missing prober and a bad terminationMessagePath are
// 400s naming the container and the field or config key.
func TestProbeValidation(t *testing.T) {
	for _, tt := range []struct {
		name    string
		missing string
		pod     func(*api.RetrievedPodData)
		want    string
	}{
		{"two handlers", "", func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].LivenessProbe.TCPSocket = &corev1.TCPSocketAction{}
		}, "container main: livenessProbe"},
		{"no handler", "", func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].Lifecycle.PreStop = &corev1.LifecycleHandler{}
		}, "container main: lifecycle.preStop"},
		{"init container", "", func(d *api.RetrievedPodData) {
			d.Pod.Spec.InitContainers[0].ReadinessProbe = d.Pod.Spec.Containers[0].ReadinessProbe
		}, "init container setup"},
		{"message path", "", func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].TerminationMessagePath = "relative"
		}, "terminationMessagePath"},
		{"no prober", "ProberPath", nil, "ProberPath"},
		{"no nsenter", "NsenterPath", nil, "NsenterPath"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			data := testPod()
			withProbes(data)
			if tt.pod != nil {
				tt.pod(data)
			}
			st := &site{missing: map[string]error{}}
			if tt.missing != "" {
				st.missing[tt.missing] = os.ErrNotExist
			}
			_, err := buildJob(&cfg, st, data, "/data/interlink/jobs/team-a-"+testUID)
			if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v, want Invalid naming %q", err, tt.want)
			}
		})
	}
}

// probeDir is a pod directory with the files of container main.
func probeDir(t *testing.T, files map[string]string) *poddata.Dir {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, "pod", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, err := poddata.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestProbeStatus(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	running := ctrFiles{started: at}
	exited := ctrFiles{started: at, exited: true, code: 137, finished: at.Add(time.Second)}
	pp := &podProbes{Probed: []string{"main"}, Messages: []string{"main"}, FallbackToLogs: []string{"main"}}
	const msgFile = "data/.interlink/main/msg/termination-log"
	log := "2026-01-02T03:04:05.1Z first\n2026-01-02T03:04:06.2Z panic: boom\n"
	killed := `{"pid":42,"started":true,"ready":false,"killed":"Liveness probe failed: exec: exit code 1"}`
	for _, tt := range []struct {
		name        string
		files       map[string]string
		pp          *podProbes
		f           ctrFiles
		wantReady   bool
		wantStarted bool
		wantMsg     string
	}{
		{"ready, this run's state", map[string]string{"containers/main.pid": "42\n", "containers/main.probe": `{"pid":42,"started":true,"ready":true}`},
			pp, running, true, true, ""},
		{"started, not ready", map[string]string{"containers/main.pid": "42\n", "containers/main.probe": `{"pid":42,"started":true}`},
			pp, running, false, true, ""},
		{"stale state of another run", map[string]string{"containers/main.pid": "43\n", "containers/main.probe": `{"pid":42,"started":true,"ready":true}`},
			pp, running, false, false, ""},
		{"no state yet", map[string]string{"containers/main.pid": "42\n"}, pp, running, false, false, ""},
		{"no probes: ready once running", nil, &podProbes{}, running, true, true, ""},
		{"killed by the prober", map[string]string{"containers/main.pid": "42", "containers/main.probe": killed},
			&podProbes{Probed: []string{"main"}}, exited, false, false, "Liveness probe failed: exec: exit code 1"},
		{"own message wins", map[string]string{"containers/main.pid": "42", "containers/main.probe": killed, msgFile: "bye"},
			pp, exited, false, false, "bye"},
		{"killed message wins over the log", map[string]string{"containers/main.pid": "42", "containers/main.probe": killed, "containers/main.log": log},
			pp, exited, false, false, "Liveness probe failed: exec: exit code 1"},
		{"fallback to the log, timestamps stripped", map[string]string{"containers/main.log": log}, pp, exited, false, false, "first\npanic: boom\n"},
		{"no fallback on success", map[string]string{"containers/main.log": log}, pp,
			ctrFiles{started: at, exited: true, finished: at}, false, false, ""},
		{"a message not read unless listed", map[string]string{msgFile: "bye"}, &podProbes{}, exited, false, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := probeDir(t, tt.files)
			f := tt.f
			readProbeFiles(root, "pod", "main", tt.pp, &f)
			cs := containerStatus("main", "7", jobState{State: "RUNNING"}, f, func() string { return "" }, true)
			if f.exited {
				if cs.State.Terminated == nil || cs.State.Terminated.Message != tt.wantMsg {
					t.Errorf("terminated %+v, want message %q", cs.State.Terminated, tt.wantMsg)
				}
				return
			}
			if cs.State.Running == nil || cs.Ready != tt.wantReady || cs.Started == nil || *cs.Started != tt.wantStarted {
				t.Errorf("ready %v started %v (%+v), want %v %v", cs.Ready, cs.Started, cs.State, tt.wantReady, tt.wantStarted)
			}
		})
	}
	// After a restart, the last state says why the prober stopped the
	// previous run (its pid and state moved to .last).
	root := probeDir(t, map[string]string{"containers/main.pid.last": "42", "containers/main.probe.last": killed,
		"containers/main.pid": "50", "containers/main.probe": `{"pid":50,"started":true,"ready":true}`})
	f := ctrFiles{started: at, restarts: 1, last: runEnd(137, at, at)}
	readProbeFiles(root, "pod", "main", pp, &f)
	cs := containerStatus("main", "7", jobState{State: "RUNNING"}, f, func() string { return "" }, true)
	if l := cs.LastTerminationState.Terminated; l == nil || l.Message != "Liveness probe failed: exec: exit code 1" || !cs.Ready {
		t.Errorf("after a restart: %+v ready %v", cs.LastTerminationState, cs.Ready)
	}
	// A run waiting to restart shows its own end with the message.
	root = probeDir(t, map[string]string{"containers/main.pid": "42", "containers/main.probe": killed})
	f = ctrFiles{started: at, exited: true, code: 137, finished: at, delay: 10 * time.Second, backoff: at.Add(10 * time.Second)}
	readProbeFiles(root, "pod", "main", pp, &f)
	cs = containerStatus("main", "7", jobState{State: "RUNNING"}, f, func() string { return "" }, true)
	if l := cs.LastTerminationState.Terminated; cs.State.Waiting == nil || l == nil || l.Message != "Liveness probe failed: exec: exit code 1" {
		t.Errorf("waiting to restart: %+v", cs)
	}
}

// TestDeleteStopsGracefully: a running pod with a preStop hook gets SIGUSR1
// on its batch shell, then, once its job ended, the plain scancel; a pod
// without one is cancelled at once; a job that never ends does not hold
// Delete past its grace period and the margin.
func TestDeleteStopsGracefully(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	// scancel --batch: the job's trap ends it (unless "stuck").
	scancel := "#!/bin/sh\necho \"$@\" >>" + dir + "/cancelled\n" +
		"[ \"$1\" = --batch ] && [ ! -f " + dir + "/stuck ] && echo '100|COMPLETING|None' >" + dir + "/queue\nexit 0\n"
	if err := os.WriteFile(cfg.ScancelPath, []byte(scancel), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.ProberPath = cfg.EnvExecPath // found: any file
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	oldPoll, oldMargin := stopPoll, stopMargin
	stopPoll, stopMargin = 10*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { stopPoll, stopMargin = oldPoll, oldMargin })
	ctx := context.Background()
	// The calls since the last look: the file is moved aside first, so
	// that a call appending meanwhile is not lost.
	cancelled := func() string {
		taken := filepath.Join(dir, "cancelled.taken")
		if os.Rename(filepath.Join(dir, "cancelled"), taken) != nil {
			return ""
		}
		b, _ := os.ReadFile(taken)
		return string(b)
	}
	queue := func(q string) {
		if err := os.WriteFile(filepath.Join(dir, "queue"), []byte(q), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	data := testPod()
	withProbes(data)
	if _, err := s.Create(ctx, data); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "jobs", "team-a-"+testUID, prober.SpecFile)); err != nil || !json.Valid(b) {
		t.Errorf("the spec file: %v", err)
	} else if st, _ := os.Stat(filepath.Join(dir, "jobs", "team-a-"+testUID, prober.SpecFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("the spec file's mode is %v, want 0600", st.Mode())
	}
	// The calls to scancel, once the background stop has ended.
	settled := func(want string) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got += cancelled(); got == want {
				return
			}
		}
		t.Errorf("scancel calls %q, want %q", got, want)
	}
	queue("100|RUNNING|None\n")
	start := time.Now()
	if err := s.Delete(ctx, &data.Pod); err != nil {
		t.Fatal(err)
	}
	// Delete returns once the job is signaled; a second Delete meanwhile
	// signals nothing more.
	if err := s.Delete(ctx, &data.Pod); err != nil || time.Since(start) > 3*time.Second {
		t.Errorf("Delete: %v after %s", err, time.Since(start))
	}
	settled("--batch --signal=USR1 100\n100\n")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := s.store.get(string(data.Pod.UID)); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod's record is left after its graceful stop")
		}
	}

	// Without a preStop hook: scancel alone.
	plain := testPod()
	plain.Pod.UID, plain.Pod.Name = "1f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a", "plain"
	if _, err := s.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	queue("101|RUNNING|None\n")
	if err := s.Delete(ctx, &plain.Pod); err != nil {
		t.Fatal(err)
	}
	if got := cancelled(); got != "101\n" {
		t.Errorf("scancel calls %q, want the plain scancel", got)
	}

	// A job that ignores the signal: Delete returns after grace + margin.
	stuck := testPod()
	withProbes(stuck)
	stuck.Pod.UID, stuck.Pod.Name = "2f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a", "stuck"
	stuck.Pod.Spec.TerminationGracePeriodSeconds = ptr(int64(3))
	if _, err := s.Create(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stuck"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	queue("102|RUNNING|None\n")
	start = time.Now()
	if err := s.Delete(ctx, &stuck.Pod); err != nil {
		t.Fatal(err)
	}
	if got := cancelled(); got != "--batch --signal=USR1 102\n" {
		t.Errorf("scancel calls %q, want the signal alone before the grace period", got)
	}
	settled("102\n")
	if d := time.Since(start); d < 3*time.Second || d > 10*time.Second {
		t.Errorf("the stuck job was canceled after %s, want about 3.2 s (grace + margin)", d)
	}

	// Close cancels a job still stopping, at once.
	stuck.Pod.UID, stuck.Pod.Name = "3f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a", "closing"
	stuck.Pod.Spec.TerminationGracePeriodSeconds = ptr(int64(600))
	if _, err := s.Create(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	queue("103|RUNNING|None\n")
	if err := s.Delete(ctx, &stuck.Pod); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := s.Close(); err != nil || time.Since(start) > 3*time.Second {
		t.Errorf("Close: %v after %s", err, time.Since(start))
	}
	if got := cancelled(); got != "--batch --signal=USR1 103\n103\n" {
		t.Errorf("scancel calls %q, want the job cancelled by Close", got)
	}
}

// TestGracefulStopResumes: a sidecar started again goes on with the
// graceful stop one that stopped had begun: it cancels the job at the end
// of its grace period and removes the pod.
func TestGracefulStopResumes(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	cfg.ProberPath = cfg.EnvExecPath
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := testPod()
	withProbes(data)
	if _, err := s.Create(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	uid := string(data.Pod.UID)
	rec, _ := s.store.get(uid)
	rec.StopUntil = time.Now().Add(300 * time.Millisecond) // as Delete records it
	if err := s.store.put(rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "queue"), []byte(rec.JobID+"|RUNNING|None\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, left := s.store.get(uid)
		b, _ := os.ReadFile(filepath.Join(dir, "cancelled"))
		if !left && strings.Contains(string(b), rec.JobID+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a restart: record left %v, scancel calls %q", left, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs", "team-a-"+uid)); !os.IsNotExist(err) {
		t.Errorf("the pod's directory is left: %v", err)
	}
}
