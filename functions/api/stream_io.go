package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
)

// The two ends of a stream as Go sees them: the sidecar serves an exec or
// attach with a StreamIO (ServeIO), the VK drives one from its kubelet API
// (RunIO); a port-forward is a byte pipe at both ends (Pipe).

// StreamIO is what an exec or attach reads and writes at the sidecar.
type StreamIO struct {
	// Stdin is nil when the client sends none (no -i).
	Stdin io.Reader
	// Stdout and Stderr are never nil; with a TTY everything goes to
	// Stdout.
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize tells the terminal's size changes (TTY only); it is closed
	// when the stream ends.
	Resize <-chan TermSize
}

// ServeIO runs an exec or attach (run) on the server's end of a stream:
// the client's standard input and resizes reach run through sio, run's
// output goes back, and the stream ends with run's exit code or error.
func (c *StreamConn) ServeIO(ctx context.Context, req *StreamRequest, run func(context.Context, StreamIO) (int, error)) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	resize := make(chan TermSize, 4)
	sio := StreamIO{Stdout: &chanWriter{c: c, ch: ChanStdout}, Stderr: &chanWriter{c: c, ch: ChanStderr}, TTY: req.TTY, Resize: resize}
	if req.Stdin {
		sio.Stdin = pr
	}
	if req.TTY {
		sio.Stderr = sio.Stdout
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(resize)
		for {
			ch, data, err := c.Recv()
			if err != nil {
				// The client went away: a command still running is stopped
				// (ctx first, so that run sees why its input ends), and its
				// input ends.
				cancel()
				_ = pw.CloseWithError(io.EOF)
				return
			}
			switch ch {
			case ChanStdin:
				if !req.Stdin {
					continue // input the request did not ask for: dropped
				}
				if _, err := pw.Write(data); err != nil {
					continue // run no longer reads: dropped
				}
			case ChanCloseStdin:
				_ = pw.Close()
			case ChanResize:
				var ts TermSize
				if json.Unmarshal(data, &ts) == nil && ts.Width > 0 && ts.Height > 0 {
					select {
					case resize <- ts:
					default: // a burst of resizes: the last ones count
					}
				}
			}
		}
	}()
	code, err := run(ctx, sio)
	_ = pr.CloseWithError(io.EOF) // a writer blocked on stdin is released
	st := StreamStatus{ExitCode: code}
	if err != nil {
		st.Error = new(StatusOf(err))
	}
	c.End(st)
	<-read
}

// RunIO drives an exec or attach from the client's end: stdin (nil: none)
// and resizes go to the server, its output to stdout and stderr, until the
// server ends the stream with its StreamStatus, returned.
func (c *StreamConn) RunIO(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TermSize) (StreamStatus, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	if stdin != nil {
		// Not waited for: a read of the kubelet API's stdin may block until
		// its client goes; the stream's close makes the next Send fail.
		go func() {
			buf := make([]byte, streamChunk)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if c.Send(ChanStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					_ = c.Send(ChanCloseStdin, nil)
					return
				}
			}
		}()
	}
	if resize != nil {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ts, ok := <-resize:
					if !ok {
						return
					}
					if c.SendJSON(ChanResize, ts) != nil {
						return
					}
				}
			}
		})
	}
	for {
		ch, data, err := c.Recv()
		if err != nil {
			cancel()
			if ctx.Err() != nil && !errors.Is(err, io.EOF) {
				return StreamStatus{}, ctx.Err()
			}
			return StreamStatus{}, Unavailable("the stream ended without its status: %w", err)
		}
		switch ch {
		case ChanStdout:
			if stdout != nil {
				_, _ = stdout.Write(data)
			}
		case ChanStderr:
			if stderr != nil {
				_, _ = stderr.Write(data)
			} else if stdout != nil {
				_, _ = stdout.Write(data)
			}
		case ChanStatus:
			var st StreamStatus
			if err := json.Unmarshal(data, &st); err != nil {
				return StreamStatus{}, Invalid("stream status: %w", err)
			}
			cancel()
			c.Close()
			return st, nil
		}
	}
}

// Err is the error a StreamStatus carries, typed, or nil.
func (st StreamStatus) Err() error {
	if st.Error == nil {
		return nil
	}
	return &Error{Reason: st.Error.Reason, Err: errors.New(st.Error.Message)}
}

// Pipe joins a port-forward's stream and its connection: what conn reads
// goes out on channel out, what comes in on channel in is written to conn,
// until either side ends. The client pipes with (ChanStdin, ChanStdout),
// the server with (ChanStdout, ChanStdin). A ChanStatus that comes in ends
// the pipe with its error.
func (c *StreamConn) Pipe(ctx context.Context, conn io.ReadWriteCloser, out, in byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close(); _ = conn.Close() })
	defer stop()
	errs := make(chan error, 2)
	go func() {
		buf := make([]byte, streamChunk)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if serr := c.Send(out, buf[:n]); serr != nil {
					errs <- serr
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errs <- err
				return
			}
		}
	}()
	go func() {
		for {
			ch, data, err := c.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errs <- err
				return
			}
			switch ch {
			case in:
				if _, err := conn.Write(data); err != nil {
					errs <- err
					return
				}
			case ChanStatus:
				var st StreamStatus
				_ = json.Unmarshal(data, &st)
				errs <- st.Err()
				return
			}
		}
	}()
	err := <-errs
	cancel()
	c.Close()
	_ = conn.Close()
	<-errs //nolint:errcheck // the other side ends on the closes: its error is their consequence
	return err
}

// chanWriter writes to one channel of a stream.
type chanWriter struct {
	c  *StreamConn
	ch byte
}

func (w *chanWriter) Write(p []byte) (int, error) {
	if err := w.c.Send(w.ch, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
