package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Target is where a container's probes and hooks act.
type Target struct {
	// Host is what httpGet, tcpSocket and grpc connect to when the handler
	// names no host: the container's address as the prober reaches it.
	Host string
	// Exec runs cmd in the container (never on the host) and returns its
	// exit code and output; it stops the command when ctx ends. Nil: exec
	// handlers fail with ErrNoExec.
	Exec func(ctx context.Context, cmd []string) (code int, output []byte, err error)
	// Ports are the container's declared ports, for named ports.
	Ports []corev1.ContainerPort
}

// ErrNoExec is the error of an exec handler on a Target without Exec.
var ErrNoExec = errors.New("this runtime cannot run a command in a running container")

// MaxOutputBytes caps what is kept of a handler's output or reply body, as
// the kubelet keeps 10 KiB.
const MaxOutputBytes = 10 << 10

// Result is the outcome of one try of a handler.
type Result struct {
	OK bool
	// Message says why it failed, for events and a hook's reason.
	Message string
}

// MaxResultBytes caps a failure's message: it reaches the pod's status and
// the logs (a probe's reply body may be a whole HTML page).
const MaxResultBytes = 1 << 10

func fail(format string, args ...any) Result {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxResultBytes {
		msg = strings.ToValidUTF8(msg[:MaxResultBytes], "") + "…"
	}
	return Result{Message: msg}
}

// httpClient is shared by every httpGet try: probes connect to whatever
// certificate the container serves, and follow no redirect (a redirect
// counts as success, as the kubelet counts a 3xx it does not follow).
var httpClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify a probe's certificate either
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Action is one handler: a probe's or a lifecycle hook's.
type Action struct {
	Exec      *corev1.ExecAction
	HTTPGet   *corev1.HTTPGetAction
	TCPSocket *corev1.TCPSocketAction
	GRPC      *corev1.GRPCAction
	Sleep     *corev1.SleepAction
}

// ForProbe is the action of a probe.
func ForProbe(p *corev1.Probe) Action {
	return Action{Exec: p.Exec, HTTPGet: p.HTTPGet, TCPSocket: p.TCPSocket, GRPC: p.GRPC}
}

// ForHook is the action of a lifecycle hook.
func ForHook(h *corev1.LifecycleHandler) Action {
	return Action{Exec: h.Exec, HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket, Sleep: h.Sleep}
}

// Validate tells whether a names exactly one handler the prober can run.
func (a Action) Validate() error {
	n := 0
	for _, set := range []bool{a.Exec != nil, a.HTTPGet != nil, a.TCPSocket != nil, a.GRPC != nil, a.Sleep != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return fmt.Errorf("names %d handlers, want exactly one of exec, httpGet, tcpSocket, grpc, sleep", n)
	case a.Exec != nil && len(a.Exec.Command) == 0:
		return errors.New("exec has no command")
	case a.HTTPGet != nil && a.HTTPGet.Scheme != "" && a.HTTPGet.Scheme != corev1.URISchemeHTTP && a.HTTPGet.Scheme != corev1.URISchemeHTTPS:
		return fmt.Errorf("httpGet scheme %q is not HTTP or HTTPS", a.HTTPGet.Scheme)
	}
	return nil
}

// Run tries a once within timeout.
func (a Action) Run(ctx context.Context, t Target, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case a.Exec != nil:
		return runExec(ctx, t, a.Exec.Command)
	case a.HTTPGet != nil:
		return runHTTP(ctx, t, a.HTTPGet)
	case a.TCPSocket != nil:
		return runTCP(ctx, t, a.TCPSocket)
	case a.GRPC != nil:
		return runGRPC(ctx, t, a.GRPC)
	case a.Sleep != nil:
		select {
		case <-time.After(time.Duration(a.Sleep.Seconds) * time.Second):
			return Result{OK: true}
		case <-ctx.Done():
			return fail("sleep %ds: %v", a.Sleep.Seconds, ctx.Err())
		}
	}
	return fail("no handler")
}

func runExec(ctx context.Context, t Target, cmd []string) Result {
	if t.Exec == nil {
		return fail("exec %q: %v", cmd, ErrNoExec)
	}
	code, out, err := t.Exec(ctx, cmd)
	if len(out) > MaxOutputBytes {
		out = out[:MaxOutputBytes]
	}
	switch {
	case ctx.Err() != nil:
		return fail("exec %q: timed out", cmd)
	case err != nil:
		return fail("exec %q: %v", cmd, err)
	case code != 0:
		return fail("exec %q: exit code %d: %s", cmd, code, strings.TrimSpace(string(out)))
	}
	return Result{OK: true}
}

// port resolves a handler's port: a number, or a name among the
// container's ports.
func port(p intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, fmt.Errorf("port %d is out of range", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n >= 1 && n <= 65535 {
		return n, nil
	}
	for _, cp := range ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q names no port of the container", p.StrVal)
}

func hostOf(h string, t Target) string {
	if h != "" {
		return h
	}
	return t.Host
}

func runHTTP(ctx context.Context, t Target, a *corev1.HTTPGetAction) Result {
	p, err := port(a.Port, t.Ports)
	if err != nil {
		return fail("httpGet: %v", err)
	}
	scheme := "http"
	if a.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	path := a.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(hostOf(a.Host, t), strconv.Itoa(p)) + path)
	if err != nil {
		return fail("httpGet: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail("httpGet: %v", err)
	}
	req.Header.Set("User-Agent", "kube-probe/interlink")
	req.Header.Set("Accept", "*/*")
	for _, h := range a.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fail("httpGet %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutputBytes))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fail("httpGet %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return Result{OK: true}
}

func runTCP(ctx context.Context, t Target, a *corev1.TCPSocketAction) Result {
	p, err := port(a.Port, t.Ports)
	if err != nil {
		return fail("tcpSocket: %v", err)
	}
	addr := net.JoinHostPort(hostOf(a.Host, t), strconv.Itoa(p))
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail("tcpSocket %s: %v", addr, err)
	}
	_ = c.Close()
	return Result{OK: true}
}

func runGRPC(ctx context.Context, t Target, a *corev1.GRPCAction) Result {
	if a.Port < 1 || a.Port > 65535 {
		return fail("grpc: port %d is out of range", a.Port)
	}
	addr := net.JoinHostPort(t.Host, strconv.Itoa(int(a.Port)))
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("kube-probe/interlink"))
	if err != nil {
		return fail("grpc %s: %v", addr, err)
	}
	defer func() { _ = conn.Close() }()
	service := ""
	if a.Service != nil {
		service = *a.Service
	}
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fail("grpc %s: %v", addr, err)
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fail("grpc %s: service %q is %s", addr, service, res.GetStatus())
	}
	return Result{OK: true}
}
