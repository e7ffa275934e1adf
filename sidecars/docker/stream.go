package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Streams (sidecars.Streamer): kubectl exec -it and attach through Docker's
// hijacked exec and attach connections; port-forward to the port in the
// pod's network namespace.

var _ sidecars.Streamer = (*Sidecar)(nil)

// ExecStream runs a command in a running container with the stream as its
// standard streams (a TTY when asked), and returns its exit code.
func (d *Sidecar) ExecStream(ctx context.Context, req *api.StreamRequest, sio api.StreamIO) (int, error) {
	c, err := d.runningContainer(ctx, req)
	if err != nil {
		return 0, err
	}
	ex, err := d.api.ExecCreate(ctx, c.ID, client.ExecCreateOptions{Cmd: req.Command, TTY: req.TTY,
		AttachStdin: sio.Stdin != nil, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, engineError("exec in "+req.ContainerName, err)
	}
	att, err := d.api.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{TTY: req.TTY})
	if err != nil {
		return 0, engineError("exec in "+req.ContainerName, err)
	}
	resize := func(ctx context.Context, ts api.TermSize) error {
		_, err := d.api.ExecResize(ctx, ex.ID, client.ExecResizeOptions{Height: uint(ts.Height), Width: uint(ts.Width)})
		return err
	}
	err = d.pump(ctx, &att.HijackedResponse, sio, req.TTY, resize)
	if ctx.Err() != nil {
		// The client went away: Docker would let the command run on.
		d.endExec(ex.ID)
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, err
	}
	code, err := d.execExit(ctx, ex.ID, req.ContainerName)
	if err != nil {
		// Its output ended while it runs on: no one sees it any more.
		d.endExec(ex.ID)
	}
	return code, err
}

// endExec stops a command exec'd in a container whose client went away:
// Docker has no call for it, so on a local engine its process (and its
// process group, a shell's jobs) gets SIGHUP, as a closed terminal would
// send, then SIGKILL. On a remote engine the command runs until it ends.
func (d *Sidecar) endExec(execID string) {
	if !d.localEngine() {
		d.log.Info("a command exec'd for a client that went away runs on: the engine is remote", "exec", execID)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 10*time.Second)
	defer cancel()
	res, err := d.api.ExecInspect(ctx, execID, client.ExecInspectOptions{})
	if err != nil || !res.Running || res.PID <= 1 {
		return
	}
	for _, sig := range []unix.Signal{unix.SIGHUP, unix.SIGKILL} {
		_ = unix.Kill(-res.PID, sig)
		_ = unix.Kill(res.PID, sig)
		if sleep(ctx, 2*time.Second) != nil {
			return
		}
		if res, err = d.api.ExecInspect(ctx, execID, client.ExecInspectOptions{}); err != nil || !res.Running {
			return
		}
	}
}

// Attach joins a running container's standard streams; it returns the
// container's exit code when it ended, 0 when the client left first.
// Standard input reaches only a container made with stdin: true.
func (d *Sidecar) Attach(ctx context.Context, req *api.StreamRequest, sio api.StreamIO) (int, error) {
	c, err := d.runningContainer(ctx, req)
	if err != nil {
		return 0, err
	}
	in, err := d.inspect(ctx, c.ID)
	if err != nil {
		return 0, err
	}
	tty := in.Config != nil && in.Config.Tty
	if sio.Stdin != nil && (in.Config == nil || !in.Config.OpenStdin) {
		return 0, api.Invalid("attach to container %q of pod %s/%s with stdin: the container was not made with stdin: true", req.ContainerName, req.Namespace, req.PodName)
	}
	att, err := d.api.ContainerAttach(ctx, c.ID, client.ContainerAttachOptions{Stream: true, Stdin: sio.Stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		return 0, engineError("attach to "+req.ContainerName, err)
	}
	resize := func(ctx context.Context, ts api.TermSize) error {
		_, err := d.api.ContainerResize(ctx, c.ID, client.ContainerResizeOptions{Height: uint(ts.Height), Width: uint(ts.Width)})
		return err
	}
	if !tty {
		resize = nil
	}
	if err := d.pump(ctx, &att.HijackedResponse, sio, tty, resize); err != nil {
		return 0, err
	}
	if in, err = d.inspect(ctx, c.ID); err == nil && in.State != nil && in.State.Status != container.StateRunning {
		return in.State.ExitCode, nil
	}
	return 0, nil
}

// runningContainer finds req's container, which must be running.
func (d *Sidecar) runningContainer(ctx context.Context, req *api.StreamRequest) (container.Summary, error) {
	c, err := d.find(ctx, req.Namespace, req.PodName, req.PodUID, req.ContainerName)
	if err != nil {
		return c, err
	}
	if c.State != container.StateRunning {
		return c, api.Invalid("container %q of pod %s/%s is not running", req.ContainerName, req.Namespace, req.PodName)
	}
	return c, nil
}

// pump joins a hijacked Docker connection and the stream's standard
// streams until the output ends or ctx does: stdin goes in (then its end,
// as a half close), the output comes out (multiplexed unless tty), and
// resizes reach resize (when set).
func (d *Sidecar) pump(ctx context.Context, h *client.HijackedResponse, sio api.StreamIO, tty bool, resize func(context.Context, api.TermSize) error) error {
	defer h.Close()
	stop := context.AfterFunc(ctx, h.Close)
	defer stop()
	if sio.Stdin != nil {
		go func() {
			if _, err := io.Copy(h.Conn, sio.Stdin); err == nil {
				_ = h.CloseWrite()
			}
		}()
	}
	go func() {
		for ts := range sio.Resize {
			if resize != nil {
				_ = resize(ctx, ts)
			}
		}
	}()
	var err error
	if tty {
		_, err = io.Copy(sio.Stdout, h.Reader)
	} else {
		_, err = stdcopy.StdCopy(sio.Stdout, sio.Stderr, h.Reader)
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("stream output: %w", err)
	}
	return nil
}

// execExit waits (briefly) for Docker to record an exec's exit code, which
// comes a moment after its output ends.
func (d *Sidecar) execExit(ctx context.Context, execID, name string) (int, error) {
	for range 20 {
		res, err := d.api.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err != nil {
			return 0, engineError("exec in "+name, err)
		}
		if !res.Running {
			return res.ExitCode, nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, engineError("exec in "+name, errors.New("the command's output ended but Docker says it still runs"))
}

// PortForward connects to req.Port in the pod's network namespace: from
// inside it when the engine is on this host (a listener on the pod's
// loopback is reached too), else at the pod's address.
func (d *Sidecar) PortForward(ctx context.Context, req *api.StreamRequest) (io.ReadWriteCloser, error) {
	pods, err := d.pods(ctx, req.PodUID)
	if err != nil {
		return nil, err
	}
	cs := pods[req.PodUID]
	h, ok := holder(cs)
	if !ok {
		return nil, api.NotFound("pod %s/%s (uid %s) not found", req.Namespace, req.PodName, req.PodUID)
	}
	in, err := d.inspect(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	if in.State == nil || in.State.Status != container.StateRunning {
		return nil, api.Invalid("port-forward to pod %s/%s: the pod is not running", req.Namespace, req.PodName)
	}
	port := strconv.Itoa(int(req.Port))
	dialer := net.Dialer{Timeout: 10 * time.Second}
	if d.localEngine() && in.State.Pid > 0 && (in.HostConfig == nil || !in.HostConfig.NetworkMode.IsHost()) {
		conn, err := dialInNetns(ctx, in.State.Pid, net.JoinHostPort("127.0.0.1", port))
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, errNoNetns) {
			return nil, api.Unavailable("port-forward to pod %s/%s port %d: %w", req.Namespace, req.PodName, req.Port, err)
		}
	}
	addr := d.podAddress(ctx, in)
	if addr == noAddress {
		return nil, api.Invalid("port-forward to pod %s/%s: the pod has no address the sidecar reaches (NetworkMode none?)", req.Namespace, req.PodName)
	}
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(addr, port))
	if err != nil {
		return nil, api.Unavailable("port-forward to pod %s/%s port %d: %w", req.Namespace, req.PodName, req.Port, err)
	}
	return conn, nil
}

// localEngine tells whether dockerd runs on this host (a unix socket).
func (d *Sidecar) localEngine() bool {
	u, err := url.Parse(d.cfg.DockerHost)
	return err == nil && u.Scheme == "unix"
}

var errNoNetns = errors.New("no way into the pod's network namespace")

// dialInNetns connects to addr from inside the network namespace of the
// process pid. The socket is made on a thread that entered the namespace
// and went back; a thread that could not go back is never reused.
func dialInNetns(ctx context.Context, pid int, addr string) (net.Conn, error) {
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoNetns, err)
	}
	defer func() { _ = target.Close() }()
	type result struct {
		conn net.Conn
		err  error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("%w: %w", errNoNetns, err)}
			return
		}
		defer func() { _ = self.Close() }()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("%w: setns: %w", errNoNetns, err)}
			return
		}
		// Only the socket's creation needs this thread; connect may go
		// on on any (the socket stays in the namespace it was made in).
		conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with this goroutine, still locked
		res <- result{conn, err}
	}()
	r := <-res
	return r.conn, r.err
}
