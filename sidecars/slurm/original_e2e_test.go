//go:build e2e

package slurm

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// tenantName is the second Unix account TestE2EOriginalSlurmConfig runs
// jobs as.
const tenantName = "interlink-e2e-tenant"

// tenantAccount makes the second Unix account (once; removed at the end
// when this test made it) and returns its uid.
func tenantAccount(t *testing.T) int64 {
	t.Helper()
	if u, err := user.Lookup(tenantName); err == nil {
		uid, _ := strconv.ParseInt(u.Uid, 10, 64)
		return uid
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		e2eenv.Prerequisite(t, "useradd (Debian's passwd) to make a second Unix account")
	}
	if out, err := exec.Command(useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", tenantName).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", tenantName, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", tenantName).Run() })
	u, err := user.Lookup(tenantName)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseInt(u.Uid, 10, 64)
	return uid
}

// traversable lets every account reach dir (o+x on it and each parent that
// lacks it: Apptainer is built under root's cache here), until the test
// ends.
func traversable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d) //nolint:gosec // the test's own paths
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o001 == 0 {
			if err := os.Chmod(d, mode|0o001); err != nil { //nolint:gosec // the test's own paths
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(d, mode) }) //nolint:gosec // the test's own paths
		}
		if d == filepath.Dir(d) {
			return
		}
	}
}

// TestE2EOriginalSlurmConfig: a config file in the original SLURM plugin's
// shape (its program keys, a DataRootFolder ending in /, ContainerRuntime,
// a Flavors map with DefaultFlavor, DefaultUID) loads, and pods written for
// the original run on real slurm-wlm, with Apptainer: one chooses a flavor
// (its sbatch options reach the job) and an image root, and runs as a
// second Unix account through runAsUser (sbatch --uid); one without
// runAsUser runs as DefaultUID. The job runs as that account, and the pod's
// files belong to it.
func TestE2EOriginalSlurmConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		e2eenv.Prerequisite(t, "root (sbatch --uid, and useradd for a second account)")
	}
	apptainer := os.Getenv("INTERLINK_E2E_APPTAINER")
	if apptainer == "" {
		e2eenv.Prerequisite(t, "INTERLINK_E2E_APPTAINER naming Apptainer's binary (.ci/test.sh sets it from .ci/apptainer.sh build)")
	}
	uid := tenantAccount(t)
	traversable(t, filepath.Dir(apptainer))
	// Traversable by the tenant's jobs down to their own directories.
	dir, err := os.MkdirTemp("", "interlink-original-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return p
	}
	file := filepath.Join(dir, "SlurmConfig.yaml")
	yaml := fmt.Sprintf(`# The original SLURM plugin's keys, as its example config writes them.
SidecarPort: "4000"
Socket: unix://%s/plugin.sock
SbatchPath: %s
ScancelPath: %s
SqueuePath: %s
SinfoPath: %s
CommandPrefix: "echo original-prefix-ran"
ExportPodData: true
DataRootFolder: %s/jobs/
BashPath: /bin/bash
VerboseLogging: true
ErrorsOnlyLogging: false
SingularityPath: %s
SingularityDefaultOptions: ["--no-eval", "--containall", "--userns"]
ContainerRuntime: singularity
DefaultUID: %d
DefaultFlavor: default
Flavors:
  default:
    Description: "the default flavor"
    CPUDefault: 1
    MemoryDefault: "64M"
    SlurmFlags: ["--time=00:05:00"]
  nice:
    Description: "a flavor with its own sbatch options"
    CPUDefault: 1
    MemoryDefault: "32M"
    SlurmFlags: ["--nice=7", "--time 00:04:00"]
# What this site allows on top (docs/compat.md).
AllowedUIDs: ["%d"]
AllowedImageRoots: [%q]
ImageRoot: %q
EnvExecPath: %s
StatePath: %s/state.db
LogPollInterval: 100ms
`, dir, path("sbatch"), path("scancel"), path("squeue"), path("sinfo"), dir, apptainer, uid, uid, imageDir, imageDir, envExec, dir)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil { //nolint:gosec // the test's own paths
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	unknown, err := config.Load(&cfg, file)
	if err != nil {
		t.Fatalf("the original-style config does not load: %v", err)
	}
	if len(unknown) > 0 {
		t.Errorf("keys of the original not known: %v", unknown)
	}
	if cfg.Runtime != RuntimeSingularity || len(cfg.Flavors) != 2 {
		t.Errorf("loaded runtime %q, %d flavors; want singularity and 2", cfg.Runtime, len(cfg.Flavors))
	}
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("New with the original-style config: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })

	// The job takes the account's primary group, never the sidecar's (root).
	u, err := user.LookupId(strconv.FormatInt(uid, 10))
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	group := fmt.Sprintf("GroupId=%s(%s)", g.Name, u.Gid)

	// As written for the original: a flavor, an image root, runAsUser.
	flavored := e2ePod("flavored", "id -u; echo flavor-ok")
	flavored.Pod.Annotations["slurm-job.vk.io/flavor"] = "nice"
	flavored.Pod.Annotations["slurm-job.vk.io/image-root"] = imageDir
	flavored.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid}
	// No runAsUser: DefaultUID.
	plain := e2ePod("plain", "id -u; echo plain-ok")
	for _, tc := range []struct {
		data *api.RetrievedPodData
		want string
		job  []string // in scontrol show job
	}{
		{flavored, "flavor-ok", []string{"Nice=7", "TimeLimit=00:04:00", fmt.Sprintf("UserId=%s(%d)", tenantName, uid), group}},
		{plain, "plain-ok", []string{"TimeLimit=00:05:00", fmt.Sprintf("UserId=%s(%d)", tenantName, uid), group}},
	} {
		t.Run(tc.data.Pod.Name, func(t *testing.T) {
			jid := create(t, s, tc.data)
			job := slurmCmd(t, "scontrol", "show", "job", "--oneliner", jid)
			for _, w := range tc.job {
				if !strings.Contains(job, w) {
					t.Errorf("job %s lacks %s: %s", jid, w, job)
				}
			}
			st := waitFor(t, s, &tc.data.Pod, 2*time.Minute, "ended", terminated)
			c := st.Containers[0].State.Terminated
			out := logs(t, s, &tc.data.Pod, "c0", api.ContainerLogOpts{})
			if c == nil || c.ExitCode != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("container ended %+v, logs %q; want exit 0 and %q", c, out, tc.want)
			}
			// The pod's directory and what the job wrote belong to the account.
			podDir := filepath.Join(dir, "jobs", tc.data.Pod.Namespace+"-"+string(tc.data.Pod.UID))
			err := filepath.Walk(podDir, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int64(st.Uid) != uid {
					t.Errorf("%s belongs to uid %d, want the tenant's %d", p, st.Uid, uid)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
}
