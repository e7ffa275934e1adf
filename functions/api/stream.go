package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Streams: kubectl exec -it, attach and port-forward, carried from the VK
// through interLink to the sidecar as one WebSocket each, over the
// connections the VK already makes (the site opens no new port).
//
// A stream opens with a GET upgrade of PathStream to the StreamProtocol
// subprotocol. The client's first message is a text message holding the
// StreamRequest; every later message is binary, its first byte a channel
// (Chan*) and the rest the channel's data. The server ends an exec or an
// attach with one ChanStatus message (a StreamStatus) and a close.
// A port-forward carries the connection's bytes on ChanStdin (to the pod)
// and ChanStdout (from it); either side closing the WebSocket closes the
// connection.

// PathStream is the stream endpoint, on both hops.
const PathStream = "/stream"

// StreamProtocol is the WebSocket subprotocol of a stream.
const StreamProtocol = "interlink.stream.v1"

// Stream kinds.
const (
	StreamExec        = "exec"
	StreamAttach      = "attach"
	StreamPortForward = "portforward"
)

// Stream channels: the first byte of each binary message.
const (
	ChanStdin = iota
	ChanStdout
	ChanStderr
	// ChanStatus carries the StreamStatus that ends an exec or attach.
	ChanStatus
	// ChanResize carries a TermSize (JSON) when the client's terminal
	// changes size.
	ChanResize
	// ChanCloseStdin tells that standard input ended (no data).
	ChanCloseStdin
)

// Bounds of a stream's messages.
const (
	// MaxStreamMessage caps one message read (a request or a chunk of data).
	MaxStreamMessage = 1 << 20
	// streamChunk is the most data sent in one message.
	streamChunk = 32 << 10
	// maxStreamCommand caps the words of an exec's command.
	maxStreamCommand = 1024
)

// StreamRequest opens a stream.
type StreamRequest struct {
	Kind          string `json:"kind"`
	Namespace     string `json:"namespace"`
	PodUID        string `json:"podUID"`
	PodName       string `json:"podName"`
	ContainerName string `json:"containerName,omitempty"`
	// Command of an exec.
	Command []string `json:"command,omitempty"`
	// Stdin and TTY of an exec or attach.
	Stdin bool `json:"stdin,omitempty"`
	TTY   bool `json:"tty,omitempty"`
	// Port of a port-forward, in the pod.
	Port int32 `json:"port,omitempty"`
}

// Validate checks a stream request: its kind, a pod, a container for an
// exec or attach, a command for an exec, a port for a port-forward.
func (r *StreamRequest) Validate() error {
	if r.Namespace == "" || r.PodName == "" || r.PodUID == "" {
		return Invalid("stream: namespace, podName and podUID are required")
	}
	switch r.Kind {
	case StreamExec:
		if len(r.Command) == 0 {
			return Invalid("exec in pod %s/%s: no command", r.Namespace, r.PodName)
		}
		if len(r.Command) > maxStreamCommand {
			return Invalid("exec in pod %s/%s: %d words of command, at most %d", r.Namespace, r.PodName, len(r.Command), maxStreamCommand)
		}
		fallthrough
	case StreamAttach:
		if r.ContainerName == "" {
			return Invalid("%s in pod %s/%s: no container named", r.Kind, r.Namespace, r.PodName)
		}
	case StreamPortForward:
		if r.Port < 1 || r.Port > 65535 {
			return Invalid("port-forward to pod %s/%s: port %d out of 1-65535", r.Namespace, r.PodName, r.Port)
		}
	default:
		return Invalid("stream kind %q: want exec, attach or portforward", r.Kind)
	}
	return nil
}

// StreamStatus ends an exec or attach: its command's exit code, or the
// error that stopped it.
type StreamStatus struct {
	ExitCode int     `json:"exitCode"`
	Error    *Status `json:"error,omitempty"`
}

// TermSize is a terminal's size, sent on ChanResize.
type TermSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// StreamConn is one end of a stream: messages in, messages out. Writes may
// come from several goroutines; reads from one.
type StreamConn struct {
	ws *websocket.Conn
	mu sync.Mutex // serializes writes
}

var upgrader = websocket.Upgrader{
	Subprotocols:    []string{StreamProtocol},
	ReadBufferSize:  streamChunk,
	WriteBufferSize: streamChunk,
	// The peers are the VK and interLink, with a bearer token or a private
	// socket: no browser, no origin to check.
	CheckOrigin: func(*http.Request) bool { return true },
}

// AcceptStream upgrades a request of PathStream and reads its
// StreamRequest. A request that is not an upgrade gets a typed error reply
// (and the error is returned, already written: check IsWritten).
func AcceptStream(w http.ResponseWriter, r *http.Request) (*StreamConn, *StreamRequest, error) {
	if !websocket.IsWebSocketUpgrade(r) {
		err := Invalid("%s takes a WebSocket upgrade (subprotocol %s)", PathStream, StreamProtocol)
		WriteError(w, r, err)
		return nil, nil, written{err}
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, nil, written{Invalid("upgrade %s: %w", PathStream, err)} // Upgrade replied
	}
	ws.SetReadLimit(MaxStreamMessage)
	c := &StreamConn{ws: ws}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, data, err := ws.ReadMessage()
	_ = ws.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, nil, written{Unavailable("read the stream request: %w", err)}
	}
	var req StreamRequest
	if typ != websocket.TextMessage {
		err = Invalid("the stream's first message must be its request, as JSON text")
	} else if err = json.Unmarshal(data, &req); err != nil {
		err = Invalid("stream request: %w", err)
	} else {
		err = req.Validate()
	}
	if err != nil {
		c.End(StreamStatus{Error: new(StatusOf(err))})
		return nil, nil, written{err}
	}
	return c, &req, nil
}

// written marks an error whose reply was already sent.
type written struct{ error }

func (w written) Unwrap() error { return w.error }

// IsWritten tells whether err's reply was already written to its peer.
func IsWritten(err error) bool { return errors.As(err, new(written)) }

// StreamDialer opens streams to one peer.
type StreamDialer struct {
	Endpoint Endpoint
	TLS      *tls.Config
	// Header, if set, gives headers added to the upgrade (a bearer token).
	Header func() (http.Header, error)
}

// Dial opens a stream and sends its request. A peer without PathStream (an
// original plugin or interLink) is NotImplemented; a peer that refused the
// request says why with its typed error.
func (d *StreamDialer) Dial(ctx context.Context, req *StreamRequest, extra http.Header) (*StreamConn, error) {
	h := http.Header{}
	if d.Header != nil {
		add, err := d.Header()
		if err != nil {
			return nil, err
		}
		for k, v := range add {
			h[k] = v
		}
	}
	for k, v := range extra {
		h[k] = v
	}
	h.Set(HeaderAPIVersion, APIVersion)
	dialer := websocket.Dialer{
		Subprotocols:     []string{StreamProtocol},
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   streamChunk,
		WriteBufferSize:  streamChunk,
		TLSClientConfig:  d.TLS,
		Proxy:            http.ProxyFromEnvironment,
	}
	u := *d.Endpoint.Base
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path += PathStream
	if sock := d.Endpoint.Socket; sock != "" {
		dialer.Proxy = nil
		dialer.NetDialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", sock)
		}
	}
	ws, resp, err := dialer.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil {
			defer func() { _ = resp.Body.Close() }()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				return nil, NewError(ReasonNotImplemented, "%s: this peer does not offer streams (exec -it, attach, port-forward): it is not one of ours, or older", u.Redacted())
			}
			return nil, fmt.Errorf("open stream: %w", ErrorFromReply(resp.StatusCode, b))
		}
		return nil, Unavailable("open stream %s: %w", u.Redacted(), err)
	}
	ws.SetReadLimit(MaxStreamMessage)
	c := &StreamConn{ws: ws}
	b, err := json.Marshal(req)
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := c.write(websocket.TextMessage, b); err != nil {
		c.Close()
		return nil, Unavailable("send the stream request: %w", err)
	}
	return c, nil
}

func (c *StreamConn) write(typ int, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return c.ws.WriteMessage(typ, b)
}

// Send sends data on channel ch, in chunks.
func (c *StreamConn) Send(ch byte, data []byte) error {
	for {
		n := min(len(data), streamChunk)
		msg := make([]byte, 1+n)
		msg[0] = ch
		copy(msg[1:], data[:n])
		if err := c.write(websocket.BinaryMessage, msg); err != nil {
			return err
		}
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

// SendJSON sends v as JSON on channel ch.
func (c *StreamConn) SendJSON(ch byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Send(ch, b)
}

// Recv reads the next message: its channel and data. io.EOF is a normal
// close by the peer.
func (c *StreamConn) Recv() (byte, []byte, error) {
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				return 0, nil, io.EOF
			}
			return 0, nil, err
		}
		if typ != websocket.BinaryMessage || len(data) == 0 {
			continue // not ours: ignored
		}
		return data[0], data[1:], nil
	}
}

// Relay copies a message, as it came, to another stream.
func (c *StreamConn) relay(ch byte, data []byte) error { return c.Send(ch, data) }

// End sends the status that ends an exec or attach, then closes.
func (c *StreamConn) End(st StreamStatus) {
	_ = c.SendJSON(ChanStatus, st)
	c.Close()
}

// Close closes the stream, telling the peer so.
func (c *StreamConn) Close() {
	c.mu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.mu.Unlock()
	_ = c.ws.Close()
}

// Limits bound a stream: it ends when no byte passed either way for Idle,
// or after Total, whichever comes first (zero: no bound).
type Limits struct {
	Idle  time.Duration
	Total time.Duration
}

// Splice joins two streams (interLink between the VK and a sidecar): every
// message goes across as it came, until either side closes, fails, or a
// limit passes. count, if set, is told of each message's bytes by
// direction ("in": towards b). It returns why the stream ended (nil: a
// close).
func Splice(ctx context.Context, a, b *StreamConn, lim Limits, count func(dir string, n int)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if lim.Total > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, lim.Total)
		defer c2()
	}
	idle := newIdleTimer(lim.Idle, cancel)
	defer idle.stop()
	errs := make(chan error, 2)
	pump := func(from, to *StreamConn, dir string) {
		for {
			ch, data, err := from.Recv()
			if err != nil {
				errs <- err
				return
			}
			idle.touch()
			if count != nil {
				count(dir, len(data))
			}
			if err := to.relay(ch, data); err != nil {
				errs <- err
				return
			}
		}
	}
	go pump(a, b, "in")
	go pump(b, a, "out")
	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
		err = ctx.Err()
		if idle.fired() {
			err = NewError(ReasonTimeout, "stream idle for %s", lim.Idle)
		} else if errors.Is(err, context.DeadlineExceeded) {
			err = NewError(ReasonTimeout, "stream open for %s, its longest", lim.Total)
		}
		// Both sides are told why, as an exec's end would.
		st := StreamStatus{ExitCode: 0, Error: new(StatusOf(err))}
		_ = a.SendJSON(ChanStatus, st)
	}
	a.Close()
	b.Close()
	<-errs //nolint:errcheck // the other pump ends on the closes: its error is their consequence
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// idleTimer cancels when touch was not called for d.
type idleTimer struct {
	t    *time.Timer
	d    time.Duration
	mu   sync.Mutex
	done bool
}

func newIdleTimer(d time.Duration, cancel func()) *idleTimer {
	it := &idleTimer{d: d}
	if d > 0 {
		it.t = time.AfterFunc(d, func() {
			it.mu.Lock()
			it.done = true
			it.mu.Unlock()
			cancel()
		})
	}
	return it
}

func (it *idleTimer) touch() {
	if it.t != nil {
		it.t.Reset(it.d)
	}
}

func (it *idleTimer) fired() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.done
}

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
}
