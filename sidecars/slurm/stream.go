package slurm

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Streams (sidecars.Streamer): kubectl exec -it inside the running job
// (srun --overlap, with --pty on a terminal of the sidecar's for -t), and
// port-forward to a port the pod declared, on the job's node: dialed from
// the sidecar (PortForwardVia node), or tunneled through the job (job).
// Attach is not offered: a job's containers write to its files and read
// no input.

var _ sidecars.Streamer = (*Sidecar)(nil)

// PortForwardVia values.
const (
	PortForwardViaNode = "node"
	PortForwardViaJob  = "job"
)

// ExecStream runs a command inside a running container of the pod with the
// stream as its standard streams.
func (s *Sidecar) ExecStream(ctx context.Context, req *api.StreamRequest, sio api.StreamIO) (int, error) {
	srunOpt, proberOpts := "--input=none", []string(nil)
	if sio.Stdin != nil {
		srunOpt, proberOpts = "--input=0", []string{"-i"}
	}
	if req.TTY {
		srunOpt, proberOpts = "--pty", append(proberOpts, "-t")
	}
	argv, err := s.execArgv(req.Namespace, req.PodName, req.PodUID, req.ContainerName, srunOpt, proberOpts)
	if err != nil {
		return 0, err
	}
	argv = append(argv, req.Command...)
	cmd := s.cmd.srunCmd(ctx, argv)
	if !req.TTY {
		errw := &srunFilter{w: &lockedWriter{w: sio.Stderr}}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = sio.Stdin, &lockedWriter{w: sio.Stdout}, errw
		runErr := cmd.Run()
		errw.flush()
		return exitOf(runErr, errw.failed, argv[0])
	}
	// srun --pty needs a terminal: a pty of the sidecar's, whose size
	// follows the client's (srun passes it on to the job's). It leads a
	// session of its own there, not a process group.
	cmd.SysProcAttr = nil
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	// The task's output comes on srun's standard output (the step's
	// terminal); srun's own messages, on its standard error, are filtered.
	errw := &srunFilter{w: &lockedWriter{w: sio.Stdout}}
	cmd.Stderr = errw
	tty, err := pty.Start(cmd)
	if err != nil {
		return 0, api.Unavailable("%s on a terminal: %w", argv[0], err)
	}
	defer func() { _ = tty.Close() }()
	go func() {
		for ts := range sio.Resize {
			_ = pty.Setsize(tty, &pty.Winsize{Rows: ts.Height, Cols: ts.Width})
		}
	}()
	if sio.Stdin != nil {
		go func() { _, _ = io.Copy(tty, sio.Stdin) }()
	}
	// The terminal's output ends (EIO) once srun and the step are gone.
	_, _ = io.Copy(ptyFilter{sio.Stdout}, tty)
	waitErr := cmd.Wait()
	errw.flush()
	return exitOf(waitErr, errw.failed, argv[0])
}

// exitOf maps srun's end to the command's exit code: srun's own failure
// (failed: its first error line) is Unavailable.
func exitOf(err error, failed, name string) (int, error) {
	var ee *exec.ExitError
	switch {
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited 0 while its client's input stayed open: a success.
		return 0, nil
	case errors.As(err, &ee) && failed != "":
		return 0, api.Unavailable("%s", failed)
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	case err != nil:
		return 0, api.Unavailable("%s: %w", name, err)
	}
	return 0, nil
}

// Attach is not offered by the SLURM sidecar.
func (s *Sidecar) Attach(_ context.Context, req *api.StreamRequest, _ api.StreamIO) (int, error) {
	return 0, api.NewError(api.ReasonNotImplemented, "attach to container %q of pod %s/%s: a Slurm job's containers write to the job's files and read no input, so there is nothing to attach to; use kubectl logs -f, or kubectl exec -it", req.ContainerName, req.Namespace, req.PodName)
}

// PortForward connects to req.Port on the node running the pod's job. The
// port must be one the pod declared (containerPort): the runtimes here
// share the node's network, so any other port there may be another
// tenant's.
func (s *Sidecar) PortForward(ctx context.Context, req *api.StreamRequest) (io.ReadWriteCloser, error) {
	rec, ok := s.store.get(req.PodUID)
	if !ok {
		return nil, api.NotFound("pod %s/%s (uid %s) not found", req.Namespace, req.PodName, req.PodUID)
	}
	if rec.Final != nil {
		return nil, api.Invalid("port-forward to pod %s/%s: its job has ended", req.Namespace, req.PodName)
	}
	var declared []int32
	for _, e := range rec.Entries {
		for _, p := range e.Ports {
			if p.Protocol == "" || p.Protocol == "TCP" {
				declared = append(declared, p.ContainerPort)
			}
		}
	}
	if !slices.Contains(declared, req.Port) {
		return nil, api.Invalid("port-forward to pod %s/%s port %d: the pod declares no such TCP containerPort (declared: %v); on a Slurm node the pods share the node's network, so only a port the pod declared is its own", req.Namespace, req.PodName, req.Port, declared)
	}
	port := strconv.Itoa(int(req.Port))
	if s.cfg.PortForwardVia == PortForwardViaJob {
		return s.tunnel(ctx, rec, port)
	}
	node, err := s.jobNodeAddress(ctx, rec.JobID)
	if err != nil {
		return nil, err
	}
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(node, port))
	if err != nil {
		return nil, api.Unavailable("port-forward to pod %s/%s port %d on node %s: %w (PortForwardVia job tunnels through the job instead)", req.Namespace, req.PodName, req.Port, node, err)
	}
	return conn, nil
}

// nodeName is what a Slurm node name may be.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// jobNodeAddress is the address of the node running job's batch script:
// its NodeAddr, as sinfo tells it (else its name).
func (s *Sidecar) jobNodeAddress(ctx context.Context, job string) (string, error) {
	// %B: the node running the batch script, where the containers are.
	out, err := s.cmd.run(ctx, s.cfg.SqueuePath, "--noheader", "--jobs="+job, "--format=%B")
	if err != nil {
		return "", api.Unavailable("the node of job %s: %w", job, err)
	}
	first := strings.TrimSpace(string(out))
	if first == "" || first == "n/a" {
		return "", api.Invalid("job %s runs on no node (yet)", job)
	}
	if !nodeName.MatchString(first) {
		return "", api.Invalid("job %s: node name %q", job, first)
	}
	addrs, err := s.nodeAddresses(ctx, []string{first})
	if err != nil {
		return "", err
	}
	return addrs[first], nil
}

// tunnel carries the connection through the job: srun joins it and
// interlink-prober dials the port on the node's loopback, its standard
// input and output joined to the connection.
func (s *Sidecar) tunnel(ctx context.Context, rec record, port string) (io.ReadWriteCloser, error) {
	if err := s.requireProber("port-forward through the job"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	argv := s.proberInJob(rec.JobID, "--input=0", "dial", net.JoinHostPort("127.0.0.1", port))
	cmd := s.cmd.srunCmd(ctx, argv)
	cmd.Stderr = io.Discard
	in, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, api.Unavailable("%s: %w", argv[0], err)
	}
	return &tunnelConn{Reader: out, in: in, stop: func() error {
		cancel()
		err := cmd.Wait()
		if ctx.Err() != nil {
			return nil // stopped by us
		}
		return err
	}}, nil
}

// tunnelConn is a connection carried by srun's standard streams.
type tunnelConn struct {
	io.Reader
	in   io.WriteCloser
	stop func() error
	once sync.Once
	err  error
}

func (t *tunnelConn) Write(b []byte) (int, error) { return t.in.Write(b) }

func (t *tunnelConn) Close() error {
	t.once.Do(func() {
		_ = t.in.Close()
		t.err = t.stop()
	})
	return t.err
}

// srunExitTTY is srun's line telling a task's exit code as it comes on a
// terminal, which the exit code already says.
var srunExitTTY = regexp.MustCompile(`srun: error: [^ \r\n]+: tasks? [0-9,-]+: Exited with exit code [0-9]+\r?\n`)

// ptyFilter passes a terminal's output on without srunExitTTY's lines.
type ptyFilter struct{ w io.Writer }

func (f ptyFilter) Write(p []byte) (int, error) {
	if _, err := f.w.Write(srunExitTTY.ReplaceAll(p, nil)); err != nil {
		return 0, err
	}
	return len(p), nil
}
