// Package client is the typed client of the interLink API that the virtual
// kubelet uses: create, delete, batched status, logs and ping, with the
// bearer token read from a file (picked up again when the file changes).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds one call (followed logs excepted).
	DefaultTimeout = 30 * time.Second
	// DefaultRetries is the number of tries of an idempotent call.
	DefaultRetries = 3
)

// Config configures a Client.
type Config struct {
	// URL of interLink: http(s)://host:port or unix:///path.sock.
	URL string
	// TokenFile holds the bearer token; empty sends none.
	TokenFile string
	// CAFile is a PEM CA trusted for an https URL (default: system roots).
	CAFile string
	// CertFile and KeyFile are a client certificate for mTLS.
	CertFile, KeyFile string
	// Timeout bounds each call except followed logs.
	Timeout time.Duration
	// Retries is the number of tries of status, delete, logs and ping.
	Retries int
}

// Client calls interLink.
type Client struct {
	caller  api.Caller
	streams api.StreamDialer
	cfg     Config
	token   *TokenFile
	// trimmed is whether interLink's last reply set HeaderTrimmedStatus.
	trimmed atomic.Bool
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	ep, err := api.ParseEndpoint(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("interLink URL: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	var tc *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read interLink CA: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("interLink CA %s holds no PEM certificate", cfg.CAFile)
			}
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	c := &Client{cfg: cfg, token: NewTokenFile(cfg.TokenFile)}
	rt := &trimSniffer{next: tracing.Transport(api.NewTransport(ep, tc)), trimmed: &c.trimmed}
	c.caller = api.Caller{HTTP: &http.Client{Transport: rt}, Endpoint: ep, Timeout: cfg.Timeout,
		Retries: cfg.Retries, Backoff: 200 * time.Millisecond, Header: c.authHeader}
	c.streams = api.StreamDialer{Endpoint: ep, TLS: tc, Header: c.authHeader}
	return c, nil
}

// Stream opens a stream (exec -it, attach, port-forward) through interLink
// to the pod's sidecar. An interLink or sidecar without streams is
// api.ReasonNotImplemented.
func (c *Client) Stream(ctx context.Context, sidecar string, req *api.StreamRequest) (*api.StreamConn, error) {
	return c.streams.Dial(ctx, req, sidecarHeader(sidecar))
}

// authHeader carries the bearer token, read from its file when it changed.
func (c *Client) authHeader() (http.Header, error) {
	if c.cfg.TokenFile == "" {
		return nil, nil
	}
	return c.token.Header()
}

func sidecarHeader(sidecar string) http.Header {
	if sidecar == "" {
		return nil
	}
	return http.Header{api.HeaderSidecar: {sidecar}}
}

// Create submits a pod. It is not retried here: the caller retries, and
// interLink's create is idempotent by pod UID.
func (c *Client) Create(ctx context.Context, req *api.PodCreateRequests) (api.CreateResult, error) {
	var out api.CreateResult
	err := c.caller.Call(ctx, false, api.Request{Method: http.MethodPost, Path: api.PathCreate, In: req}, &out)
	return out, err
}

// Delete deletes a pod; an unknown pod is api.NotFound.
func (c *Client) Delete(ctx context.Context, pod *corev1.Pod) error {
	return c.caller.Call(ctx, true, api.Request{Method: http.MethodDelete, Path: api.PathDelete, In: pod}, nil)
}

// Status returns the status of many pods in one call. Entries with Error set
// are pods whose sidecar failed: their last known status stands. The pods
// go trimmed (api.TrimForStatus) when interLink said all its sidecars take
// them, else whole.
func (c *Client) Status(ctx context.Context, pods []*corev1.Pod) ([]api.PodStatus, error) {
	var out []api.PodStatus
	err := c.StatusEach(ctx, pods, func(raw json.RawMessage) error {
		var st api.PodStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			return err
		}
		out = append(out, st)
		return nil
	})
	return out, err
}

// StatusEach is Status that hands each status to fn, as the JSON of one
// element of the reply, as it is read: a batch of 10,000 is never held
// whole, and a caller may skip decoding a status it has seen before. An
// error from fn ends the call as a reply it could not decode. The call is
// retried while no reply has come; fn may have been called for some pods
// when it fails midway.
func (c *Client) StatusEach(ctx context.Context, pods []*corev1.Pod, fn func(raw json.RawMessage) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	// The body's buffer serves the next poll too: at 10,000 pods it is
	// megabytes a poll that the GC need not reclaim. It is put back once
	// the reply is read, when the transport is done with the body.
	buf, _ := statusBuffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer statusBuffers.Put(buf)
	body, err := c.statusBody(buf, pods)
	if err != nil {
		return err
	}
	resp, err := c.caller.Stream(ctx, true, api.Request{Method: http.MethodPost, Path: api.PathStatus, Body: body}) //nolint:bodyclose // closed below
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	dec := json.NewDecoder(resp.Body)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return api.Unavailable("POST %s: reply is not a JSON list: %v", api.PathStatus, err)
	}
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return api.Unavailable("POST %s: decode reply: %w", api.PathStatus, err)
		}
		if err := fn(raw); err != nil {
			return api.Unavailable("POST %s: decode reply: %w", api.PathStatus, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return api.Unavailable("POST %s: decode reply: %w", api.PathStatus, err)
	}
	return nil
}

// statusBuffers holds the buffers of status request bodies.
var statusBuffers sync.Pool

// statusBody encodes a /status batch: trimmed pods (a few hundred bytes
// each, written without building trimmed copies) when interLink said all
// its sidecars take them, else whole pods.
func (c *Client) statusBody(buf *bytes.Buffer, pods []*corev1.Pod) ([]byte, error) {
	buf.Reset()
	enc := json.NewEncoder(buf)
	if !c.trimmed.Load() {
		if err := enc.Encode(pods); err != nil {
			return nil, fmt.Errorf("encode %s body: %w", api.PathStatus, err)
		}
		return buf.Bytes(), nil
	}
	buf.Grow(len(pods) * 512)
	buf.WriteByte('[')
	for i, p := range pods {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(api.StatusPodOf(p)); err != nil {
			return nil, fmt.Errorf("encode %s body: %w", api.PathStatus, err)
		}
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// trimSniffer notes whether interLink's last reply set HeaderTrimmedStatus.
// Any reply without it (an original interLink, which sends no version
// header, or anything else answering in its place) and a round trip that
// failed but for our own cancellation (the peer may come back as another
// one) turn trimming off: full pods are what every peer takes.
type trimSniffer struct {
	next    http.RoundTripper
	trimmed *atomic.Bool
}

func (s *trimSniffer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	switch {
	case err == nil:
		s.trimmed.Store(resp.Header.Get(api.HeaderTrimmedStatus) != "")
	case r.Context().Err() == nil:
		s.trimmed.Store(false)
	}
	return resp, err
}

// Ping asks interLink for its health and its sidecars' capacity. A reply
// saying every sidecar is down is an Unavailable error carrying the reply.
func (c *Client) Ping(ctx context.Context) (api.PingResponse, error) {
	var out api.PingResponse
	err := c.caller.Call(ctx, true, api.Request{Method: http.MethodPost, Path: api.PathPing}, &out)
	return out, err
}

// Logs streams a container's logs from the named sidecar ("" lets interLink
// find it). The caller closes the stream.
func (c *Client) Logs(ctx context.Context, sidecar string, req *api.LogRequest) (io.ReadCloser, error) {
	resp, err := c.caller.Stream(ctx, false, api.Request{Method: http.MethodPost, Path: api.PathLogs, In: req, Header: sidecarHeader(sidecar)}) //nolint:bodyclose // returned to the caller
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Exec runs a command in a container through the named sidecar ("" for the
// default), streaming its output to out, and returns its exit code.
func (c *Client) Exec(ctx context.Context, sidecar string, req *api.ExecRequest, out io.Writer) (int, error) {
	return c.caller.Exec(ctx, api.Request{Method: http.MethodPost, Path: api.PathExec, In: req, Header: sidecarHeader(sidecar)}, out)
}

// TokenFile is a file holding a bearer token (and nothing else, surrounding
// space aside), read again whenever its modification time or size changes:
// a refresher may rewrite it. The token is never logged.
type TokenFile struct {
	path  string
	mu    sync.Mutex
	mod   time.Time
	size  int64
	token string
}

// NewTokenFile returns the token file at path.
func NewTokenFile(path string) *TokenFile { return &TokenFile{path: path} }

// Get returns the token.
func (t *TokenFile) Get() (string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && fi.ModTime().Equal(t.mod) && fi.Size() == t.size {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("token file is empty")
	}
	t.token, t.mod, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// Header returns the Authorization header carrying the token.
func (t *TokenFile) Header() (http.Header, error) {
	tok, err := t.Get()
	if err != nil {
		return nil, api.Unavailable("read token file: %w", err)
	}
	return http.Header{"Authorization": {"Bearer " + tok}}, nil
}
