package sidecars

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Default client settings.
const (
	// DefaultCallTimeout bounds one call (not a followed log stream).
	DefaultCallTimeout = 30 * time.Second
	// DefaultRetries is how many times an idempotent call is tried.
	DefaultRetries = 3
	// DefaultBackoff is the first wait between tries; it doubles each time.
	DefaultBackoff = 200 * time.Millisecond
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is http://, https:// or unix:///path.sock.
	URL string
	// HTTPClient is used for every call; nil builds one with a reusing
	// transport for URL.
	HTTPClient *http.Client
	// CallTimeout bounds each call except followed logs.
	CallTimeout time.Duration
	// Retries is the number of tries of an idempotent call (status, delete,
	// logs, ping). Create is never retried.
	Retries int
	// Backoff is the first wait between tries.
	Backoff time.Duration
	// Header, if set, gives headers added to every call: the credential
	// of a sidecar that requires one (a bearer token read again from its
	// file, say).
	Header func() (http.Header, error)
	// TLS configures the streams' connections to an https sidecar (nil:
	// the system roots).
	TLS *tls.Config
}

// Client calls a sidecar over the wire protocol. It implements Plugin and
// Pinger, so interLink and the conformance suite use any sidecar through it.
type Client struct {
	caller  api.Caller
	streams api.StreamDialer
	ours    atomic.Bool
}

var (
	_ Plugin = (*Client)(nil)
	_ Pinger = (*Client)(nil)
	_ Execer = (*Client)(nil)
)

// NewClient returns a client for the sidecar at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	ep, err := api.ParseEndpoint(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("sidecar client: %w", err)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	var base http.Client
	if cfg.HTTPClient != nil {
		base = *cfg.HTTPClient
	}
	if base.Transport == nil {
		// Each call is a client span; its context goes out as traceparent.
		base.Transport = otelhttp.NewTransport(api.NewTransport(ep, nil))
	}
	c := &Client{}
	base.Transport = &versionSniffer{next: base.Transport, ours: &c.ours}
	c.caller = api.Caller{HTTP: &base, Endpoint: ep, Timeout: cfg.CallTimeout, Retries: cfg.Retries, Backoff: cfg.Backoff, Header: cfg.Header}
	c.streams = api.StreamDialer{Endpoint: ep, TLS: cfg.TLS, Header: cfg.Header}
	return c, nil
}

// DialStream opens a stream (exec -it, attach, port-forward) on the
// sidecar; a sidecar without streams is api.ReasonNotImplemented.
func (c *Client) DialStream(ctx context.Context, req *api.StreamRequest) (*api.StreamConn, error) {
	return c.streams.Dial(ctx, req, nil)
}

// IdempotentCreate tells whether the peer has shown (by HeaderAPIVersion on
// a reply) that it is one of ours, whose create is idempotent by pod UID.
func (c *Client) IdempotentCreate() bool { return c.ours.Load() }

// versionSniffer notes whether the peer sends HeaderAPIVersion.
type versionSniffer struct {
	next http.RoundTripper
	ours *atomic.Bool
}

func (v *versionSniffer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(r)
	if err == nil {
		v.ours.Store(resp.Header.Get(api.HeaderAPIVersion) != "")
	}
	return resp, err
}

// Create implements Plugin. It is not retried: a retry could create twice on
// a plugin that is not idempotent.
func (c *Client) Create(ctx context.Context, data *api.RetrievedPodData) (api.CreateResult, error) {
	var out api.CreateResult
	err := c.caller.Call(ctx, false, api.Request{Method: http.MethodPost, Path: api.PathCreate, In: data}, &out)
	return out, err
}

// Delete implements Plugin.
func (c *Client) Delete(ctx context.Context, pod *corev1.Pod) error {
	return c.caller.Call(ctx, true, api.Request{Method: http.MethodPost, Path: api.PathDelete, In: pod}, nil)
}

// Status implements Plugin. The original plugins take GET with a body.
func (c *Client) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	if pods == nil {
		pods = []corev1.Pod{}
	}
	var out []api.PodStatus
	err := c.caller.Call(ctx, true, api.Request{Method: http.MethodGet, Path: api.PathStatus, In: pods}, &out)
	return out, err
}

// StatusRaw is Status for pods already encoded as JSON; it returns each
// status as the sidecar encoded it. interLink uses it to forward batches
// without decoding them.
func (c *Client) StatusRaw(ctx context.Context, pods []json.RawMessage) ([]json.RawMessage, error) {
	n := 2
	for _, p := range pods {
		n += len(p) + 1
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, p := range pods {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, p...)
	}
	body = append(body, ']')
	var out []json.RawMessage
	err := c.caller.Call(ctx, true, api.Request{Method: http.MethodGet, Path: api.PathStatus, Body: body}, &out)
	return out, err
}

// Ping implements Pinger: an empty /status.
func (c *Client) Ping(ctx context.Context) (api.PingResponse, error) {
	var out api.PingResponse
	err := c.caller.Call(ctx, true, api.Request{Method: http.MethodGet, Path: api.PathStatus, In: []corev1.Pod{}}, &out)
	return out, err
}

// Exec implements Execer: it streams the command's output to out and returns
// its exit code. It is never retried (a command may not be idempotent).
func (c *Client) Exec(ctx context.Context, req *api.ExecRequest, out io.Writer) (int, error) {
	return c.caller.Exec(ctx, api.Request{Method: http.MethodPost, Path: api.PathExec, In: req}, out)
}

// Logs implements Plugin. A followed stream has no timeout but ctx's.
func (c *Client) Logs(ctx context.Context, req *api.LogRequest) (io.ReadCloser, error) {
	// A followed stream is not retried: part of it may have been read.
	resp, err := c.caller.Stream(ctx, !req.Opts.Follow, api.Request{Method: http.MethodGet, Path: api.PathLogs, In: req}) //nolint:bodyclose // the caller closes it
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
