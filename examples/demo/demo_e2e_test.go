//go:build e2e

// Package demo tests `make demo` as a user meets it: the demo script runs the
// real chain (kubectl -> interlink-vk -> interlink with auth -> sidecar ->
// containers) and every example in examples/pods is applied to it.
package demo

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

var repoDir = func() string { d, _ := filepath.Abs("../.."); return d }()

// stack is a demo started by examples/demo/run.sh.
type stack struct {
	*e2eenv.Demo
	kubectl, kubeconfig string
}

// requireRoot stops the test when not root: the demo starts SLURM or dockerd.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		e2eenv.Prerequisite(t, "root (the demo starts a private SLURM or dockerd)")
	}
}

// runDemo builds the binaries, runs the demo script with extra environment
// and registers make demo-down as cleanup.
func runDemo(t *testing.T, extra ...string) *stack {
	t.Helper()
	requireRoot(t)
	s := &stack{}
	e2eenv.StartDemo(t, repoDir, "", func(d *e2eenv.Demo) {
		s.Demo = d
		t.Cleanup(func() { s.down(t) })
	}, append([]string{"DEMO_NODE=demo-e2e"}, extra...)...)
	t.Logf("make demo:\n%s", s.Output)
	k8s, err := exec.Command(filepath.Join(repoDir, "examples/cluster/build.sh")).Output()
	if err != nil {
		t.Fatal(err)
	}
	s.kubectl = filepath.Join(strings.TrimSpace(string(k8s)), "kubectl")
	m := regexp.MustCompile(`export KUBECONFIG=(\S+)`).FindStringSubmatch(s.Output)
	if m == nil {
		t.Fatal("the demo did not print the KUBECONFIG to use")
	}
	s.kubeconfig = m[1]
	return s
}

// down runs make demo-down and checks that every process it started is gone.
func (s *stack) down(t *testing.T) {
	t.Helper()
	pids, _ := filepath.Glob(filepath.Join(s.Dir, "*.pid"))
	var procs []int
	for _, f := range pids {
		var pid int
		if b, err := os.ReadFile(f); err == nil {
			if _, err := fmt.Sscan(string(b), &pid); err == nil {
				procs = append(procs, pid)
			}
		}
	}
	if out, err := s.Down(repoDir); err != nil {
		t.Errorf("make demo-down: %v\n%s", err, out)
	}
	for _, pid := range procs {
		if err := syscall.Kill(pid, 0); err == nil && !zombie(pid) {
			t.Errorf("process %d still runs after make demo-down", pid)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(b), ") Z ")
}

func (s *stack) kubectlRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(s.kubectl, append([]string{"--kubeconfig", s.kubeconfig}, args...)...)
	cmd.Dir = repoDir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *stack) mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.kubectlRun(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// waitPhase waits until pod reaches one of the phases and returns it.
func (s *stack) waitPhase(t *testing.T, pod string, phases ...string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, _ := s.kubectlRun(t, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		for _, want := range phases {
			if p == want {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s is %q after 2 minutes, want %v", pod, p, phases)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// eventually polls f until it succeeds or the time is up.
func eventually(t *testing.T, what string, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %v", what, err)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// inOrder checks that the lines matching each pattern appear in this order.
func inOrder(t *testing.T, text string, patterns ...string) {
	t.Helper()
	rest := text
	for _, p := range patterns {
		loc := regexp.MustCompile(p).FindStringIndex(rest)
		if loc == nil {
			t.Errorf("the demo's output lacks %q (after the previous steps)", p)
			return
		}
		rest = rest[loc[1]:]
	}
}

// checkSecretFiles checks that the demo's credentials are readable by their owner only.
func (s *stack) checkSecretFiles(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(s.Dir, "config", n))
		if err != nil {
			t.Errorf("credential %s: %v", n, err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("credential %s has mode %v", n, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(s.Dir, "config")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the config directory: %v %v", fi, err)
	}
}

// example is a workload of examples/pods, what its pods print and what
// else must hold once they ended.
type example struct {
	file  string
	pods  []string // pods to wait for (Succeeded), default the file's name
	logs  []string
	check func(t *testing.T, s *stack)
}

// runExamples applies the examples and checks each one's result.
func (s *stack) runExamples(t *testing.T, examples []example) {
	t.Helper()
	for _, e := range examples {
		s.mustKubectl(t, "apply", "-f", "examples/pods/"+e.file+".yaml")
	}
	for _, e := range examples {
		t.Run(e.file, func(t *testing.T) {
			var logs string
			for _, p := range e.pods {
				if ph := s.waitPhase(t, p, "Succeeded", "Failed"); ph != "Succeeded" {
					out, _ := s.kubectlRun(t, "get", "pod", p, "-o", "yaml")
					t.Fatalf("pod %s ended %s:\n%s", p, ph, out)
				}
				logs += s.mustKubectl(t, "logs", p)
			}
			for _, want := range e.logs {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if e.check != nil {
				e.check(t, s)
			}
		})
	}
	for _, e := range examples {
		s.mustKubectl(t, "delete", "-f", "examples/pods/"+e.file+".yaml", "--wait=true", "--timeout=90s")
	}
}

// jobPods waits until the Job has succeeded and returns its pods' names.
func jobPods(t *testing.T, s *stack, job string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := s.kubectlRun(t, "get", "job", job, "-o", "jsonpath={.status.succeeded}")
		if out == fmt.Sprint(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %q succeeded after 2 minutes, want %d", job, out, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	out := s.mustKubectl(t, "get", "pods", "-l", "job-name="+job, "-o", "jsonpath={.items[*].metadata.name}")
	return strings.Fields(out)
}

// commonExamples are the examples every sidecar runs; secretMode is the mode
// of a Secret's files in the container (0600 where containers run as the
// sidecar's user, 0644 as on a kubelet where they run as anyone).
func commonExamples(secretMode string) []example {
	return []example{
		{file: "hello", pods: []string{"hello"}, logs: []string{"hello from interLink", "bye"}},
		{file: "env-args", pods: []string{"env-args"}, logs: []string{
			"greeting=hello world color=blue pod=env-args literal=$(not expanded) `nor this`", "args: first second"}},
		{file: "volumes", pods: []string{"volumes"}, logs: []string{"greeting = hello from a ConfigMap", "secret file: " + secretMode + " 19 bytes"}},
		{file: "init-containers", pods: []string{"init-containers"}, logs: []string{"step 1: fetched\nstep 2: prepared\nstep 3: done"}},
	}
}

func TestE2EDemoSlurm(t *testing.T) {
	s := runDemo(t, "SIDECAR=slurm", "AUTH=oidc")
	// What the demo shows, in order.
	inOrder(t, s.Output,
		`demo-e2e\s+Ready`,
		`hello\s+Pending`, `hello\s+Running`, `default-hello\s+RUNNING`, `hello\s+Succeeded`,
		`kubectl logs hello`, `hello from interLink`, `bye`,
		`failing: phase Failed, reason Error, exit code 1`, `about to fail`,
		`ticker\s+Running`, `default-ticker\s+RUNNING`,
		// The job's script runs the container with Apptainer (make demo's
		// default runtime), as root in a user namespace.
		`scontrol write batch_script \d+ -`, `/apptainer --quiet exec --containall --no-home --userns .* /\.interlink/envexec (-t \S+ )?/\.interlink/env -- `,
		`tick 2`, `pod "ticker" deleted`,
		`nothing is left running`)
	s.checkSecretFiles(t, "client-secret", "client.json", "vk-token")
	env := append(os.Environ(), "SLURM_CONF="+filepath.Join(s.Dir, "slurm", "slurm.conf"))
	squeue := func() string {
		cmd := exec.Command("squeue", "--noheader", "--format=%i %j %T")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("squeue: %v %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if q := squeue(); q != "" {
		t.Errorf("jobs left in squeue after the demo:\n%s", q)
	}
	scontrol := func(pod string) string {
		cmd := exec.Command("scontrol", "show", "job", "--oneliner")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scontrol: %v %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "JobName=default-"+pod+" ") {
				return line
			}
		}
		t.Fatalf("no SLURM job of pod %s:\n%s", pod, out)
		return ""
	}
	examples := append(commonExamples("600"),
		example{file: "gpu", pods: []string{"gpu"}, logs: []string{"running with one GPU"}, check: func(t *testing.T, s *stack) {
			if j := scontrol("gpu"); !strings.Contains(j, "gres:gpu:1") && !strings.Contains(j, "gres/gpu=1") {
				t.Errorf("the gpu pod's job holds no GPU: %s", j)
			}
		}},
		example{file: "slurm-flags", pods: []string{"slurm-flags"}, logs: []string{"submitted with extra sbatch flags"}, check: func(t *testing.T, s *stack) {
			if j := scontrol("slurm-flags"); !strings.Contains(j, "Nice=100") || !strings.Contains(j, "TimeLimit=00:10:00") {
				t.Errorf("the annotation's flags did not reach sbatch: %s", j)
			}
		}},
		example{file: "failing", check: func(t *testing.T, s *stack) {
			if ph := s.waitPhase(t, "failing", "Failed", "Succeeded"); ph != "Failed" {
				t.Errorf("pod failing ended %s", ph)
			}
			code := s.mustKubectl(t, "get", "pod", "failing", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}")
			if code != "1" {
				t.Errorf("pod failing: exit code %q, want 1", code)
			}
		}},
		example{file: "job", check: func(t *testing.T, s *stack) {
			var logs string
			for _, p := range jobPods(t, s, "squares", 3) {
				logs += s.mustKubectl(t, "logs", p)
			}
			for _, want := range []string{"index 0: square 0", "index 1: square 1", "index 2: square 4"} {
				if !strings.Contains(logs, want) {
					t.Errorf("the job's logs lack %q:\n%s", want, logs)
				}
			}
		}},
	)
	s.runExamples(t, examples)
	// Deleting the pods removes their jobs and their data. A pod that has
	// ended leaves the API at once (the API server does not wait for its
	// node), so the node deletes its remote part just after: wait for that.
	eventually(t, "no job and no pod data left after the examples were deleted", 30*time.Second, func() error {
		if q := squeue(); q != "" {
			return fmt.Errorf("jobs left in squeue:\n%s", q)
		}
		var left []string
		// The sidecar's own entries stay: its lock and its copy of the
		// interlink-envexec and interlink-prober helpers, alone in .interlink.
		entries, _ := os.ReadDir(filepath.Join(s.Dir, "jobs"))
		for _, e := range entries {
			switch e.Name() {
			case ".interlink-slurm.lock":
			case ".interlink":
				own, _ := os.ReadDir(filepath.Join(s.Dir, "jobs", e.Name()))
				for _, o := range own {
					if o.Name() != "interlink-envexec" && o.Name() != "interlink-prober" {
						left = append(left, fmt.Sprintf("%s/%s (%v)", e.Name(), o.Name(), o.Type()))
					}
				}
			default:
				left = append(left, fmt.Sprintf("%s (%v)", e.Name(), e.Type()))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left in the sidecar's data root: %v", left)
		}
		return nil
	})
	// make demo again, from a shell that exported the KUBECONFIG the first
	// run printed (as its message says to): the demo starts anew on its own
	// cluster, never taking that cluster for an existing one.
	again := exec.Command(filepath.Join(repoDir, "examples/demo/run.sh"))
	again.Dir, again.Env = repoDir, append(s.Env, "KUBECONFIG="+s.kubeconfig, "AUTH=static")
	start := time.Now()
	out, err := again.CombinedOutput()
	if err != nil {
		t.Fatalf("a second make demo with the demo's KUBECONFIG exported: %v\n%s", err, out)
	}
	inOrder(t, string(out), `demo-e2e\s+Ready`, `hello\s+Succeeded`, `running on a local control plane`)
	t.Logf("a second make demo (AUTH=static) with the demo's KUBECONFIG exported: %s", time.Since(start).Round(time.Second))

	// A directory that is not a demo's is refused, never emptied.
	other := t.TempDir()
	keep := filepath.Join(other, "keep")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := exec.Command(filepath.Join(repoDir, "examples/demo/run.sh"))
	refused.Dir, refused.Env = repoDir, append(s.Env, "INTERLINK_DEMO_DIR="+other)
	out, err = refused.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds files that are not a demo's") {
		t.Errorf("make demo in a directory of something else: %v\n%s", err, out)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("make demo removed a file it does not own: %v", err)
	}
}

func TestE2EDemoDockerExistingCluster(t *testing.T) {
	requireRoot(t)
	cluster := filepath.Join(t.TempDir(), "cluster")
	up := exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), "up", cluster)
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("cluster.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(filepath.Join(repoDir, "examples/cluster/cluster.sh"), "down", cluster).Run() })
	kubeconfig := filepath.Join(cluster, "kubeconfig")
	s := runDemo(t, "SIDECAR=docker", "AUTH=static", "KUBECONFIG="+kubeconfig)
	if s.kubeconfig != kubeconfig {
		t.Errorf("the demo points at %s, not the existing cluster %s", s.kubeconfig, kubeconfig)
	}
	inOrder(t, s.Output,
		`kubectl certificate approve`, `demo-e2e\s+Ready`,
		`hello\s+Pending`, `hello\s+Running`, `hello\s+Succeeded`, `hello from interLink`,
		`failing: phase Failed, reason Error, exit code 1`,
		`ticker\s+Running`, `tick 2`, `pod "ticker" deleted`, `nothing is left running`)
	s.checkSecretFiles(t, "tokens.csv", "vk-token")
	docker := func() string {
		out, err := exec.Command("docker", "--host", "unix://"+filepath.Join(s.Dir, "docker", "docker.sock"),
			"ps", "-a", "--filter", "label=interlink.io/pod-uid", "--format", "{{.Names}}").CombinedOutput()
		if err != nil {
			t.Fatalf("docker ps: %v %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	eventually(t, "no container left after the demo", 30*time.Second, func() error {
		if c := docker(); c != "" {
			return fmt.Errorf("containers left:\n%s", c)
		}
		return nil
	})
	s.runExamples(t, commonExamples("644"))
	eventually(t, "no container left after the examples were deleted", 30*time.Second, func() error {
		if c := docker(); c != "" {
			return fmt.Errorf("containers left:\n%s", c)
		}
		return nil
	})
	s.down(t)
	// demo-down leaves the user's cluster running, without the demo's node.
	out, err := s.kubectlRun(t, "get", "nodes", "-o", "json")
	if err != nil {
		t.Fatalf("the existing cluster does not answer after make demo-down: %v %s", err, out)
	}
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Metadata.Name == "demo-e2e" {
			t.Error("the demo's node is still in the existing cluster after make demo-down")
		}
	}
}
