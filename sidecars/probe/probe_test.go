package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func hostPort(t *testing.T, addr string) (string, int32) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return h, int32(n)
}

func TestActions(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("X-Probe") != "yes" || r.Host != "app.example" {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/redirect":
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
		default:
			http.Error(w, "nope", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.Listener.Addr().String())

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(gl) }()
	defer gs.Stop()
	_, gport := hostPort(t, gl.Addr().String())

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	_, closedPort := hostPort(t, closed.Addr().String())
	_ = closed.Close()

	exec := func(_ context.Context, cmd []string) (int, []byte, error) {
		switch cmd[0] {
		case "true":
			return 0, nil, nil
		case "hang":
			time.Sleep(200 * time.Millisecond)
			return 0, nil, nil
		case "broken":
			return -1, nil, errors.New("no such container")
		}
		return 3, []byte("not healthy\n"), nil
	}
	tg := Target{Host: host, Exec: exec, Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port}}}
	down := "down"
	cases := []struct {
		name string
		a    Action
		ok   bool
		msg  string
	}{
		{"exec ok", Action{Exec: &corev1.ExecAction{Command: []string{"true"}}}, true, ""},
		{"exec code", Action{Exec: &corev1.ExecAction{Command: []string{"false"}}}, false, "exit code 3: not healthy"},
		{"exec timeout", Action{Exec: &corev1.ExecAction{Command: []string{"hang"}}}, false, "timed out"},
		{"exec error", Action{Exec: &corev1.ExecAction{Command: []string{"broken"}}}, false, "no such container"},
		{"http ok, named port, headers", Action{HTTPGet: &corev1.HTTPGetAction{Path: "ok", Port: intstr.FromString("web"),
			HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "app.example"}}}}, true, ""},
		{"http redirect is success", Action{HTTPGet: &corev1.HTTPGetAction{Path: "/redirect", Port: intstr.FromInt32(port)}}, true, ""},
		{"http 503", Action{HTTPGet: &corev1.HTTPGetAction{Path: "/x", Port: intstr.FromInt32(port)}}, false, "HTTP 503"},
		{"http unknown port name", Action{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("nope")}}, false, `port "nope" names no port`},
		{"tcp ok", Action{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}, true, ""},
		{"tcp refused", Action{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(closedPort)}}, false, "refused"},
		{"grpc serving", Action{GRPC: &corev1.GRPCAction{Port: gport}}, true, ""},
		{"grpc not serving", Action{GRPC: &corev1.GRPCAction{Port: gport, Service: &down}}, false, "NOT_SERVING"},
		{"sleep", Action{Sleep: &corev1.SleepAction{Seconds: 0}}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.a.Validate(); err != nil {
				t.Fatal(err)
			}
			r := c.a.Run(context.Background(), tg, 100*time.Millisecond)
			if r.OK != c.ok || !strings.Contains(r.Message, c.msg) {
				t.Errorf("Run = %+v, want ok=%v and a message holding %q", r, c.ok, c.msg)
			}
		})
	}
	loud := Target{Exec: func(context.Context, []string) (int, []byte, error) {
		return 1, []byte(strings.Repeat("<html>", 2000)), nil
	}}
	if r := (Action{Exec: &corev1.ExecAction{Command: []string{"x"}}}).Run(context.Background(), loud, time.Second); r.OK || len(r.Message) > MaxResultBytes+len("…") {
		t.Errorf("a failure's message holds %d bytes, want at most %d", len(r.Message), MaxResultBytes)
	}
	if r := (Action{Exec: &corev1.ExecAction{Command: []string{"true"}}}).Run(context.Background(), Target{}, time.Second); r.OK || !strings.Contains(r.Message, ErrNoExec.Error()) {
		t.Errorf("exec without Target.Exec = %+v", r)
	}
}

func TestValidate(t *testing.T) {
	two := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}, TCPSocket: &corev1.TCPSocketAction{}}}
	for _, c := range []struct {
		name string
		c    corev1.Container
		want string
	}{
		{"none", corev1.Container{Name: "a"}, ""},
		{"two handlers", corev1.Container{Name: "a", LivenessProbe: two}, "container a: livenessProbe: names 2 handlers"},
		{"no handler", corev1.Container{Name: "a", ReadinessProbe: &corev1.Probe{}}, "readinessProbe: names 0 handlers"},
		{"empty exec", corev1.Container{Name: "a", StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{}}}}, "exec has no command"},
		{"bad scheme", corev1.Container{Name: "a", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Scheme: "FTP"}}}}, "lifecycle.preStop: httpGet scheme"},
		{"postStart sleep", corev1.Container{Name: "a", Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}}}, ""},
	} {
		err := Validate(&c.c)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: Validate = %v, want %q", c.name, err, c.want)
		}
	}
}

// scripted is an exec target whose results follow a script, one per try.
type scripted struct {
	mu    sync.Mutex
	tries map[string]int
	plan  map[string]func(n int) bool
}

func (s *scripted) exec(_ context.Context, cmd []string) (int, []byte, error) {
	s.mu.Lock()
	n := s.tries[cmd[0]]
	s.tries[cmd[0]]++
	s.mu.Unlock()
	if s.plan[cmd[0]](n) {
		return 0, nil, nil
	}
	return 1, nil, nil
}

func execProbe(name string, fail, succ int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{name}}},
		PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: fail, SuccessThreshold: succ}
}

type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, s)
}

func (e *events) report() Report {
	return Report{
		Started: func() { e.add("started") },
		Ready:   func(b bool) { e.add("ready=" + strconv.FormatBool(b)) },
		Kill:    func(k Kind, msg string) { e.add("kill " + string(k) + ": " + msg) },
	}
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.log, "; ")
}

func TestRun(t *testing.T) {
	unit = 10 * time.Millisecond
	defer func() { unit = time.Second }()
	cases := []struct {
		name string
		c    corev1.Container
		plan map[string]func(int) bool
		want string
	}{
		{"no probes: started and ready at once", corev1.Container{}, nil, "started; ready=true"},
		{"readiness fails twice, then passes, then fails three times",
			corev1.Container{ReadinessProbe: execProbe("r", 3, 2)},
			map[string]func(int) bool{"r": func(n int) bool { return n >= 2 && n < 6 }},
			"started; ready=true; ready=false"},
		{"liveness fails three times: killed",
			corev1.Container{LivenessProbe: execProbe("l", 3, 1)},
			map[string]func(int) bool{"l": func(n int) bool { return n == 1 }},
			"started; ready=true; kill liveness: Liveness probe failed: exec [\"l\"]: exit code 1: "},
		{"startup gates liveness: liveness never runs before startup passes",
			corev1.Container{StartupProbe: execProbe("s", 10, 1), LivenessProbe: execProbe("l", 1, 1)},
			map[string]func(int) bool{"s": func(n int) bool { return n >= 3 }, "l": func(n int) bool { return true }},
			"started; ready=true"},
		{"startup fails: killed, never started",
			corev1.Container{StartupProbe: execProbe("s", 2, 1), ReadinessProbe: execProbe("r", 1, 1)},
			map[string]func(int) bool{"s": func(int) bool { return false }, "r": func(int) bool { return true }},
			"kill startup: Startup probe failed: exec [\"s\"]: exit code 1: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &scripted{tries: map[string]int{}, plan: c.plan}
			var e events
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			Run(ctx, &c.c, Target{Exec: s.exec}, time.Now(), e.report())
			if got := e.String(); got != c.want {
				t.Errorf("events %q, want %q", got, c.want)
			}
			if c.c.StartupProbe != nil && c.c.LivenessProbe != nil && s.tries["l"] > 0 && s.tries["s"] < 4 {
				t.Errorf("liveness ran %d times before startup passed", s.tries["l"])
			}
		})
	}
}

func TestInitialDelay(t *testing.T) {
	unit = 10 * time.Millisecond
	defer func() { unit = time.Second }()
	s := &scripted{tries: map[string]int{}, plan: map[string]func(int) bool{"r": func(int) bool { return true }}}
	p := execProbe("r", 1, 1)
	p.InitialDelaySeconds = 5
	var e events
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	Run(ctx, &corev1.Container{ReadinessProbe: p}, Target{Exec: s.exec}, time.Now(), e.report())
	if s.tries["r"] != 0 || e.String() != "started" {
		t.Errorf("before initialDelaySeconds: %d tries, events %q", s.tries["r"], e.String())
	}
}

func TestTerminationMessage(t *testing.T) {
	fallback := &corev1.Container{TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError}
	var lines []string
	for i := range 100 {
		lines = append(lines, "line "+strconv.Itoa(i))
	}
	log := []byte(strings.Join(lines, "\n") + "\n")
	tail := func() []byte { return log }
	for _, c := range []struct {
		name string
		c    *corev1.Container
		file string
		code int32
		want string
	}{
		{"file wins", fallback, "bye", 1, "bye"},
		{"file capped", &corev1.Container{}, strings.Repeat("x", 5000), 0, strings.Repeat("x", 4096)},
		{"no fallback by default", &corev1.Container{}, "", 1, ""},
		{"no fallback on success", fallback, "", 0, ""},
		{"fallback: last 80 lines", fallback, "", 2, strings.Join(lines[20:], "\n") + "\n"},
	} {
		if got := TerminationMessage(c.c, []byte(c.file), c.code, tail); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	big := []byte(strings.Repeat("y", 3000))
	if got := LogTail(big); len(got) != MaxLogMessageBytes {
		t.Errorf("LogTail kept %d bytes, want %d", len(got), MaxLogMessageBytes)
	}
}
