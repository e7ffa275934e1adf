package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody caps how much of an error reply is read.
const maxErrorBody = 64 << 10

// Endpoint is a peer's address: http://, https:// or unix:///path/to.sock.
type Endpoint struct {
	// Base is the URL requests are made against (http://unix for a socket).
	Base *url.URL
	// Socket is the unix socket path, if any.
	Socket string
}

// ParseEndpoint parses an http, https or unix URL. A bare path is a unix
// socket, as the original interLink accepts.
func ParseEndpoint(raw string) (Endpoint, error) {
	if strings.HasPrefix(raw, "/") {
		raw = "unix://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("parse URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return Endpoint{}, fmt.Errorf("URL %q has no host", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		return Endpoint{Base: u}, nil
	case "unix":
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if p == "" {
			return Endpoint{}, fmt.Errorf("unix URL %q has no socket path", raw)
		}
		return Endpoint{Base: &url.URL{Scheme: "http", Host: "unix"}, Socket: p}, nil
	default:
		return Endpoint{}, fmt.Errorf("URL %q: scheme must be http, https or unix", raw)
	}
}

// NewTransport returns a connection-reusing transport for e. Build one per
// peer and keep it; never one per request.
func NewTransport(e Endpoint, tlsConfig *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       tlsConfig,
	}
	if e.Socket != "" {
		sock := e.Socket
		t.Proxy = nil
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
	}
	return t
}

// Request describes one wire call.
type Request struct {
	Method string
	Path   string
	// In is encoded as the JSON body when not nil.
	In any
	// Body is a JSON body already encoded; it is used when In is nil.
	Body []byte
	// Header is added to the request.
	Header http.Header
}

// Do performs one call and returns the reply with a 2xx status; any other
// status is returned as a typed error (see ErrorFromReply). A transport
// failure is Unavailable. The caller closes the body.
func Do(ctx context.Context, hc *http.Client, e Endpoint, r Request) (*http.Response, error) {
	var body io.Reader
	if r.In != nil {
		buf := new(bytes.Buffer)
		if err := json.NewEncoder(buf).Encode(r.In); err != nil {
			return nil, fmt.Errorf("encode %s body: %w", r.Path, err)
		}
		body = buf
	} else if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	u := *e.Base
	u.Path += r.Path
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", r.Path, err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderAPIVersion, APIVersion)
	req.Header.Set("Accept", "application/json, text/plain")
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", r.Method, r.Path, ctx.Err())
		}
		return nil, Unavailable("%s %s: %w", r.Method, r.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.Path, ErrorFromReply(resp.StatusCode, b))
	}
	return resp, nil
}

// DoJSON performs a call and decodes its JSON reply into out (if not nil).
func DoJSON(ctx context.Context, hc *http.Client, e Endpoint, r Request, out any) error {
	resp, err := Do(ctx, hc, e, r)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if d, ok := out.(ReplyDecoder); ok {
		if err := d.DecodeReply(resp.Body); err != nil {
			return fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
		}
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return Unavailable("%s %s: decode reply: %w", r.Method, r.Path, err)
	}
	return nil
}

// ReplyDecoder is a reply that reads itself from a body (a PingResponse,
// whose peers answer in several forms); DoJSON uses it instead of
// encoding/json.
type ReplyDecoder interface {
	DecodeReply(body io.Reader) error
}

// Retryable tells whether a call that failed with err may be repeated: the
// peer was unreachable, failing or slow. Only idempotent calls are retried.
func Retryable(err error) bool {
	switch ReasonOf(err) {
	case ReasonUnavailable, ReasonTimeout:
		return !errors.Is(err, context.Canceled)
	default:
		return false
	}
}

// Retry calls fn up to attempts times while it fails with a retryable error,
// waiting backoff, then twice as long, between tries.
func Retry(ctx context.Context, attempts int, backoff time.Duration, fn func(context.Context) error) error {
	var err error
	for i := 0; i < max(attempts, 1); i++ {
		if err = fn(ctx); err == nil || !Retryable(err) {
			return err
		}
		if i == attempts-1 {
			break
		}
		t := time.NewTimer(backoff << i)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	return err
}

// ExecReply copies the body of an /exec reply to out and returns the exit
// code from its trailer. A stream that ends without the trailer is an
// Unavailable error: the command's outcome is unknown.
func ExecReply(resp *http.Response, out io.Writer) (int, error) {
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return 0, Unavailable("exec output: %w", err)
	}
	code := resp.Trailer.Get(TrailerExitCode)
	if code == "" {
		return 0, Unavailable("exec reply ended without its exit code")
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return 0, Unavailable("exec exit code %q: %w", code, err)
	}
	return n, nil
}

// FlushWriter flushes w after every write, so streamed output reaches the
// client as it is produced.
type FlushWriter struct {
	W  io.Writer
	RC *http.ResponseController
}

func (f FlushWriter) Write(b []byte) (int, error) {
	n, err := f.W.Write(b)
	if err == nil && f.RC != nil {
		if ferr := f.RC.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
			return n, ferr
		}
	}
	return n, err
}

// WriteExec runs fn, streaming what it writes as the reply body, and sends
// its exit code in the TrailerExitCode trailer. An error before any output
// is returned for the caller to write as an error reply.
func WriteExec(w http.ResponseWriter, fn func(out io.Writer) (int, error)) error {
	w.Header().Set("Trailer", TrailerExitCode)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	started := false
	out := FlushWriter{W: writerFunc(func(b []byte) (int, error) {
		if !started {
			started = true
			w.WriteHeader(http.StatusOK)
		}
		return w.Write(b)
	}), RC: http.NewResponseController(w)}
	code, err := fn(out)
	if err != nil {
		if !started {
			w.Header().Del("Trailer")
			return err
		}
		// Output was sent: the missing trailer tells the client it failed.
		return nil
	}
	if !started {
		w.WriteHeader(http.StatusOK)
	}
	w.Header().Set(TrailerExitCode, strconv.Itoa(code))
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// Caller makes the wire calls of one client to one peer: JSON calls bounded
// by Timeout and, when idempotent, retried with backoff; and streams (logs,
// exec) bounded by their context only.
type Caller struct {
	HTTP     *http.Client
	Endpoint Endpoint
	Timeout  time.Duration
	Retries  int
	Backoff  time.Duration
	// Header, if set, gives headers added to every request (a bearer
	// token read again from its file, say).
	Header func() (http.Header, error)
}

func (c *Caller) prepare(r Request) (Request, error) {
	r.Header = r.Header.Clone()
	if c.Header == nil {
		return r, nil
	}
	h, err := c.Header()
	if err != nil {
		return r, err
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	for k, v := range h {
		r.Header[k] = v
	}
	return r, nil
}

func (c *Caller) attempts(idempotent bool) int {
	if idempotent {
		return c.Retries
	}
	return 1
}

// Call makes a JSON call and decodes its reply into out (if not nil).
func (c *Caller) Call(ctx context.Context, idempotent bool, r Request, out any) error {
	return Retry(ctx, c.attempts(idempotent), c.Backoff, func(ctx context.Context) error {
		r, err := c.prepare(r)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, c.Timeout)
		defer cancel()
		return DoJSON(ctx, c.HTTP, c.Endpoint, r, out)
	})
}

// Stream makes a call whose reply the caller reads and closes; only ctx
// bounds it. An idempotent one is retried until a reply arrives.
func (c *Caller) Stream(ctx context.Context, idempotent bool, r Request) (*http.Response, error) {
	var resp *http.Response
	err := Retry(ctx, c.attempts(idempotent), c.Backoff, func(ctx context.Context) error {
		r, err := c.prepare(r)
		if err != nil {
			return err
		}
		resp, err = Do(ctx, c.HTTP, c.Endpoint, r) //nolint:bodyclose // returned to the caller
		return err
	})
	return resp, err
}

// Exec makes an /exec call (never retried), copies the output to out and
// returns the exit code.
func (c *Caller) Exec(ctx context.Context, r Request, out io.Writer) (int, error) {
	resp, err := c.Stream(ctx, false, r) //nolint:bodyclose // ExecReply closes it
	if err != nil {
		return 0, err
	}
	return ExecReply(resp, out)
}
