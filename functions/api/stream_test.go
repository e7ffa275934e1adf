package api_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// streamServer serves streams: an exec echoes its stdin in upper case on
// stdout, writes "err" on stderr and exits 3; a port-forward echoes.
func streamServer(t testing.TB) api.StreamDialer {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, req, err := api.AcceptStream(w, r)
		if err != nil {
			return
		}
		switch req.Kind {
		case api.StreamExec:
			c.ServeIO(r.Context(), req, func(_ context.Context, sio api.StreamIO) (int, error) {
				b, _ := io.ReadAll(sio.Stdin)
				_, _ = sio.Stdout.Write(bytes.ToUpper(b))
				_, _ = sio.Stderr.Write([]byte("err"))
				return 3, nil
			})
		case api.StreamPortForward:
			a, b := net.Pipe()
			go func() { _, _ = io.Copy(b, b) }()
			_ = c.Pipe(r.Context(), a, api.ChanStdout, api.ChanStdin)
		}
	}))
	t.Cleanup(srv.Close)
	ep, err := api.ParseEndpoint(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return api.StreamDialer{Endpoint: ep}
}

func TestStreamExec(t *testing.T) {
	d := streamServer(t)
	ctx := context.Background()
	c, err := d.Dial(ctx, &api.StreamRequest{Kind: api.StreamExec, Namespace: "ns", PodName: "p", PodUID: "u", ContainerName: "c", Command: []string{"x"}, Stdin: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	st, err := c.RunIO(ctx, strings.NewReader("hello"), &out, &errOut, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 3 || out.String() != "HELLO" || errOut.String() != "err" {
		t.Fatalf("exit %d, stdout %q, stderr %q", st.ExitCode, out.String(), errOut.String())
	}
}

func TestStreamRefused(t *testing.T) {
	d := streamServer(t)
	c, err := d.Dial(context.Background(), &api.StreamRequest{Kind: "shell", Namespace: "ns", PodName: "p", PodUID: "u"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.RunIO(context.Background(), nil, io.Discard, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if api.ReasonOf(st.Err()) != api.ReasonInvalid || !strings.Contains(st.Err().Error(), "kind") {
		t.Fatalf("status %+v, want Invalid naming the kind", st)
	}
}

func TestStreamNotOffered(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	ep, _ := api.ParseEndpoint(srv.URL)
	_, err := (&api.StreamDialer{Endpoint: ep}).Dial(context.Background(), &api.StreamRequest{Kind: api.StreamPortForward, Namespace: "n", PodName: "p", PodUID: "u", Port: 80}, nil)
	if api.ReasonOf(err) != api.ReasonNotImplemented {
		t.Fatalf("err %v, want NotImplemented", err)
	}
}

// TestSplice joins a client to the server through a middle hop, as
// interLink does, and checks the idle bound.
func TestSplice(t *testing.T) {
	back := streamServer(t)
	mid := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, req, err := api.AcceptStream(w, r)
		if err != nil {
			return
		}
		b, err := back.Dial(r.Context(), req, nil)
		if err != nil {
			a.End(api.StreamStatus{Error: new(api.StatusOf(err))})
			return
		}
		_ = api.Splice(r.Context(), a, b, api.Limits{Idle: 300 * time.Millisecond}, nil)
	}))
	defer mid.Close()
	ep, _ := api.ParseEndpoint(mid.URL)
	d := api.StreamDialer{Endpoint: ep}
	ctx := context.Background()
	c, err := d.Dial(ctx, &api.StreamRequest{Kind: api.StreamPortForward, Namespace: "n", PodName: "p", PodUID: "u", Port: 80}, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, remote := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- c.Pipe(ctx, remote, api.ChanStdin, api.ChanStdout) }()
	if _, err := local.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(local, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	start := time.Now()
	select {
	case err := <-done:
		if api.ReasonOf(err) != api.ReasonTimeout || !strings.Contains(err.Error(), "idle") {
			t.Fatalf("pipe ended with %v, want the idle timeout", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("ended after %s", time.Since(start))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle stream was not closed")
	}
}

// BenchmarkPortForwardThroughSplice: bytes of a port-forward through two
// hops (a client, a splicing middle as interLink, a server that echoes),
// 32 KiB at a time.
func BenchmarkPortForwardThroughSplice(b *testing.B) {
	back := streamServer(b)
	mid := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, req, err := api.AcceptStream(w, r)
		if err != nil {
			return
		}
		c, err := back.Dial(r.Context(), req, nil)
		if err != nil {
			return
		}
		_ = api.Splice(r.Context(), a, c, api.Limits{}, nil)
	}))
	defer mid.Close()
	ep, _ := api.ParseEndpoint(mid.URL)
	ctx := context.Background()
	c, err := (&api.StreamDialer{Endpoint: ep}).Dial(ctx, &api.StreamRequest{Kind: api.StreamPortForward, Namespace: "n", PodName: "p", PodUID: "u", Port: 80}, nil)
	if err != nil {
		b.Fatal(err)
	}
	local, remote := net.Pipe()
	go func() { _ = c.Pipe(ctx, remote, api.ChanStdin, api.ChanStdout) }()
	chunk := make([]byte, 32<<10)
	buf := make([]byte, len(chunk))
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for b.Loop() {
		go func() { _, _ = local.Write(chunk) }()
		if _, err := io.ReadFull(local, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = local.Close()
}
