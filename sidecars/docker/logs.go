package docker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// find returns the container of a pod by its name in the pod.
func (d *Sidecar) find(ctx context.Context, namespace, podName, uid, name string) (container.Summary, error) {
	pods, err := d.pods(ctx, uid)
	if err != nil {
		return container.Summary{}, err
	}
	cs := pods[uid]
	if len(cs) == 0 {
		return container.Summary{}, api.NotFound("pod %s/%s (uid %s) not found", namespace, podName, uid)
	}
	for _, c := range cs {
		if c.Labels[LabelRole] != rolePause && c.Labels[LabelContainer] == name {
			return c, nil
		}
	}
	return container.Summary{}, api.NotFound("pod %s/%s has no container %q", namespace, podName, name)
}

// Logs streams a container's logs from the Docker API, stdout and stderr
// demultiplexed, with every option of kubectl logs. Docker keeps one log
// for all the runs of a restarted container: as a kubelet does, it shows
// the current run's, or with Previous the run's before (by time: runs are
// apart by Docker's restart delay, at least 100 ms).
func (d *Sidecar) Logs(ctx context.Context, req *api.LogRequest) (io.ReadCloser, error) {
	c, err := d.find(ctx, req.Namespace, req.PodName, req.PodUID, req.ContainerName)
	if err != nil {
		return nil, err
	}
	o := req.Opts
	in, err := d.inspect(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	var since time.Time
	switch {
	case o.SinceSeconds > 0:
		since = time.Now().Add(-time.Duration(o.SinceSeconds) * time.Second)
	case !o.SinceTime.IsZero():
		since = o.SinceTime
	}
	from, until, ok := runWindow(in, d.historyCopy(c.ID).ends, o.Previous)
	if !ok {
		return nil, api.NotFound("previous terminated container %q in pod %q not found", req.ContainerName, req.PodName)
	}
	if o.Previous && o.Tail > 0 {
		return nil, api.Invalid("container %q of pod %s/%s: the Docker sidecar cannot tail the log of a previous run (Docker counts lines from the end of all runs)",
			req.ContainerName, req.Namespace, req.PodName)
	}
	if from.After(since) {
		since = from
	}
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: o.Follow && !o.Previous, Timestamps: o.Timestamps, Tail: "all"}
	if o.Tail > 0 {
		opts.Tail = strconv.Itoa(o.Tail)
	}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	if !until.IsZero() {
		opts.Until = fmt.Sprintf("%d.%09d", until.Unix(), until.Nanosecond())
	}
	if o.Follow && c.State == container.StateCreated {
		// Docker ends a followed log of a container not started yet at
		// once: wait for its start (its init containers may still run).
		if err := d.waitStarted(ctx, c.ID); err != nil {
			return nil, err
		}
	}
	rc, err := d.api.ContainerLogs(ctx, c.ID, opts)
	if err != nil {
		return nil, engineError("logs of "+req.ContainerName, err)
	}
	pr, pw := io.Pipe()
	go func() {
		defer func() { _ = rc.Close() }()
		var w io.Writer = pw
		if o.LimitBytes > 0 {
			w = &limitWriter{w: pw, n: o.LimitBytes}
		}
		_, err := output(w, rc, c.Labels[LabelTTY] == "true")
		if errors.Is(err, errLimit) {
			err = nil
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// runMargin is how long before a run's recorded start its first lines may
// be logged when the end of the run before it is not known (Docker stamps a
// line when it reads it; the start is recorded once the process runs): half
// the shortest restart delay.
const runMargin = 50 * time.Millisecond

// runWindow is the time window of a container's current run in its log,
// or with previous of the run before: zero times for no bound. False when
// previous is asked of a container that never restarted.
//
// A run's lines come after the end of the run before it: Docker reads the
// whole output of a run before it records its end (the die event), and
// starts the next run after its restart delay. Only when that end is not
// known is the boundary taken from the run's start, less runMargin.
func runWindow(in container.InspectResponse, ends []corev1.ContainerStateTerminated, previous bool) (from, until time.Time, ok bool) {
	if in.RestartCount == 0 {
		return time.Time{}, time.Time{}, !previous
	}
	cur := parseTime(in.State.StartedAt)
	if cur.IsZero() {
		return time.Time{}, time.Time{}, !previous
	}
	// boundary is where the run that started at start begins, given the
	// end of the run before it, if known.
	boundary := func(start metav1.Time, before *corev1.ContainerStateTerminated) time.Time {
		if before != nil && !before.FinishedAt.IsZero() && before.FinishedAt.Before(&start) {
			return before.FinishedAt.Time
		}
		return start.Add(-runMargin)
	}
	prev := previousEnd(ends, cur)
	curFrom := boundary(cur, prev)
	if !previous {
		return curFrom, time.Time{}, true
	}
	if prev == nil || prev.StartedAt.IsZero() || in.RestartCount == 1 {
		return time.Time{}, curFrom, true // every run before the current one
	}
	return boundary(prev.StartedAt, previousEnd(ends, prev.StartedAt)), curFrom, true
}

// Bounds of what the sidecar holds of a container's output.
const (
	// outputChunk is the largest piece of a container's output (a log
	// line, or an exec's) the sidecar holds: a longer frame of Docker's
	// stream (one line, or a piece of one) is passed on in pieces of this
	// size, never read whole.
	outputChunk = 32 << 10
	// maxDaemonError bounds the error message the daemon puts in a stream.
	maxDaemonError = 4 << 10
)

// demux copies Docker's multiplexed stream (8-byte headers: stream, 3
// zero bytes, big-endian size) from src to w, stdout and stderr alike,
// through one buffer of outputChunk bytes. Unlike stdcopy.StdCopy, which
// grows its buffer to the size a header announces, it never holds a frame
// whole, whatever the size announced. A stream that ends within a frame
// ends the copy without error, as StdCopy does.
func demux(w io.Writer, src io.Reader) (int64, error) {
	return output(w, src, false)
}

// output copies a container's output stream to w: as it came for a
// container with a TTY, else demultiplexed (demux).
func output(w io.Writer, src io.Reader, tty bool) (int64, error) {
	if tty {
		return io.Copy(w, src)
	}
	var hdr [8]byte
	buf := make([]byte, outputChunk)
	var written int64
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return written, nil
			}
			return written, err
		}
		size := int64(binary.BigEndian.Uint32(hdr[4:]))
		switch hdr[0] {
		case 0, 1, 2: // stdin (written as stdout by Docker), stdout, stderr
		case 3: // an error of the daemon
			msg, _ := io.ReadAll(io.LimitReader(src, min(size, maxDaemonError)))
			return written, fmt.Errorf("error from daemon in stream: %s", msg)
		default:
			return written, fmt.Errorf("unrecognized stream: %d", hdr[0])
		}
		for size > 0 {
			n, err := src.Read(buf[:min(size, int64(len(buf)))])
			if n > 0 {
				nw, werr := w.Write(buf[:n])
				written += int64(nw)
				if werr != nil {
					return written, werr
				}
				if nw != n {
					return written, io.ErrShortWrite
				}
				size -= int64(n)
			}
			if errors.Is(err, io.EOF) {
				return written, nil
			}
			if err != nil {
				return written, err
			}
		}
	}
}

// waitStarted polls until the container has left the created state, or
// Docker failed to start it (its log is then empty; a retried start is
// not waited for).
func (d *Sidecar) waitStarted(ctx context.Context, id string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		in, err := d.inspect(ctx, id)
		if err != nil {
			return err
		}
		if in.State.Status != container.StateCreated || startFailed(in.State) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

var errLimit = errors.New("limit reached")

// limitWriter writes at most n bytes, then fails with errLimit.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	if len(b) > l.n {
		k, err := l.w.Write(b[:l.n])
		l.n -= k
		if err == nil {
			err = errLimit
		}
		return k, err
	}
	k, err := l.w.Write(b)
	l.n -= k
	return k, err
}

// Exec runs a command in a running container (kubectl exec, without stdin
// or a TTY) and returns its exit code.
func (d *Sidecar) Exec(ctx context.Context, req *api.ExecRequest, out io.Writer) (int, error) {
	c, err := d.find(ctx, req.Namespace, req.PodName, req.PodUID, req.ContainerName)
	if err != nil {
		return 0, err
	}
	if c.State != container.StateRunning {
		return 0, api.Invalid("container %q of pod %s/%s is not running", req.ContainerName, req.Namespace, req.PodName)
	}
	return d.execIn(ctx, c.ID, req.ContainerName, req.Command, out)
}

// execIn runs cmd in the running container id (named name) and returns its
// exit code once its output ended. When ctx ends the output is no longer
// read (Docker has no way to stop the command: it runs on in the
// container).
func (d *Sidecar) execIn(ctx context.Context, id, name string, cmd []string, out io.Writer) (int, error) {
	ex, err := d.api.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, engineError("exec in "+name, err)
	}
	att, err := d.api.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, engineError("exec in "+name, err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	if _, err := demux(out, att.Reader); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("exec output: %w", err)
	}
	// The output ends a moment before Docker records the exit code.
	return d.execExit(ctx, ex.ID, name)
}
