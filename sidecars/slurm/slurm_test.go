package slurm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// fakeSlurm writes stand-ins for sbatch, squeue and scancel into a
// directory: sbatch numbers jobs and refuses a script holding REFUSE,
// squeue prints the file "queue", scancel appends to "cancelled". The real
// commands run in the e2e tier; these pin the sidecar's own logic.
func fakeSlurm(t *testing.T) (Config, string) {
	t.Helper()
	dir := t.TempDir()
	scripts := map[string]string{
		"sbatch": `#!/bin/sh
script=$(cat)
case "$script" in *REFUSE*) echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2; exit 1;; esac
n=$(cat "$D/next" 2>/dev/null || echo 100); echo $((n + 1)) >"$D/next"
printf '%s\n' "$@" >"$D/args.$n"
echo "$n;cluster"
`,
		"squeue": `#!/bin/sh
[ -f "$D/down" ] && { echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1; }
echo "$@" >>"$D/squeue.calls"
cat "$D/queue" 2>/dev/null; exit 0
`,
		"scancel": `#!/bin/sh
echo "$@" >>"$D/cancelled"
`,
		"sinfo": `#!/bin/sh
echo "$@" >>"$D/sinfo.calls"
cat "$D/nodes.json" 2>/dev/null || echo '{"nodes":[]}'
`,
	}
	for name, body := range scripts {
		body = strings.ReplaceAll(body, "$D", dir)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.SbatchPath, cfg.SqueuePath, cfg.ScancelPath = filepath.Join(dir, "sbatch"), filepath.Join(dir, "squeue"), filepath.Join(dir, "scancel")
	cfg.SinfoPath = filepath.Join(dir, "sinfo")
	cfg.DataRootFolder, cfg.StatePath = filepath.Join(dir, "jobs"), filepath.Join(dir, "state.db")
	// Absolute: taken as is, as for a runtime the compute nodes alone have.
	cfg.SingularityPath = "/opt/apptainer/bin/singularity"
	cfg.EnvExecPath = testEnvExec(t)
	cfg.AllowedImageRoots = []string{"/images"} // the test pod's /images/tools.sif
	return cfg, dir
}

var (
	envExecOnce sync.Once
	envExecBin  string
	envExecErr  error
)

// testEnvExec builds the interlink-envexec helper once for the tests.
func testEnvExec(t *testing.T) string {
	t.Helper()
	envExecOnce.Do(func() {
		dir, err := os.MkdirTemp("", "interlink-envexec-")
		if err != nil {
			envExecErr = err
			return
		}
		envExecBin = filepath.Join(dir, "interlink-envexec")
		if out, err := exec.Command("go", "build", "-o", envExecBin, "./cmd/interlink-envexec").CombinedOutput(); err != nil {
			envExecErr = fmt.Errorf("build interlink-envexec: %w\n%s", err, out)
		}
	})
	if envExecErr != nil {
		t.Fatal(envExecErr)
	}
	return envExecBin
}

// createdPod is a sidecar on fakeSlurm with testPod created (job 100).
func createdPod(t *testing.T) (*Sidecar, string, *api.RetrievedPodData) {
	t.Helper()
	cfg, dir := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	data := testPod()
	if _, err := s.Create(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	return s, dir, data
}

func TestCreateStatusDelete(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := testPod()
	res, err := s.Create(ctx, data)
	if err != nil || res.PodJID != "100" {
		t.Fatalf("create: %+v %v, want job 100", res, err)
	}
	if again, err := s.Create(ctx, data); err != nil || again.PodJID != "100" {
		t.Fatalf("second create: %+v %v, want the same job", again, err)
	}
	// Secrets on disk: 0600 inside a 0700 pod directory.
	podDir := filepath.Join(dir, "jobs", "team-a-"+testUID)
	for name, want := range map[string]os.FileMode{podDir: 0o700, filepath.Join(podDir, "data/volumes/creds/password"): 0o600, filepath.Join(podDir, "data/volumes/config/app.yaml"): 0o644} {
		if st, err := os.Stat(name); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", name, st.Mode(), err, want)
		}
	}

	// Pending with Slurm's reason, then one container running.
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("queue", "100|PENDING|Priority\n")
	st, err := s.Status(ctx, []corev1.Pod{data.Pod, {}})
	if err != nil || len(st) != 1 {
		t.Fatalf("status: %+v %v, want the one known pod", st, err)
	}
	if w := st[0].Containers[0].State.Waiting; w == nil || w.Reason != "Priority" {
		t.Errorf("pending: %+v", st[0].Containers[0].State)
	}
	write("queue", "100|RUNNING|None\n")
	if err := os.MkdirAll(filepath.Join(podDir, containersDir), 0o700); err != nil {
		t.Fatal(err)
	}
	write("jobs/team-a-"+testUID+"/containers/setup.started", "2026-01-01T00:00:00Z\n")
	write("jobs/team-a-"+testUID+"/containers/setup.exit", "0 2026-01-01T00:00:01Z\n")
	write("jobs/team-a-"+testUID+"/containers/main.started", "2026-01-01T00:00:02Z\n")
	st, _ = s.Status(ctx, []corev1.Pod{data.Pod})
	if c := st[0].InitContainers[0].State.Terminated; c == nil || c.ExitCode != 0 {
		t.Errorf("init container: %+v", st[0].InitContainers[0].State)
	}
	if st[0].Containers[0].State.Running == nil || st[0].Containers[1].State.Waiting == nil {
		t.Errorf("containers: %+v", st[0].Containers)
	}

	// slurmctld down: an Unavailable error, never a lost pod.
	write("down", "")
	if _, err := s.Status(ctx, []corev1.Pod{data.Pod}); api.ReasonOf(err) != api.ReasonUnavailable {
		t.Errorf("status with slurmctld down: %v, want Unavailable", err)
	}
	_ = os.Remove(filepath.Join(dir, "down"))

	// The job ends: its state is kept, squeue is not asked again.
	write("queue", "100|TIMEOUT|None\n")
	st, _ = s.Status(ctx, []corev1.Pod{data.Pod})
	if c := st[0].Containers[0].State.Terminated; c == nil || c.Reason != "DeadlineExceeded" {
		t.Errorf("timeout: %+v", st[0].Containers[0].State)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "squeue.calls"))
	write("queue", "")
	if st, _ = s.Status(ctx, []corev1.Pod{data.Pod}); st[0].Containers[0].State.Terminated == nil {
		t.Errorf("after squeue forgot the job: %+v", st[0].Containers[0].State)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "squeue.calls")); string(again) != string(calls) {
		t.Errorf("squeue asked again about an ended job")
	}

	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP interlink_slurm_jobs Jobs the sidecar holds, by state: active (not ended as last seen) or the state they ended in.
# TYPE interlink_slurm_jobs gauge
interlink_slurm_jobs{state="TIMEOUT"} 1
interlink_slurm_jobs{state="active"} 0
# HELP interlink_slurm_command_errors_total Slurm commands that failed or did not answer in time.
# TYPE interlink_slurm_command_errors_total counter
interlink_slurm_command_errors_total{command="sacct"} 0
interlink_slurm_command_errors_total{command="sbatch"} 0
interlink_slurm_command_errors_total{command="scancel"} 0
interlink_slurm_command_errors_total{command="sinfo"} 0
interlink_slurm_command_errors_total{command="squeue"} 1
`), "interlink_slurm_jobs", "interlink_slurm_command_errors_total"); err != nil {
		t.Error(err)
	}

	// Delete: the job's already ended, so no scancel; everything removed.
	if err := s.Delete(ctx, &data.Pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(podDir); !os.IsNotExist(err) {
		t.Errorf("pod directory left: %v", err)
	}
	if err := s.Delete(ctx, &data.Pod); !api.IsNotFound(err) {
		t.Errorf("second delete: %v, want NotFound", err)
	}
}

func TestRefusedSubmissionLeavesNothing(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	data := testPod()
	data.Pod.Spec.Containers[0].Args = []string{"REFUSE"}
	_, err = s.Create(context.Background(), data)
	if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), "Invalid partition name") {
		t.Fatalf("create: %v, want Invalid with Slurm's message", err)
	}
	// The sidecar's own entries: its lock and its copy of the helper.
	if entries, _ := os.ReadDir(filepath.Join(dir, "jobs")); len(entries) != 2 || entries[0].Name() != ".interlink" || entries[1].Name() != ".interlink-slurm.lock" {
		t.Errorf("a refused pod left entries in DataRootFolder: %v", entries)
	}
	if _, ok := s.store.get(testUID); ok {
		t.Error("a refused pod left a record")
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	cfg, _ := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := testPod()
	res, err := s.Create(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if again, err := s.Create(context.Background(), data); err != nil || again.PodJID != res.PodJID {
		t.Fatalf("create after restart: %+v %v, want job %s", again, err, res.PodJID)
	}
}

func TestOneSidecarPerDataRootFolder(t *testing.T) {
	cfg, _ := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	cfg.StatePath += ".other"
	if other, err := New(t.Context(), cfg, nil); err == nil || !strings.Contains(err.Error(), "used by another interlink-slurm") {
		if other != nil {
			_ = other.Close()
		}
		t.Fatalf("a second sidecar on the same DataRootFolder: %v, want it refused", err)
	}
}

// TestOnePodNeverLosesAnother: a job Slurm does not list is lost only after
// lostAfterPolls definite answers in a row; a running pod beside it keeps
// its status; a reply of sbatch that is not a job ID fails only its own
// create.
func TestOnePodNeverLosesAnother(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	victim, gone := testPod(), testPod()
	gone.Pod.UID, gone.Pod.Name = "1f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a", "gone"
	for _, d := range []*api.RetrievedPodData{victim, gone} {
		if _, err := s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	podDir := "jobs/team-a-" + testUID
	_ = os.MkdirAll(filepath.Join(dir, podDir, containersDir), 0o700)
	write(podDir+"/containers/main.started", "2026-01-01T00:00:02Z\n")
	write("queue", "100|RUNNING|None\n") // job 101 (gone) is not listed
	for poll := 1; poll <= lostAfterPolls; poll++ {
		st, err := s.Status(ctx, []corev1.Pod{victim.Pod, gone.Pod})
		if err != nil || len(st) != 2 {
			t.Fatalf("poll %d: %v", poll, err)
		}
		if st[0].Containers[0].State.Running == nil {
			t.Errorf("poll %d: the victim is %+v, want Running", poll, st[0].Containers[0].State)
		}
		lost := st[1].Containers[0].State.Terminated
		if poll < lostAfterPolls && lost != nil {
			t.Errorf("poll %d: the unlisted job's pod ended after %d answers: %+v", poll, poll, lost)
		}
		if poll == lostAfterPolls && (lost == nil || lost.Reason != "JobLost") {
			t.Errorf("poll %d: %+v, want JobLost", poll, st[1].Containers[0].State)
		}
	}

	// sbatch printing its version (exit 0): the create fails, nothing else.
	write("sbatch-reply", "slurm 22.05.8\n")
	sb := filepath.Join(dir, "sbatch")
	if err := os.WriteFile(sb, []byte("#!/bin/sh\ncat >/dev/null\ncat \""+dir+"/sbatch-reply\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	third := testPod()
	third.Pod.UID, third.Pod.Name = "2f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a", "third"
	if _, err := s.Create(ctx, third); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), "not a job ID") {
		t.Errorf("create with a version reply: %v, want Invalid naming the reply", err)
	}
	if st, err := s.Status(ctx, []corev1.Pod{victim.Pod, third.Pod}); err != nil || len(st) != 1 || st[0].Containers[0].State.Running == nil {
		t.Errorf("after the bad reply: %+v %v, want the victim alone, Running", st, err)
	}
}

func TestParseJobID(t *testing.T) {
	for reply, want := range map[string]string{"123\n": "123", "77;cluster-a": "77", " 9 ": "9"} {
		if id, ok := parseJobID([]byte(reply)); !ok || id != want {
			t.Errorf("%q: %q %v, want %q", reply, id, ok, want)
		}
	}
	for _, bad := range []string{"", "slurm 22.05.8", "Submitted batch job 5", "5;a b", "5\n6", "-1", "5;$(id)", "12a"} {
		if id, ok := parseJobID([]byte(bad)); ok {
			t.Errorf("%q accepted as job %q", bad, id)
		}
	}
}
