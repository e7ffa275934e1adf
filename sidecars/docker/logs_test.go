package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seed-3f807049/interlink/functions/api"
)

// frame is one frame of Docker's multiplexed stream.
func frame(stream byte, payload string) string {
	var h [8]byte
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload))) //nolint:gosec // test payloads are small
	return string(h[:]) + payload
}

func header(stream byte, size uint32) string {
	var h [8]byte
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], size)
	return string(h[:])
}

func TestDemux(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "Empty"},
		{name: "StdoutAndStderr", in: frame(1, "out\n") + frame(2, "err\n") + frame(0, "in\n") + frame(1, ""), want: "out\nerr\nin\n"},
		{name: "EndsWithinAFrame", in: frame(1, "whole\n") + header(1, 100) + "part", want: "whole\npart"},
		{name: "EndsWithinAHeader", in: frame(1, "whole\n") + "\x01\x00\x00", want: "whole\n"},
		{name: "DaemonError", in: frame(1, "a") + frame(3, "boom"), want: "a", wantErr: "error from daemon in stream: boom"},
		{name: "DaemonErrorCapped", in: header(3, 1<<31) + strings.Repeat("e", maxDaemonError+10),
			wantErr: "error from daemon in stream: " + strings.Repeat("e", maxDaemonError)},
		{name: "UnknownStream", in: frame(7, "x"), wantErr: "unrecognized stream: 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := demux(&out, strings.NewReader(tc.in))
			if diff := cmp.Diff(tc.want, out.String()); diff != "" || n != int64(len(tc.want)) {
				t.Errorf("output (-want +got), %d bytes counted:\n%s", n, diff)
			}
			if got := errString(err); got != tc.wantErr {
				t.Errorf("error %.80q, want %.80q", got, tc.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// longLine is Docker's stream of one stdout frame of size bytes of 'x'
// (a line without a newline), made as it is read: it holds none of it.
type longLine struct {
	hdr  []byte
	left int64
	read atomic.Int64
}

func newLongLine(size uint32) *longLine {
	return &longLine{hdr: []byte(header(1, size)), left: int64(size)}
}

func (l *longLine) Read(p []byte) (int, error) {
	if len(l.hdr) > 0 {
		n := copy(p, l.hdr)
		l.hdr = l.hdr[n:]
		return n, nil
	}
	if l.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), l.left))
	for i := range p[:n] {
		p[i] = 'x'
	}
	l.left -= int64(n)
	l.read.Add(int64(n))
	return n, nil
}

// pieces records the largest write it gets and counts the bytes, checking
// that every one is 'x'.
type pieces struct {
	largest, total int64
	bad            bool
}

func (p *pieces) Write(b []byte) (int, error) {
	p.largest = max(p.largest, int64(len(b)))
	p.total += int64(len(b))
	if len(bytes.Trim(b, "x")) > 0 {
		p.bad = true
	}
	return len(b), nil
}

// allocated runs f and returns the bytes allocated meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const hundredMiB = 100 << 20

// TestDemuxLongLineBounded: a 100 MiB line without a newline, in one
// frame, is passed on in pieces of at most outputChunk bytes; the copy
// allocates its buffer and nothing that grows with the line.
func TestDemuxLongLineBounded(t *testing.T) {
	var out pieces
	var err error
	alloc := allocated(func() { _, err = demux(&out, newLongLine(hundredMiB)) })
	if err != nil || out.bad || out.total != hundredMiB {
		t.Fatalf("copied %d bytes (bad %v), %v; want the 100 MiB line", out.total, out.bad, err)
	}
	if out.largest > outputChunk {
		t.Errorf("a piece of %d bytes, want at most %d", out.largest, outputChunk)
	}
	if alloc > 1<<20 {
		t.Errorf("demux allocated %d bytes for a 100 MiB line, want less than 1 MiB", alloc)
	}
}

// logsEngine serves one exited container of pod ns/p and, as its log, a
// 100 MiB line without a newline in one frame. It records the tail asked.
func logsEngine(t *testing.T, tail *atomic.Value) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.44")
		switch {
		case r.URL.Path == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			_, _ = w.Write([]byte(`[{"Id":"0123456789abcdef","State":"exited","Labels":{"` + LabelUID + `":"uid-1","` + LabelNamespace + `":"ns","` +
				LabelName + `":"p","` + LabelContainer + `":"c0","` + LabelRole + `":"app","` + LabelIndex + `":"0"}}]`))
		case strings.HasSuffix(r.URL.Path, "/containers/0123456789abcdef/json"):
			_, _ = w.Write([]byte(`{"Id":"0123456789abcdef","State":{"Status":"exited","StartedAt":"2026-01-02T03:04:05Z"},"HostConfig":{}}`))
		case strings.HasSuffix(r.URL.Path, "/containers/0123456789abcdef/logs"):
			tail.Store(r.URL.Query().Get("tail"))
			w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
			buf := make([]byte, 64<<10)
			_, _ = io.CopyBuffer(w, struct{ io.Reader }{newLongLine(hundredMiB)}, buf)
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestLogsLongLineBounded: the same line through Logs, from a Docker
// Engine API (an in-process fake): it reaches the reader in capped pieces
// and the sidecar never holds it whole. Tail is Docker's to count: it is
// passed on as asked.
func TestLogsLongLineBounded(t *testing.T) {
	var tail atomic.Value
	srv := logsEngine(t, &tail)
	d := onEngine(t, srv)

	var out pieces
	var err error
	alloc := allocated(func() {
		var rc io.ReadCloser
		rc, err = d.Logs(context.Background(), &api.LogRequest{Namespace: "ns", PodName: "p", PodUID: "uid-1", ContainerName: "c0", Opts: api.ContainerLogOpts{Tail: 1}})
		if err != nil {
			return
		}
		defer func() { _ = rc.Close() }()
		buf := make([]byte, 1<<20) // a reader that would take more than a piece
		for {
			n, rerr := rc.Read(buf)
			_, _ = out.Write(buf[:n])
			if rerr != nil {
				if !errors.Is(rerr, io.EOF) {
					err = rerr
				}
				return
			}
		}
	})
	if err != nil || out.bad || out.total != hundredMiB {
		t.Fatalf("read %d bytes (bad %v), %v; want the 100 MiB line", out.total, out.bad, err)
	}
	if out.largest > outputChunk {
		t.Errorf("a piece of %d bytes, want at most %d", out.largest, outputChunk)
	}
	// The fake engine, the HTTP client and the reader's 1 MiB buffer are
	// in this process too; the line is 100 MiB.
	if alloc > 8<<20 {
		t.Errorf("%d bytes allocated while serving a 100 MiB line, want less than 8 MiB", alloc)
	}
	if got := tail.Load(); got != "1" {
		t.Errorf("tail %v sent to Docker, want 1", got)
	}
}
