package sidecars

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

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
}

// Client calls a sidecar over the wire protocol. It implements Plugin and
// Pinger, so interLink and the conformance suite use any sidecar through it.
type Client struct {
	ep   api.Endpoint
	hc   *http.Client
	cfg  ClientConfig
	ours atomic.Bool
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
		base.Transport = api.NewTransport(ep, nil)
	}
	c := &Client{ep: ep, cfg: cfg}
	base.Transport = &versionSniffer{next: base.Transport, ours: &c.ours}
	c.hc = &base
	return c, nil
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

// call runs one JSON call with a timeout, retried when idempotent.
func (c *Client) call(ctx context.Context, idempotent bool, r api.Request, out any) error {
	attempts := 1
	if idempotent {
		attempts = c.cfg.Retries
	}
	return api.Retry(ctx, attempts, c.cfg.Backoff, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
		return api.DoJSON(ctx, c.hc, c.ep, r, out)
	})
}

// Create implements Plugin. It is not retried: a retry could create twice on
// a plugin that is not idempotent.
func (c *Client) Create(ctx context.Context, data *api.RetrievedPodData) (api.CreateStruct, error) {
	var out api.CreateStruct
	err := c.call(ctx, false, api.Request{Method: http.MethodPost, Path: api.PathCreate, In: data}, &out)
	return out, err
}

// Delete implements Plugin.
func (c *Client) Delete(ctx context.Context, pod *corev1.Pod) error {
	return c.call(ctx, true, api.Request{Method: http.MethodPost, Path: api.PathDelete, In: pod}, nil)
}

// Status implements Plugin. The original plugins take GET with a body.
func (c *Client) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	if pods == nil {
		pods = []corev1.Pod{}
	}
	var out []api.PodStatus
	err := c.call(ctx, true, api.Request{Method: http.MethodGet, Path: api.PathStatus, In: pods}, &out)
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
	err := c.call(ctx, true, api.Request{Method: http.MethodGet, Path: api.PathStatus, Body: body}, &out)
	return out, err
}

// Ping implements Pinger: an empty /status.
func (c *Client) Ping(ctx context.Context) (api.PingResponse, error) {
	var out api.PingResponse
	err := c.call(ctx, true, api.Request{Method: http.MethodGet, Path: api.PathStatus, In: []corev1.Pod{}}, &out)
	return out, err
}

// Exec implements Execer: it streams the command's output to out and returns
// its exit code. It is never retried (a command may not be idempotent).
func (c *Client) Exec(ctx context.Context, req *api.ExecRequest, out io.Writer) (int, error) {
	resp, err := api.Do(ctx, c.hc, c.ep, api.Request{Method: http.MethodPost, Path: api.PathExec, In: req}) //nolint:bodyclose // ExecReply closes it
	if err != nil {
		return 0, err
	}
	return api.ExecReply(resp, out)
}

// Logs implements Plugin. A followed stream has no timeout but ctx's.
func (c *Client) Logs(ctx context.Context, req *api.LogStruct) (io.ReadCloser, error) {
	r := api.Request{Method: http.MethodGet, Path: api.PathLogs, In: req}
	if req.Opts.Follow {
		resp, err := api.Do(ctx, c.hc, c.ep, r) //nolint:bodyclose // the caller closes the returned stream
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
	var body io.ReadCloser
	err := api.Retry(ctx, c.cfg.Retries, c.cfg.Backoff, func(ctx context.Context) error {
		resp, err := api.Do(ctx, c.hc, c.ep, r) //nolint:bodyclose // the caller closes the returned stream
		if err == nil {
			body = resp.Body
		}
		return err
	})
	return body, err
}
