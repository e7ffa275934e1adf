package slurm

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Logs streams one container's log: each line of containers/NAME.log is
// "TIME TEXT", as the job script wrote it, so every option of kubectl logs
// (tail, limit bytes, since, timestamps, follow) is honored here.
func (s *Sidecar) Logs(ctx context.Context, req *api.LogRequest) (io.ReadCloser, error) {
	rec, ok := s.store.get(req.PodUID)
	if !ok {
		return nil, api.NotFound("pod %s/%s (uid %s) not found", req.Namespace, req.PodName, req.PodUID)
	}
	if !slices.Contains(rec.Containers, req.ContainerName) && !slices.Contains(rec.InitContainers, req.ContainerName) {
		return nil, api.NotFound("pod %s/%s has no container %q", req.Namespace, req.PodName, req.ContainerName)
	}
	if req.Opts.Previous {
		return nil, api.NotFound("container %q of pod %s/%s: previous instances are not kept apart: its log holds every run's lines", req.ContainerName, req.Namespace, req.PodName)
	}
	name := path.Join(rec.Dir, containersDir, req.ContainerName+".log")
	f, err := openJobFile(s.root, name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f = nil // not started yet
	case err != nil:
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		lw := &logWriter{s: s, rec: rec, req: req, name: name, w: pw}
		pw.CloseWithError(lw.run(ctx, f))
	}()
	return pr, nil
}

type logWriter struct {
	s      *Sidecar
	rec    record
	req    *api.LogRequest
	name   string
	w      io.Writer
	budget int
}

func (l *logWriter) run(ctx context.Context, f *os.File) error {
	o := l.req.Opts
	l.budget = o.LimitBytes
	since := o.SinceTime
	if o.SinceSeconds > 0 {
		since = time.Now().Add(-time.Duration(o.SinceSeconds) * time.Second)
	}
	var r *bufio.Reader
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	if f != nil {
		r = bufio.NewReaderSize(f, maxLogLine)
	}
	// What is there now: filtered, and the last Tail lines kept.
	var tail []string
	tailBytes := 0
	// keep sends a line, or keeps it among the last Tail ones.
	keep := func(out string) error {
		if o.Tail <= 0 {
			return l.emit(out)
		}
		tail = append(tail, out)
		tailBytes += len(out)
		for len(tail) > o.Tail || tailBytes > maxTailBytes {
			tailBytes -= len(tail[0])
			tail = tail[1:]
		}
		return nil
	}
	var partial string // a last line not finished yet, read again when followed
	if r != nil {
		for {
			line, err := readLine(r)
			if err != nil {
				// A partial last line is read again when followed; else
				// it is the last line, and counts as one for Tail.
				if len(line) > 0 {
					if o.Follow {
						partial = line
					} else if out, ok := l.format(line+"\n", since); ok {
						if err := keep(out); err != nil {
							return ignoreEOF(err)
						}
					}
				}
				break
			}
			if out, ok := l.format(line, since); ok {
				if err := keep(out); err != nil {
					return ignoreEOF(err)
				}
			}
		}
	}
	for _, out := range tail {
		if err := l.emit(out); err != nil {
			return ignoreEOF(err)
		}
	}
	if !o.Follow {
		return nil
	}
	tick := time.NewTicker(l.s.cfg.LogPollInterval.Duration)
	defer tick.Stop()
	for {
		ended := l.ended()
		if r == nil {
			if nf, err := openJobFile(l.s.root, l.name); err == nil {
				f = nf
				r = bufio.NewReaderSize(f, maxLogLine)
			}
		}
		for r != nil {
			line, err := readLine(r)
			partial += line
			if err != nil {
				break
			}
			if out, ok := l.format(partial, since); ok {
				if err := l.emit(out); err != nil {
					return ignoreEOF(err)
				}
			}
			partial = ""
		}
		if ended {
			if partial != "" {
				if out, ok := l.format(partial+"\n", since); ok {
					return ignoreEOF(l.emit(out))
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// ended tells whether the container will write no more: it recorded its
// exit code, its job ended, or its pod is gone.
func (l *logWriter) ended() bool {
	rec, ok := l.s.store.get(l.rec.UID)
	if !ok || rec.Final != nil {
		return true
	}
	_, err := l.s.root.Stat(path.Join(l.rec.Dir, containersDir, l.req.ContainerName+".exit"))
	return err == nil
}

// format turns a stored line into the line to send, or false when it is
// before since.
func (l *logWriter) format(line string, since time.Time) (string, bool) {
	ts, text, ok := strings.Cut(line, " ")
	if !ok {
		return line, true
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return line, true // not written by the job script's logger
	}
	if !since.IsZero() && t.Before(since) {
		return "", false
	}
	if l.req.Opts.Timestamps {
		return line, true
	}
	return text, true
}

func (l *logWriter) emit(s string) error {
	if l.req.Opts.LimitBytes > 0 {
		if l.budget <= 0 {
			return io.EOF
		}
		if len(s) > l.budget {
			s = s[:l.budget]
		}
		l.budget -= len(s)
	}
	_, err := io.WriteString(l.w, s)
	return err
}

// maxLogLine is the longest log line read at once: a longer one (a
// container writing gigabytes without a newline) comes in pieces, each one
// a line, as the CRI splits long lines. The job's logger (interlink-envexec
// log) splits lines at 16 KiB already; this bounds what the sidecar reads whatever
// the file holds.
const maxLogLine = 64 << 10

// maxTailBytes bounds the lines kept for a tail: past it the oldest go,
// even when fewer than Tail are kept.
const maxTailBytes = 16 << 20

// readLine reads one line of at most maxLogLine bytes (r's buffer size).
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return string(b) + "\n", nil
	}
	return string(b), err
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
