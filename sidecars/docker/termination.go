package docker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// terminationMessage is the message of the run of a stopped container that
// in tells: what it wrote at its terminationMessagePath, read from the
// stopped container (at most probe.MaxMessageBytes; a path that is not a
// regular file gives none), or with FallbackToLogsOnError the tail of
// that run's log when it failed without writing one.
func (d *Sidecar) terminationMessage(ctx context.Context, in container.InspectResponse, l lifecycle) string {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.APITimeout.Duration)
	defer cancel()
	file := d.readMessageFile(ctx, in.ID, l.messagePath())
	tail := func() []byte { return d.logTail(ctx, in) }
	return probe.TerminationMessage(&corev1.Container{TerminationMessagePolicy: l.Policy}, file, exitCode(in.State.ExitCode, 0), tail)
}

// readMessageFile reads the file at p in the container through Docker's
// archive API, which works on stopped containers.
func (d *Sidecar) readMessageFile(ctx context.Context, id, p string) []byte {
	res, err := d.api.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: p})
	if err != nil {
		return nil
	}
	defer func() { _ = res.Content.Close() }()
	return messageFromTar(res.Content, path.Base(p))
}

// messageFromTar reads the first entry of a tar stream, if it is a regular
// file named name: at most probe.MaxMessageBytes of it.
func messageFromTar(r io.Reader, name string) []byte {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Typeflag != tar.TypeReg || path.Base(h.Name) != name {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(tr, probe.MaxMessageBytes))
	return b
}

// logTail is the end of the log of the run in tells (at most
// probe.MaxLogMessageBytes), for FallbackToLogsOnError.
func (d *Sidecar) logTail(ctx context.Context, in container.InspectResponse) []byte {
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(probe.MaxLogMessageLines)}
	// The run's lines, as kubectl logs shows them: never cut at its start,
	// which Docker records after the process may have written (and Docker
	// stamped) its first lines.
	if from, _, _ := runWindow(in, d.historyCopy(in.ID).ends, false); !from.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", from.Unix(), from.Nanosecond())
	}
	rc, err := d.api.ContainerLogs(ctx, in.ID, opts)
	if err != nil {
		return nil
	}
	defer func() { _ = rc.Close() }()
	var tail tailBuffer
	_, _ = output(&tail, rc, in.Config != nil && in.Config.Tty)
	return tail.b
}

// tailBuffer keeps the last probe.MaxLogMessageBytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= probe.MaxLogMessageBytes {
		p = p[len(p)-probe.MaxLogMessageBytes:]
		t.b = append(t.b[:0], p...)
		return n, nil
	}
	t.b = append(t.b, p...)
	if over := len(t.b) - probe.MaxLogMessageBytes; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return n, nil
}
