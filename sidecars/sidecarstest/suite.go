package sidecarstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Config adapts the suite to a backend.
type Config struct {
	// Image is the container image of test pods ("busybox" by default).
	Image string
	// Timeout bounds each wait for a pod to reach a state (60s by default).
	Timeout time.Duration
	// Prepare, if set, changes each test pod before it is created (to add
	// annotations, say). failing tells whether the pod must exit non-zero.
	Prepare func(pod *corev1.Pod, failing bool)
	// WantLog is a string the logs of a succeeded test pod must contain.
	WantLog string
	// Concurrency is the number of pods of the concurrent case (8 by default).
	Concurrency int
}

// Pod returns a test pod whose one container prints a line and exits with
// code (the suite's pods are plain busybox shells, so a real backend runs
// them as they are).
func Pod(cfg Config, name string, code int) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "conformance", UID: types.UID(uuid.NewString()),
			Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: cfg.Image,
				Command: []string{"/bin/sh", "-c", fmt.Sprintf("echo conformance-hello; sleep 1; exit %d", code)},
			}},
		},
	}
	if cfg.Prepare != nil {
		cfg.Prepare(p, code != 0)
	}
	return p
}

// Run runs the conformance suite against p.
func Run(t *testing.T, p sidecars.Plugin, cfg Config) {
	t.Helper()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	srv := httptest.NewServer(sidecars.NewHandler(p, sidecars.HandlerConfig{MaxBodyBytes: 1 << 20}))
	t.Cleanup(srv.Close)
	c, err := sidecars.NewClient(sidecars.ClientConfig{URL: srv.URL, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{c: c, cfg: cfg, url: srv.URL}
	t.Run("Lifecycle", s.lifecycle)
	t.Run("FailedExit", s.failedExit)
	t.Run("IdempotentCreate", s.idempotentCreate)
	t.Run("UnknownPod", s.unknownPod)
	t.Run("BadInput", s.badInput)
	t.Run("FollowLogsEnds", s.followLogs)
	t.Run("Concurrent", s.concurrent)
	t.Run("Ping", s.ping)
	if _, ok := p.(sidecars.Execer); ok {
		t.Run("Exec", s.exec)
	}
}

type suite struct {
	c   *sidecars.Client
	cfg Config
	url string
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout*2)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) create(ctx context.Context, t *testing.T, pod *corev1.Pod) api.CreateResult {
	t.Helper()
	res, err := s.c.Create(ctx, &api.RetrievedPodData{Pod: *pod, Containers: []api.RetrievedContainer{{Name: "main"}}})
	if err != nil {
		t.Fatalf("create %s: %v", pod.Name, err)
	}
	if res.PodUID != string(pod.UID) || res.PodJID == "" {
		t.Fatalf("create %s replied %+v, want its UID and a job ID", pod.Name, res)
	}
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), pod) })
	return res
}

// waitTerminated polls status until the pod's container has terminated.
func (s *suite) waitTerminated(ctx context.Context, t *testing.T, pod *corev1.Pod) api.PodStatus {
	t.Helper()
	deadline := time.Now().Add(s.cfg.Timeout)
	for {
		st, err := s.c.Status(ctx, []corev1.Pod{*pod})
		if err != nil {
			t.Fatalf("status %s: %v", pod.Name, err)
		}
		if len(st) == 1 && len(st[0].Containers) == 1 && st[0].Containers[0].State.Terminated != nil {
			return st[0]
		}
		if len(st) > 1 {
			t.Fatalf("status of one pod returned %d entries", len(st))
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s did not terminate within %s; last status %+v", pod.Name, s.cfg.Timeout, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *suite) readLogs(ctx context.Context, t *testing.T, pod *corev1.Pod, opts api.ContainerLogOpts) string {
	t.Helper()
	rc, err := s.c.Logs(ctx, &api.LogRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main", Opts: opts})
	if err != nil {
		t.Fatalf("logs %s: %v", pod.Name, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs %s: %v", pod.Name, err)
	}
	return string(b)
}

func (s *suite) lifecycle(t *testing.T) {
	ctx := s.ctx(t)
	pod := Pod(s.cfg, "lifecycle", 0)
	res := s.create(ctx, t, pod)
	st := s.waitTerminated(ctx, t, pod)
	if st.PodUID != string(pod.UID) || st.PodName != pod.Name || st.PodNamespace != pod.Namespace {
		t.Errorf("status names %s/%s %s, want %s/%s %s", st.PodNamespace, st.PodName, st.PodUID, pod.Namespace, pod.Name, pod.UID)
	}
	if st.JobID != "" && st.JobID != res.PodJID {
		t.Errorf("status job ID %q, create said %q", st.JobID, res.PodJID)
	}
	if code := st.Containers[0].State.Terminated.ExitCode; code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	logs := s.readLogs(ctx, t, pod, api.ContainerLogOpts{})
	if strings.TrimSpace(logs) == "" || (s.cfg.WantLog != "" && !strings.Contains(logs, s.cfg.WantLog)) {
		t.Errorf("logs %q, want non-empty containing %q", logs, s.cfg.WantLog)
	}
	if tail := s.readLogs(ctx, t, pod, api.ContainerLogOpts{Tail: 1}); strings.Count(tail, "\n") > 1 {
		t.Errorf("Tail=1 gave %d lines: %q", strings.Count(tail, "\n"), tail)
	}
	if err := s.c.Delete(ctx, pod); err != nil {
		t.Fatalf("delete: %v", err)
	}
	st2, err := s.c.Status(ctx, []corev1.Pod{*pod})
	if err != nil {
		t.Fatalf("status after delete: %v", err)
	}
	if len(st2) != 0 {
		t.Errorf("status after delete returned %+v, want the pod left out", st2)
	}
	if _, err := s.c.Logs(ctx, &api.LogRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main"}); !api.IsNotFound(err) {
		t.Errorf("logs after delete: %v, want NotFound", err)
	}
}

func (s *suite) failedExit(t *testing.T) {
	ctx := s.ctx(t)
	pod := Pod(s.cfg, "failing", 3)
	s.create(ctx, t, pod)
	st := s.waitTerminated(ctx, t, pod)
	if code := st.Containers[0].State.Terminated.ExitCode; code == 0 {
		t.Errorf("a failing container reported exit code 0")
	}
}

func (s *suite) idempotentCreate(t *testing.T) {
	ctx := s.ctx(t)
	pod := Pod(s.cfg, "twice", 0)
	first := s.create(ctx, t, pod)
	second := s.create(ctx, t, pod)
	if first.PodJID != second.PodJID {
		t.Errorf("second create of one UID made job %q, first was %q", second.PodJID, first.PodJID)
	}
	st, err := s.c.Status(ctx, []corev1.Pod{*pod})
	if err != nil || len(st) != 1 {
		t.Errorf("status after double create: %d entries, %v", len(st), err)
	}
}

func (s *suite) unknownPod(t *testing.T) {
	ctx := s.ctx(t)
	pod := Pod(s.cfg, "never-created", 0)
	if err := s.c.Delete(ctx, pod); !api.IsNotFound(err) {
		t.Errorf("delete of unknown pod: %v, want NotFound", err)
	}
	if _, err := s.c.Logs(ctx, &api.LogRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main"}); !api.IsNotFound(err) {
		t.Errorf("logs of unknown pod: %v, want NotFound", err)
	}
	st, err := s.c.Status(ctx, []corev1.Pod{*pod})
	if err != nil || len(st) != 0 {
		t.Errorf("status of unknown pod: %+v, %v; want it left out", st, err)
	}
}

func (s *suite) badInput(t *testing.T) {
	ctx := s.ctx(t)
	noUID := Pod(s.cfg, "no-uid", 0)
	noUID.UID = ""
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"malformed JSON", http.MethodPost, api.PathCreate, `{"pod": `, 400},
		{"wrong type", http.MethodPost, api.PathCreate, `{"pod": {"metadata": {"uid": 5}}}`, 400},
		{"pod without UID", http.MethodPost, api.PathCreate, mustJSON(api.RetrievedPodData{Pod: *noUID}), 400},
		{"delete without UID", http.MethodPost, api.PathDelete, mustJSON(noUID), 400},
		{"status without UID", http.MethodGet, api.PathStatus, mustJSON([]corev1.Pod{*noUID}), 400},
		{"tail with bytes", http.MethodGet, api.PathLogs, `{"Namespace":"a","PodUID":"` + uuid.NewString() + `","PodName":"p","ContainerName":"main","Opts":{"Tail":1,"Bytes":1}}`, 400},
		{"bad namespace", http.MethodGet, api.PathLogs, `{"Namespace":"../x","PodUID":"` + uuid.NewString() + `","PodName":"p","ContainerName":"main"}`, 400},
		{"oversized", http.MethodPost, api.PathCreate, `{"pod":{"metadata":{"name":"` + strings.Repeat("x", 2<<20) + `"}}}`, 413},
		{"wrong method", http.MethodPatch, api.PathCreate, `{}`, 405},
		{"unknown path", http.MethodGet, "/nope", ``, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tt.method, s.url+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || len(bytes.TrimSpace(body)) == 0 {
				t.Errorf("%s %s: %d %q, want %d with a message", tt.method, tt.path, resp.StatusCode, body, tt.want)
			}
		})
	}
}

func (s *suite) followLogs(t *testing.T) {
	ctx := s.ctx(t)
	pod := Pod(s.cfg, "follow", 0)
	s.create(ctx, t, pod)
	done := make(chan string, 1)
	go func() {
		rc, err := s.c.Logs(ctx, &api.LogRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main", Opts: api.ContainerLogOpts{Follow: true}})
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		defer func() { _ = rc.Close() }()
		b, _ := io.ReadAll(rc)
		done <- string(b)
	}()
	select {
	case logs := <-done:
		if strings.HasPrefix(logs, "error: ") || strings.TrimSpace(logs) == "" {
			t.Errorf("followed logs: %q", logs)
		}
	case <-time.After(s.cfg.Timeout):
		t.Fatalf("followed logs did not end within %s of start", s.cfg.Timeout)
	}
}

func (s *suite) concurrent(t *testing.T) {
	ctx := s.ctx(t)
	n := s.cfg.Concurrency
	pods := make([]*corev1.Pod, n)
	jids := make([]string, n)
	errs := make(chan error, 3*n)
	var wg sync.WaitGroup
	for i := range n {
		pods[i] = Pod(s.cfg, fmt.Sprintf("concurrent-%d", i), 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.c.Create(ctx, &api.RetrievedPodData{Pod: *pods[i], Containers: []api.RetrievedContainer{{Name: "main"}}})
			if err != nil {
				errs <- err
				return
			}
			jids[i] = res.PodJID
			if _, err := s.c.Status(ctx, []corev1.Pod{*pods[i]}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, j := range jids {
		if j != "" && seen[j] {
			t.Errorf("job ID %q given to two pods", j)
		}
		seen[j] = true
	}
	all := make([]corev1.Pod, n)
	for i := range pods {
		all[i] = *pods[i]
	}
	st, err := s.c.Status(ctx, all)
	if err != nil || len(st) != n {
		t.Errorf("batched status of %d pods: %d entries, %v", n, len(st), err)
	}
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.c.Delete(ctx, pods[i]); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, err := s.c.Status(ctx, all); err != nil || len(st) != 0 {
		t.Errorf("after deleting all, status returned %d entries, %v", len(st), err)
	}
}

func (s *suite) ping(t *testing.T) {
	res, err := s.c.Ping(s.ctx(t))
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if res.Status != "" && res.Status != api.PingOK {
		t.Errorf("ping status %q", res.Status)
	}
}

// exec runs a command in a running container, then in an unknown pod.
func (s *suite) exec(t *testing.T) {
	ctx := s.ctx(t)
	pod := Pod(s.cfg, "exec", 0)
	s.create(ctx, t, pod)
	deadline := time.Now().Add(s.cfg.Timeout)
	for {
		st, err := s.c.Status(ctx, []corev1.Pod{*pod})
		if err != nil {
			t.Fatal(err)
		}
		if len(st) == 1 && len(st[0].Containers) == 1 && st[0].Containers[0].State.Running != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod never ran: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var out bytes.Buffer
	req := &api.ExecRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main", Command: []string{"echo", "exec-hello"}}
	code, err := s.c.Exec(ctx, req, &out)
	if err != nil || code != 0 || out.Len() == 0 {
		t.Errorf("exec: code %d, output %q, %v", code, out.String(), err)
	}
	req.PodUID = uuid.NewString()
	if _, err := s.c.Exec(ctx, req, &out); !api.IsNotFound(err) {
		t.Errorf("exec in an unknown pod: %v, want NotFound", err)
	}
}

func mustJSON(v any) string {
	var b bytes.Buffer
	if err := jsonEncode(&b, v); err != nil {
		panic(errors.Join(errors.New("encode"), err))
	}
	return b.String()
}
