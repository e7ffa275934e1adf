package prober

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// Stopping a pod's containers (interlink-prober stop SPEC, from the job's
// trap when the pod is deleted) goes as the kubelet's: each container of
// the Spec whose run is live gets its preStop hook, all in parallel, then
// SIGTERM, then SIGKILL once the pod's grace period since the start of the
// stop has passed. The job stops the containers that have no Spec entry
// (no probe, no hook) itself.

// minGraceAfterPreStop is the time a container always has between its
// preStop hook's end and SIGKILL, as the kubelet gives it.
const minGraceAfterPreStop = 2 * time.Second

// killWait bounds the wait for a process's end after SIGKILL.
const killWait = 10 * time.Second

// stop stops every live container of the Spec and returns once they are
// gone (an error names those still there).
func (p *prober) stop(ctx context.Context) error {
	deadline := time.Now().Add(grace(p.spec.GracePeriodSeconds, nil))
	var wg sync.WaitGroup
	errs := make([]error, len(p.spec.Containers))
	for i := range p.spec.Containers {
		c := &p.spec.Containers[i]
		wg.Go(func() { errs[i] = p.stopOne(ctx, c, deadline) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopOne runs c's preStop hook, if its run is live, then stops it.
func (p *prober) stopOne(ctx context.Context, c *Container, deadline time.Time) error {
	id, ok := p.current(filepath.Join(p.dir, c.Name+pidSuffix))
	if !ok || p.proc.isRun(p.dir, c.Name, id) != nil {
		return nil // not running (its pid file may name another's process)
	}
	if p.ancestor != 0 && !p.proc.descends(id.pid, p.ancestor) {
		return fmt.Errorf("container %s: pid %d is not the job's", c.Name, id.pid)
	}
	log := p.log.With("container", c.Name, "pid", id.pid)
	killAt := deadline
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		res := probe.ForHook(c.Lifecycle.PreStop).Run(ctx, target(c, id.pid, p.proc), time.Until(deadline))
		if !res.OK {
			log.Warn("preStop hook failed", "message", res.Message)
		}
		killAt = later(deadline, time.Now().Add(minGraceAfterPreStop))
	}
	p.terminate(ctx, id, killAt)
	// After SIGKILL, the process still has to go.
	end := time.Now().Add(killWait)
	for p.proc.alive(id) && time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(p.poll / 2)
	}
	if p.proc.alive(id) {
		return fmt.Errorf("container %s: pid %d is still running", c.Name, id.pid)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
