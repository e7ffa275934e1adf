package prober

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// PollInterval is how often the prober reads each container's pid file.
const PollInterval = 200 * time.Millisecond

// hookTimeout is a postStart hook's: none but the run's end.
const hookTimeout = 100 * 365 * 24 * time.Hour

// prober watches the containers of one job.
type prober struct {
	spec Spec
	// dir is the pod's containers/ directory.
	dir  string
	proc procFS
	// ancestor: a container's pid must descend from it (0: unchecked).
	ancestor int
	poll     time.Duration
	log      *slog.Logger
}

// run watches every container of the Spec, and samples the usage of the
// Sampled ones, until ctx ends.
func (p *prober) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range p.spec.Containers {
		c := &p.spec.Containers[i]
		wg.Go(func() { p.watch(ctx, c) })
	}
	if len(p.spec.Sampled) > 0 {
		s := p.newSampler()
		wg.Go(func() { s.run(ctx) })
	}
	wg.Wait()
}

// activeRun is the prober's work on one run of a container.
type activeRun struct {
	id     procID
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the run's hooks and probes and waits until they are over.
func (r *activeRun) stop() {
	r.cancel()
	<-r.done
}

// watch follows c's pid file: a new live pid starts a run; the end of its
// process, or another pid, ends it.
func (p *prober) watch(ctx context.Context, c *Container) {
	pidPath := filepath.Join(p.dir, c.Name+pidSuffix)
	// last is the process a run was started for, or found outside the job;
	// unverified the one whose run the job's files did not (yet) confirm:
	// it is checked again at each poll, and said once.
	var last, unverified procID
	var unverifiedSince time.Time
	var cur *activeRun
	tick := time.NewTicker(p.poll)
	defer tick.Stop()
	for {
		id, ok := p.current(pidPath)
		if cur != nil && (!ok || id != cur.id) {
			cur.stop()
			cur = nil
		}
		if ok && id != last {
			switch err := p.proc.isRun(p.dir, c.Name, id); {
			case err != nil:
				// A pid file left by a run that ended: its pid may be
				// another process's now, another pod's even. Or a run
				// whose record is not what the prober expects yet (its
				// start read late on a loaded node): a run ignored for
				// good would never be probed, so it is asked again.
				switch {
				case id != unverified:
					unverified, unverifiedSince = id, time.Now()
					p.log.Info("pid file names no current run yet: checked again at each poll", "container", c.Name, "pid", id.pid, "err", err)
				case !unverifiedSince.IsZero() && time.Since(unverifiedSince) >= enterWarnAfter:
					// Still so: a live process the job's record never
					// matched (or a pid file left over): no probe runs.
					unverifiedSince = time.Time{}
					p.log.Warn("pid file still names no current run: its hooks and probes wait", "container", c.Name, "pid", id.pid, "err", err)
				}
			case p.ancestor == 0 || p.proc.descends(id.pid, p.ancestor):
				last = id
				cur = p.start(ctx, c, id)
			default:
				last = id
				p.log.Warn("pid file names a process outside the job: ignored", "container", c.Name, "pid", id.pid)
			}
		}
		select {
		case <-ctx.Done():
			if cur != nil {
				cur.stop()
			}
			return
		case <-tick.C:
		}
	}
}

// current is the live process a pid file names.
func (p *prober) current(pidPath string) (procID, bool) { return p.proc.current(pidPath) }

// start begins a run of c: its hooks and probes, in a goroutine.
func (p *prober) start(ctx context.Context, c *Container, id procID) *activeRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &activeRun{id: id, cancel: cancel, done: make(chan struct{})}
	st := &stateFile{path: filepath.Join(p.dir, c.Name+stateSuffix)}
	go func() {
		defer close(r.done)
		defer st.end()
		p.runOnce(ctx, c, id, st)
	}()
	return r
}

// runOnce runs c's postStart hook and probes for the run id, and stops the
// run when the hook or a startup or liveness probe fails.
func (p *prober) runOnce(ctx context.Context, c *Container, id procID, st *stateFile) {
	log := p.log.With("container", c.Name, "pid", id.pid)
	write := func(f func(*State)) {
		if err := st.update(f); err != nil {
			log.Error("write probe state", "err", err)
		}
	}
	started := time.Now() // the run's start, as near as the prober sees it
	write(func(s *State) { *s = State{PID: id.pid} })
	t := target(c, id.pid, p.proc)
	if !p.waitContainer(ctx, c, id) {
		return
	}
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		res := probe.ForHook(c.Lifecycle.PostStart).Run(ctx, t, hookTimeout)
		if ctx.Err() != nil {
			return
		}
		if !res.OK {
			p.kill(ctx, log, id, st, "FailedPostStartHook: "+res.Message, grace(p.spec.GracePeriodSeconds, nil))
			return
		}
	}
	var killedBy *corev1.Probe
	var killMsg string
	probes := &corev1.Container{Name: c.Name, StartupProbe: c.StartupProbe, LivenessProbe: c.LivenessProbe,
		ReadinessProbe: c.ReadinessProbe, Ports: c.Ports}
	probe.Run(ctx, probes, t, started, probe.Report{
		Started: func() { write(func(s *State) { s.Started = true }) },
		Ready: func(ready bool) {
			write(func(s *State) { s.Ready, s.Since = ready, now() })
		},
		Kill: func(kind probe.Kind, msg string) {
			killedBy, killMsg = c.LivenessProbe, msg
			if kind == probe.Startup {
				killedBy = c.StartupProbe
			}
		},
		Result: func(kind probe.Kind, r probe.Result) {
			if !r.OK {
				log.Info("probe failed", "probe", string(kind), "message", r.Message)
			}
		},
	})
	if killMsg != "" && ctx.Err() == nil {
		p.kill(ctx, log, id, st, killMsg, grace(p.spec.GracePeriodSeconds, killedBy))
	}
}

// waitContainer waits until the run's container is there to enter: a
// runtime enters the container's namespaces some time after the job
// recorded its pid. Hooks and probes start then. It is false when ctx
// ends first.
func (p *prober) waitContainer(ctx context.Context, c *Container, id procID) bool {
	if len(c.Running) == 0 && c.Nsenter == "" {
		return true
	}
	every := p.poll / 4
	if len(c.Running) > 0 {
		every = p.poll * 2 // a runtime's command: not 20 times a second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	since, warned := time.Now(), false
	for {
		err := entered(ctx, c, id.pid, p.proc)
		if err == nil {
			if warned {
				p.log.Info("container entered", "container", c.Name, "pid", id.pid, "after_seconds", time.Since(since).Seconds())
			}
			return true
		}
		if !warned && time.Since(since) >= enterWarnAfter {
			warned = true
			p.log.Warn("container not entered yet: its hooks and probes wait", "container", c.Name, "pid", id.pid,
				"seconds", time.Since(since).Seconds(), "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// entered tells whether the container of the run of pid can be entered
// (nil), or why not:
// with Running, once that command prints "true" (podman: the container
// runs, not only its podman run); with nsenter, once a process of the run
// is in the image (containerProcess), not only in a namespace of its own.
func entered(ctx context.Context, c *Container, pid int, proc procFS) error {
	if len(c.Running) > 0 {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		code, out, err := runCapped(ctx, execArgv(c.Running, pid, nil), nil)
		switch {
		case err != nil:
			return err
		case code != 0 || strings.TrimSpace(string(out)) != "true":
			return fmt.Errorf("%s: exit code %d, output %q", c.Running[0], code, strings.TrimSpace(string(out)))
		}
		return nil
	}
	_, err := containerProcess(proc, pid, c)
	return err
}

// enterWarnAfter is how long a run's container may stay out of reach
// before the prober says so (its hooks and probes have not begun).
const enterWarnAfter = 30 * time.Second

// now is the time a state records.
func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// kill records why the run is stopped, then stops it.
func (p *prober) kill(ctx context.Context, log *slog.Logger, id procID, st *stateFile, msg string, g time.Duration) {
	if !p.proc.alive(id) {
		// The run ended by itself as its probe failed (a probe of an
		// ending container): its end is its own, not the prober's.
		return
	}
	log.Info("stopping the container", "reason", msg)
	if err := st.update(func(s *State) { s.Killed, s.Ready, s.Since = msg, false, now() }); err != nil {
		log.Error("write probe state", "err", err)
	}
	p.terminate(ctx, id, time.Now().Add(g))
}

// grace is the grace period of a container stopped for a failing probe
// (nil: for another reason): the probe's terminationGracePeriodSeconds,
// else the pod's, within [1, probe.MaxGracePeriodSeconds] seconds: 0 (stop at
// once) still gives SIGTERM a second before SIGKILL, as the job's own stop
// does.
func grace(pod int64, p *corev1.Probe) time.Duration {
	s := pod
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		s = *p.TerminationGracePeriodSeconds
	}
	return time.Duration(min(max(s, 1), probe.MaxGracePeriodSeconds)) * time.Second
}

// terminate sends SIGTERM to id, then SIGKILL at killAt if it is still
// there; it returns once the process is gone, after SIGKILL, or when ctx
// ends.
func (p *prober) terminate(ctx context.Context, id procID, killAt time.Time) {
	p.signal(id, unix.SIGTERM)
	tick := time.NewTicker(p.poll / 2)
	defer tick.Stop()
	for p.proc.alive(id) {
		if !time.Now().Before(killAt) {
			p.signal(id, unix.SIGKILL)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// signal sends sig to id if it is still the process it was.
func (p *prober) signal(id procID, sig unix.Signal) {
	if p.proc.alive(id) {
		_ = unix.Kill(id.pid, sig)
	}
}
