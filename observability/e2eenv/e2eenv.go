package e2eenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoDir returns the repository's root: the nearest directory above the
// working directory that holds go.mod.
func RepoDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build builds the packages (paths relative to the repository's root, such
// as vk/cmd/interlink-vk) into a new temporary directory, named after
// prefix, and returns it; remove it when done.
func Build(repo, prefix string, pkgs ...string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, p := range pkgs {
		args = append(args, "./"+p)
	}
	build := exec.Command("go", args...)
	build.Dir = repo
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("build %s: %w", strings.Join(pkgs, " "), err)
	}
	return dir, nil
}

// K8sBin returns the directory of the control plane's binaries, kubectl
// and helm, building them once (examples/cluster/build.sh).
func K8sBin(repo string) (string, error) {
	out, err := exec.Command(filepath.Join(repo, "examples/cluster/build.sh")).Output() //nolint:gosec // the repository's own script
	if err != nil {
		return "", fmt.Errorf("control-plane binaries (examples/cluster/build.sh): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Prerequisite stops the test when something it needs is missing: a
// failure under CI=true, a skip on a developer's machine.
func Prerequisite(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite: "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}

// Hydra is Ory Hydra started by .ci/hydra.sh: its public (issuer) and
// admin URLs.
type Hydra struct{ Public, Admin string }

// StartHydra starts Hydra in dir with access tokens living ttl (a Go
// duration such as 1h) and stops it when the test ends.
func StartHydra(t testing.TB, repo, dir, ttl string) Hydra {
	t.Helper()
	up := exec.Command(filepath.Join(repo, ".ci/hydra.sh"), "up", dir) //nolint:gosec // the repository's own script
	up.Env = append(os.Environ(), "HYDRA_TTL_ACCESS_TOKEN="+ttl)
	up.Stdout, up.Stderr = os.Stderr, os.Stderr
	if err := up.Run(); err != nil {
		t.Fatalf("hydra: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command(filepath.Join(repo, ".ci/hydra.sh"), "down", dir).Run() }) //nolint:gosec // the repository's own script
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatalf("hydra: %v", err)
	}
	var h Hydra
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "export HYDRA_PUBLIC="); ok {
			h.Public = v
		}
		if v, ok := strings.CutPrefix(line, "export HYDRA_ADMIN="); ok {
			h.Admin = v
		}
	}
	return h
}

// Client registers a client_credentials client allowed audience and the
// scope "read", and returns its ID and secret.
func (h Hydra) Client(t testing.TB, audience string) (id, secret string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"grant_types": []string{"client_credentials"}, "audience": []string{audience},
		"scope": "read", "token_endpoint_auth_method": "client_secret_basic"})
	resp, err := http.Post(h.Admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || c.ID == "" {
		t.Fatalf("create a Hydra client: %d %v", resp.StatusCode, err)
	}
	return c.ID, c.Secret
}

// Main is the TestMain of an e2e package: it sets repo (the repository's
// root), bin (our binaries, built from pkgs into a temporary directory
// named after prefix) and k8s (the control plane's binaries), runs the
// tests, removes the binaries and exits with the tests' code.
func Main(m *testing.M, repo, bin, k8s *string, prefix string, pkgs ...string) {
	code, err := setup(m, repo, bin, k8s, prefix, pkgs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M, repo, bin, k8s *string, prefix string, pkgs []string) (int, error) {
	var err error
	if *repo, err = RepoDir(); err != nil {
		return 0, err
	}
	if *bin, err = Build(*repo, prefix, pkgs...); err != nil {
		return 0, err
	}
	defer os.RemoveAll(*bin)
	if *k8s, err = K8sBin(*repo); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// Eventually polls fn every 200 ms until it succeeds, and fails the test
// with fn's last error when timeout has passed.
func Eventually(t testing.TB, what string, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s within %s: %v", what, timeout, err)
}

// Demo is a stack started by examples/demo/run.sh, as `make demo` starts it.
type Demo struct {
	Dir    string   // its INTERLINK_DEMO_DIR
	Env    []string // the environment it ran with (down.sh needs the same)
	Output string   // what it printed
}

// StartDemo runs `make build BIN=bin` (bin empty: a directory of the
// demo's) and the demo script with extra environment, in a directory
// removed when the test ends. register gets the demo before its script
// runs, to set up its stopping (Down) as a cleanup, failure included.
func StartDemo(t *testing.T, repo, bin string, register func(*Demo), extra ...string) *Demo {
	t.Helper()
	// Not t.TempDir: its parent is 0700 and munged runs as another user.
	dir, err := os.MkdirTemp("", "interlink-demo-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755) //nolint:gosec // traversed by munged and slurmd; the secrets sit in a 0700 directory below
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if bin == "" {
		bin = filepath.Join(dir, "bin")
	}
	build := exec.Command("make", "--no-print-directory", "build", "BIN="+bin) //nolint:gosec // the repository's own Makefile
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	d := &Demo{Dir: filepath.Join(dir, "demo")}
	// The demo's settings come from extra alone: a KUBECONFIG, SIDECAR or
	// AUTH of the caller's shell would point the demo (and down.sh's deletes)
	// at the developer's own cluster.
	var env []string
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "KUBECONFIG", "SIDECAR", "RUNTIME", "AUTH", "DEMO_NODE", "DEMO_NODE_ADDRESS", "DEMO_SLURM_CONFIG", "DEMO_IMAGE_ROOT", "INTERLINK_DEMO_DIR", "BIN":
		default:
			env = append(env, kv)
		}
	}
	d.Env = append(append(env, "INTERLINK_DEMO_DIR="+d.Dir, "BIN="+bin), extra...)
	register(d)
	cmd := exec.Command(filepath.Join(repo, "examples/demo/run.sh")) //nolint:gosec // the repository's own script
	cmd.Dir, cmd.Env = repo, d.Env
	out, err := cmd.CombinedOutput()
	d.Output = string(out)
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, d.Output)
	}
	return d
}

// Down runs examples/demo/down.sh (make demo-down) and returns its output.
func (d *Demo) Down(repo string) (string, error) {
	cmd := exec.Command(filepath.Join(repo, "examples/demo/down.sh")) //nolint:gosec // the repository's own script
	cmd.Dir, cmd.Env = repo, d.Env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// FreePortNumber is a TCP port free on loopback now, for a daemon a test
// starts (another process may take it meanwhile: start the daemon at once).
func FreePortNumber(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	a, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("listener address %v is not TCP", l.Addr())
	}
	return a.Port
}

// FreePort is FreePortNumber as a string.
func FreePort(t testing.TB) string { return strconv.Itoa(FreePortNumber(t)) }

// Process is a daemon a test runs: its output is appended to Log; Stop
// ends it; Run starts it again (a restart keeps the same log).
type Process struct {
	Name string   // shown in failures
	Log  string   // its output, appended
	Argv []string // program and arguments
	Env  []string // added to the test's environment
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess starts argv (env added to the test's environment, its
// output appended to log) in a process group of its own. It is stopped with
// SIGTERM when the test ends; the end of its log is shown when the test
// failed.
func StartProcess(t testing.TB, log string, env []string, argv ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(argv[0]), Log: log, Argv: argv, Env: env}
	p.Run(t)
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			lines := strings.Split(string(b), "\n")
			t.Logf("--- the last lines of %s (%s) ---\n%s", p.Name, p.Log, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return p
}

// Run starts the process (again, after Stop).
func (p *Process) Run(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...) //nolint:gosec // the test's own binaries
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
}

// Stop sends sig and waits for the process to end; after 10 s its whole
// process group is killed. A process not running is left alone.
func (p *Process) Stop(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// PID is the process's pid (of its last Run).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process (of the last Run) has ended.
func (p *Process) Exited() <-chan struct{} { return p.done }

// ExitCode is the exit code of the process's last Run once it ended (-1
// while it runs, or when a signal ended it).
func (p *Process) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// LockedBuffer is a buffer that several goroutines write (a daemon's
// output, say) while a test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
