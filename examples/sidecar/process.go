// Package process is an example sidecar for docs/writing-a-sidecar.md: it
// runs each pod's containers as processes of the machine it runs on (their
// command and args, without an image or any isolation). It shows what a
// sidecar implements and passes the conformance suite; it is not meant for
// production, where a pod's command must never run unconfined on a host.
package process

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

var _ sidecars.Plugin = (*Sidecar)(nil)

// Sidecar holds the pods it runs, by UID. A real sidecar keeps this in its
// backend (job comments, container labels) so that it survives a restart.
type Sidecar struct {
	mu   sync.Mutex
	pods map[string]*pod
}

type pod struct {
	name, namespace string
	cancel          context.CancelFunc
	containers      []*proc
}

// proc is one container's process: its output and, once it ended, its exit code.
type proc struct {
	name    string
	started time.Time
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan struct{}
	code    int
	ended   time.Time
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// New returns an empty sidecar.
func New() *Sidecar { return &Sidecar{pods: map[string]*pod{}} }

// Create starts every container of the pod; creating a known pod again
// returns it (creates are idempotent by UID).
func (s *Sidecar) Create(_ context.Context, data *api.RetrievedPodData) (api.CreateResult, error) {
	p := &data.Pod
	uid := string(p.UID)
	if len(p.Spec.InitContainers) > 0 {
		return api.CreateResult{}, api.Invalid("pod %s/%s: this sidecar runs no init containers", p.Namespace, p.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pods[uid]; ok {
		return api.CreateResult{PodUID: uid, PodJID: uid}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	np := &pod{name: p.Name, namespace: p.Namespace, cancel: cancel}
	for _, c := range p.Spec.Containers {
		argv := append(append([]string{}, c.Command...), c.Args...)
		if len(argv) == 0 {
			cancel()
			return api.CreateResult{}, api.Invalid("pod %s/%s: container %s has no command", p.Namespace, p.Name, c.Name)
		}
		pr := &proc{name: c.Name, done: make(chan struct{})}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...) // #nosec G204 -- the example's point
		cmd.Stdout, cmd.Stderr = pr, pr
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		for _, e := range c.Env {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
		if err := cmd.Start(); err != nil {
			cancel()
			return api.CreateResult{}, api.Invalid("pod %s/%s: container %s: %v", p.Namespace, p.Name, c.Name, err)
		}
		pr.started = time.Now()
		go func() {
			err := cmd.Wait()
			pr.mu.Lock()
			pr.code, pr.ended = cmd.ProcessState.ExitCode(), time.Now()
			if err != nil && pr.code == 0 {
				pr.code = 1
			}
			pr.mu.Unlock()
			close(pr.done)
		}()
		np.containers = append(np.containers, pr)
	}
	s.pods[uid] = np
	return api.CreateResult{PodUID: uid, PodJID: uid}, nil
}

// Delete stops the pod's processes and forgets it.
func (s *Sidecar) Delete(_ context.Context, p *corev1.Pod) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	known, ok := s.pods[string(p.UID)]
	if !ok {
		return api.NotFound("pod %s/%s is not known", p.Namespace, p.Name)
	}
	known.cancel()
	delete(s.pods, string(p.UID))
	return nil
}

// Status reports each known pod of the batch; unknown pods are left out.
func (s *Sidecar) Status(_ context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.PodStatus
	for i := range pods {
		uid := string(pods[i].UID)
		p, ok := s.pods[uid]
		if !ok {
			continue
		}
		st := api.PodStatus{PodName: p.name, PodNamespace: p.namespace, PodUID: uid, JobID: uid}
		for _, c := range p.containers {
			cs := corev1.ContainerStatus{Name: c.name}
			select {
			case <-c.done:
				reason := "Completed"
				if c.code != 0 {
					reason = "Error"
				}
				cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: int32(c.code), Reason: reason, // #nosec G115 -- exit codes fit
					StartedAt: metav1.NewTime(c.started), FinishedAt: metav1.NewTime(c.ended)}
			default:
				cs.Ready, cs.State.Running = true, &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.started)}
			}
			st.Containers = append(st.Containers, cs)
		}
		out = append(out, st)
	}
	return out, nil
}

// Logs returns a container's output; with Follow it streams until the
// container ends or ctx is done.
func (s *Sidecar) Logs(ctx context.Context, req *api.LogRequest) (io.ReadCloser, error) {
	s.mu.Lock()
	p, ok := s.pods[req.PodUID]
	s.mu.Unlock()
	if !ok {
		return nil, api.NotFound("pod %s/%s is not known", req.Namespace, req.PodName)
	}
	for _, c := range p.containers {
		if c.name != req.ContainerName {
			continue
		}
		if !req.Opts.Follow {
			return io.NopCloser(strings.NewReader(tail(c.snapshot(), req.Opts.Tail))), nil
		}
		r, w := io.Pipe()
		go func() {
			sent := 0
			for {
				b := c.snapshot()
				_, _ = w.Write([]byte(b[sent:]))
				sent = len(b)
				select {
				case <-c.done:
					_, _ = w.Write([]byte(c.snapshot()[sent:]))
					_ = w.Close()
					return
				case <-ctx.Done():
					_ = w.CloseWithError(ctx.Err())
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		return r, nil
	}
	return nil, api.NotFound("pod %s/%s has no container %q", req.Namespace, req.PodName, req.ContainerName)
}

func (p *proc) snapshot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// tail returns the last n lines of s (all of them when n <= 0).
func tail(s string, n int) string {
	if n <= 0 {
		return s
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
