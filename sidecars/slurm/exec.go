package slurm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

var _ sidecars.Execer = (*Sidecar)(nil)

// Exec runs a command in a running container of a pod (kubectl exec): srun
// joins the pod's job on its node (--overlap, beside its containers), where
// interlink-prober enters the container's current run as exec probes do
// (nsenter into its namespaces, or podman exec) and runs the command there,
// never on the host. Its output streams to out; the command's exit code is
// returned (126 when the container could not be entered).
func (s *Sidecar) Exec(ctx context.Context, req *api.ExecRequest, out io.Writer) (int, error) {
	if len(req.Command) == 0 {
		return 0, api.Invalid("exec in pod %s/%s: no command", req.Namespace, req.PodName)
	}
	argv, err := s.execArgv(req.Namespace, req.PodName, req.PodUID, req.ContainerName, "--input=none", nil)
	if err != nil {
		return 0, err
	}
	return s.cmd.stream(ctx, append(argv, req.Command...), out)
}

// execArgv is the srun command line (but the command's words, to append)
// that runs a command inside a running container of a pod: srun joins the
// job (with srunOpts), interlink-prober enters the container (with
// proberOpts).
func (s *Sidecar) execArgv(namespace, podName, uid, container string, srunOpt string, proberOpts []string) ([]string, error) {
	rec, ok := s.store.get(uid)
	if !ok {
		return nil, api.NotFound("pod %s/%s (uid %s) not found", namespace, podName, uid)
	}
	i := slices.IndexFunc(rec.Entries, func(c prober.Container) bool { return c.Name == container })
	switch {
	case i < 0 && slices.Contains(rec.Containers, container):
		return nil, api.Invalid("exec in container %q of pod %s/%s: the pod was created by an older sidecar, which kept no way into it", container, namespace, podName)
	case i < 0:
		return nil, api.NotFound("pod %s/%s has no container %q", namespace, podName, container)
	case rec.Final != nil:
		return nil, api.Invalid("exec in container %q of pod %s/%s: its job has ended", container, namespace, podName)
	}
	entry := rec.Entries[i]
	if err := s.requireProber("exec"); err != nil {
		return nil, err
	}
	if len(entry.Exec) == 0 && entry.Nsenter == "" {
		return nil, api.Invalid("exec in container %q of pod %s/%s: NsenterPath was not found when the sidecar started, and this runtime has no exec of its own", container, namespace, podName)
	}
	spec, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}
	pidFile := filepath.Join(s.rootDir, rec.Dir, containersDir, entry.Name+".pid")
	args := append(append([]string{"exec"}, proberOpts...), pidFile, string(spec), "--")
	return s.proberInJob(rec.JobID, srunOpt, args...), nil
}

// requireProber fails what (exec, a port-forward) when the sidecar did not
// find srun or interlink-prober at start.
func (s *Sidecar) requireProber(what string) error {
	for _, key := range []string{"SrunPath", "ProberPath"} {
		if err := s.missing[key]; err != nil {
			return api.Invalid("%s needs %s, which the sidecar did not find at start: %v", what, key, err)
		}
	}
	return nil
}

// proberInJob is the command line that runs interlink-prober with args in
// the running job (srun --overlap joins it, with srunOpt for its input).
func (s *Sidecar) proberInJob(jobID, srunOpt string, args ...string) []string {
	argv := []string{s.cfg.SrunPath, "--overlap", "--jobid=" + jobID, "--nodes=1", "--ntasks=1", "--quiet", srunOpt, "--", s.cfg.ProberPath}
	return append(argv, args...)
}

// srunCmd is an exec.Cmd of srun (argv, never through a shell) in a process
// group of its own: interrupted (ctx), srun gets SIGTERM and cancels the
// step, so the command ends on the node too.
func (c *commands) srunCmd(ctx context.Context, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) //nolint:gosec // the operator's programs; the command's words are argv elements
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = commandWaitDelay
	return cmd
}

// stream runs argv (never through a shell) until it ends or ctx does,
// its output and errors going to out as they come, and returns its exit
// code. It has no timeout: an exec lasts as long as its caller wants.
func (c *commands) stream(ctx context.Context, argv []string, out io.Writer) (int, error) {
	cmd := c.srunCmd(ctx, argv)
	w := &lockedWriter{w: out}
	errw := &srunFilter{w: w}
	cmd.Stdout, cmd.Stderr = w, errw
	err := cmd.Run()
	errw.flush()
	return exitOf(err, errw.failed, argv[0])
}

// lockedWriter serializes the writes of a command's stdout and stderr.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// srunExit is srun's own line telling a task's exit code, which the exit
// code already says.
var srunExit = regexp.MustCompile(`^srun: error: [^ ]+: tasks? [0-9,-]+: Exited with exit code [0-9]+\r?\n$`)

// srunFilter passes standard error on, line by line, without srunExit's
// lines, and keeps the first of srun's own errors (failed). A line longer
// than 64 KiB is passed on in pieces.
type srunFilter struct {
	w      io.Writer
	buf    []byte
	failed string
}

func (f *srunFilter) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			if len(f.buf) > 64<<10 {
				f.flush()
			}
			return len(p), nil
		}
		line := f.buf[:i+1]
		if f.failed == "" && bytes.HasPrefix(line, []byte("srun: error: ")) && !srunExit.Match(line) {
			f.failed = strings.TrimSpace(string(line))
		}
		if !srunExit.Match(line) {
			if _, err := f.w.Write(line); err != nil {
				return len(p), err
			}
		}
		f.buf = f.buf[i+1:]
	}
}

// flush passes on what is left of an unfinished line.
func (f *srunFilter) flush() {
	if len(f.buf) > 0 {
		_, _ = f.w.Write(f.buf)
		f.buf = nil
	}
}
