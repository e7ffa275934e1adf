package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

// AnnotationOutcome chooses a simulated pod's fate.
const AnnotationOutcome = "interlink.io/sim-outcome"

// Outcomes.
const (
	OutcomeSucceeded   = "succeeded"
	OutcomeFailed      = "failed"
	OutcomeRunning     = "running"
	OutcomeCreateError = "create-error"
)

// pod is the little the sim keeps per pod (about 200 bytes plus names).
type pod struct {
	name, namespace string
	jid             string
	created         time.Time
	outcome         uint8
	containers      []string
	initContainers  []string
	// data summarizes, per container, the names and keys (never the values)
	// of the ConfigMaps, Secrets and projected volumes it received.
	data map[string]string
}

const (
	succeed uint8 = iota
	fail
	runForever
)

// Sidecar is the simulated sidecar.
type Sidecar struct {
	cfg  Config
	now  func() time.Time
	seq  atomic.Uint64
	mu   sync.RWMutex
	pods map[types.UID]*pod
	// counts holds call counts and the faults in force.
	counts *counters
}

var (
	_ sidecars.Plugin = (*Sidecar)(nil)
	_ sidecars.Pinger = (*Sidecar)(nil)
	_ sidecars.Execer = (*Sidecar)(nil)
)

// New returns a simulated sidecar.
func New(cfg Config) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim config: %w", err)
	}
	s := &Sidecar{cfg: cfg, now: time.Now, pods: make(map[types.UID]*pod), counts: newCounters(time.Now(), cfg.Faults)}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Len returns the number of pods held.
func (s *Sidecar) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.pods)
}

// Create implements sidecars.Plugin; it is idempotent by pod UID, unless
// OriginalPlugin: then a pod held gets another job (a duplicate).
func (s *Sidecar) Create(_ context.Context, data *api.RetrievedPodData) (api.CreateResult, error) {
	s.counts.add(&s.counts.creates, 1)
	p := &data.Pod
	var outcome uint8
	switch o := p.Annotations[AnnotationOutcome]; o {
	case "", OutcomeSucceeded:
		outcome = succeed
	case OutcomeFailed:
		outcome = fail
	case OutcomeRunning:
		outcome = runForever
	case OutcomeCreateError:
		return api.CreateResult{}, api.Unavailable("simulated create error for pod %s/%s", p.Namespace, p.Name)
	default:
		return api.CreateResult{}, api.Invalid("annotation %s=%q: want %s, %s, %s or %s",
			AnnotationOutcome, o, OutcomeSucceeded, OutcomeFailed, OutcomeRunning, OutcomeCreateError)
	}
	if err := api.RequireContainers(p); err != nil {
		return api.CreateResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.pods[p.UID]; ok {
		if !s.cfg.OriginalPlugin {
			return api.CreateResult{PodUID: string(p.UID), PodJID: old.jid}, nil
		}
		s.counts.add(&s.counts.duplicates, 1)
	}
	np := &pod{
		name: p.Name, namespace: p.Namespace, created: s.now(), outcome: outcome,
		jid:            fmt.Sprintf("sim-%d", s.seq.Add(1)),
		containers:     names(p.Spec.Containers),
		initContainers: names(p.Spec.InitContainers),
		data:           summarize(data.Containers),
	}
	s.pods[p.UID] = np
	return api.CreateResult{PodUID: string(p.UID), PodJID: np.jid}, nil
}

// summarize lists what each container received, as
// "configmap/NAME[k1,k2] secret/NAME[k] projected/NAME[k]".
func summarize(cs []api.RetrievedContainer) map[string]string {
	var out map[string]string
	for _, c := range cs {
		var parts []string
		for _, cm := range c.ConfigMaps {
			parts = append(parts, "configmap/"+cm.Name+keys(cm.Data, cm.BinaryData))
		}
		for _, sec := range c.Secrets {
			parts = append(parts, "secret/"+sec.Name+keys(sec.StringData, sec.Data))
		}
		for _, pm := range c.ProjectedVolumeMaps {
			parts = append(parts, "projected/"+pm.Name+keys(pm.Data, pm.BinaryData))
		}
		if len(parts) > 0 {
			if out == nil {
				out = map[string]string{}
			}
			out[c.Name] = strings.Join(parts, " ")
		}
	}
	return out
}

func keys(a map[string]string, b map[string][]byte) string {
	ks := make([]string, 0, len(a)+len(b))
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return "[" + strings.Join(ks, ",") + "]"
}

func names(cs []corev1.Container) []string {
	if len(cs) == 0 {
		return nil
	}
	out := make([]string, len(cs))
	for i := range cs {
		out[i] = cs[i].Name
	}
	return out
}

// Delete implements sidecars.Plugin.
func (s *Sidecar) Delete(_ context.Context, p *corev1.Pod) error {
	s.counts.add(&s.counts.deletes, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pods[p.UID]; !ok {
		return api.NotFound("pod %s/%s (uid %s) not found", p.Namespace, p.Name, p.UID)
	}
	delete(s.pods, p.UID)
	return nil
}

// Status implements sidecars.Plugin.
func (s *Sidecar) Status(_ context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	s.counts.mu.Lock()
	s.counts.statuses++
	s.counts.statusPods += uint64(len(pods))
	s.counts.mu.Unlock()
	now := s.now()
	out := make([]api.PodStatus, 0, len(pods))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range pods {
		sp, ok := s.pods[pods[i].UID]
		if !ok {
			continue
		}
		out = append(out, s.status(pods[i].UID, sp, now))
	}
	return out, nil
}

// phase times of a pod.
func (s *Sidecar) times(p *pod) (start, end time.Time) {
	start = p.created.Add(s.cfg.PendingDelay.Duration)
	end = start.Add(s.cfg.RunDuration.Duration)
	return start, end
}

func (s *Sidecar) exitCode(p *pod) int32 {
	if p.outcome == fail {
		return 1
	}
	return 0
}

func (s *Sidecar) status(uid types.UID, p *pod, now time.Time) api.PodStatus {
	start, end := s.times(p)
	st := api.PodStatus{PodName: p.name, PodUID: string(uid), PodNamespace: p.namespace, JobID: p.jid}
	for _, n := range p.initContainers {
		cs := corev1.ContainerStatus{Name: n, Image: "sim"}
		if now.Before(start) {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.created)}
		} else {
			cs.State.Terminated = &corev1.ContainerStateTerminated{Reason: "Completed",
				StartedAt: metav1.NewTime(p.created), FinishedAt: metav1.NewTime(start)}
		}
		st.InitContainers = append(st.InitContainers, cs)
	}
	for _, n := range p.containers {
		cs := corev1.ContainerStatus{Name: n, Image: "sim"}
		switch {
		case now.Before(start):
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		case p.outcome == runForever || now.Before(end):
			t := true
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(start)}
			cs.Ready, cs.Started = true, &t
		default:
			code := s.exitCode(p)
			reason := "Completed"
			if code != 0 {
				reason = "Error"
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
				StartedAt: metav1.NewTime(start), FinishedAt: metav1.NewTime(end)}
		}
		st.Containers = append(st.Containers, cs)
	}
	return st
}

// Exec implements sidecars.Execer: it runs nothing, and writes one line
// naming the command. The command "false" exits with 1, any other with 0.
func (s *Sidecar) Exec(_ context.Context, req *api.ExecRequest, out io.Writer) (int, error) {
	s.mu.RLock()
	p, ok := s.pods[types.UID(req.PodUID)]
	s.mu.RUnlock()
	if !ok {
		return 0, api.NotFound("pod %s/%s (uid %s) not found", req.Namespace, req.PodName, req.PodUID)
	}
	if !contains(p.containers, req.ContainerName) {
		return 0, api.NotFound("pod %s/%s has no container %q", req.Namespace, req.PodName, req.ContainerName)
	}
	if _, err := fmt.Fprintf(out, "sim: exec in container %s of pod %s/%s: %q\n", req.ContainerName, req.Namespace, req.PodName, req.Command); err != nil {
		return 0, err
	}
	if req.Command[0] == "false" {
		return 1, nil
	}
	return 0, nil
}

// Ping implements sidecars.Pinger.
func (s *Sidecar) Ping(context.Context) (api.PingResponse, error) {
	s.counts.add(&s.counts.pings, 1)
	return api.PingResponse{Status: api.PingOK, Resources: &api.Resources{CPU: s.cfg.CPU, Memory: s.cfg.Memory, Pods: s.cfg.Pods}}, nil
}

// Logs implements sidecars.Plugin with synthetic lines: one at start, one
// every LogInterval while running, one at exit.
func (s *Sidecar) Logs(ctx context.Context, req *api.LogRequest) (io.ReadCloser, error) {
	s.mu.RLock()
	p, ok := s.pods[types.UID(req.PodUID)]
	s.mu.RUnlock()
	if !ok {
		return nil, api.NotFound("pod %s/%s (uid %s) not found", req.Namespace, req.PodName, req.PodUID)
	}
	isInit := contains(p.initContainers, req.ContainerName)
	if !isInit && !contains(p.containers, req.ContainerName) {
		return nil, api.NotFound("pod %s/%s has no container %q", req.Namespace, req.PodName, req.ContainerName)
	}
	start, end := s.times(p)
	if isInit {
		start, end = p.created, start
	}
	if p.outcome == runForever && !isInit {
		end = time.Time{}
	}
	g := &logGen{sim: s, req: req, start: start, end: end, code: s.exitCode(p), data: p.data[req.ContainerName]}
	if isInit {
		g.code = 0
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(g.write(ctx, pw)) }()
	return pr, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// logGen writes a container's synthetic log, honoring the log options.
type logGen struct {
	sim        *Sidecar
	req        *api.LogRequest
	start, end time.Time // end is zero for a container that never ends
	code       int32
	data       string // what the container received, if anything
}

// line i of the log: its time and text; ok is false past the last line.
func (g *logGen) line(i int) (t time.Time, text string, ok bool) {
	t = g.start.Add(time.Duration(i) * g.sim.cfg.LogInterval.Duration)
	switch {
	case i == 0:
		msg := fmt.Sprintf("sim: container %s of pod %s/%s started", g.req.ContainerName, g.req.Namespace, g.req.PodName)
		if g.data != "" {
			msg += "; data " + g.data
		}
		return g.start, msg, true
	case g.end.IsZero() || t.Before(g.end):
		return t, fmt.Sprintf("sim: tick %d", i), true
	case t.Add(-g.sim.cfg.LogInterval.Duration).Before(g.end):
		return g.end, fmt.Sprintf("sim: container %s exited with code %d", g.req.ContainerName, g.code), true
	default:
		return time.Time{}, "", false
	}
}

func (g *logGen) write(ctx context.Context, w io.Writer) error {
	o := g.req.Opts
	since := o.SinceTime
	if o.SinceSeconds > 0 {
		since = g.sim.now().Add(-time.Duration(o.SinceSeconds) * time.Second)
	}
	// The lines already written, for Tail.
	var lines []string
	emit := func(t time.Time, text string) string {
		if o.Timestamps {
			return t.UTC().Format(time.RFC3339Nano) + " " + text + "\n"
		}
		return text + "\n"
	}
	i := 0
	now := g.sim.now()
	for ; ; i++ {
		t, text, ok := g.line(i)
		if !ok || t.After(now) {
			break
		}
		if !since.IsZero() && t.Before(since) {
			continue
		}
		lines = append(lines, emit(t, text))
	}
	if o.Tail > 0 && len(lines) > o.Tail {
		lines = lines[len(lines)-o.Tail:]
	}
	budget := o.LimitBytes
	out := func(s string) error {
		if o.LimitBytes > 0 {
			if budget <= 0 {
				return io.EOF
			}
			if len(s) > budget {
				s = s[:budget]
			}
			budget -= len(s)
		}
		_, err := io.WriteString(w, s)
		return err
	}
	if err := out(strings.Join(lines, "")); err != nil {
		return ignoreEOF(err)
	}
	if !o.Follow {
		return nil
	}
	for ; ; i++ {
		t, text, ok := g.line(i)
		if !ok {
			return nil
		}
		if d := t.Sub(g.sim.now()); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
			}
		}
		if !g.sim.has(types.UID(g.req.PodUID)) {
			return nil // deleted while followed
		}
		if err := out(emit(t, text)); err != nil {
			return ignoreEOF(err)
		}
	}
}

func (s *Sidecar) has(uid types.UID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.pods[uid]
	return ok
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
