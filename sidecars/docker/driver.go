package docker

import (
	"context"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// Backoff of the starts the sidecar retries itself: a container that
// Docker could not start (its command is missing, say) in a pod whose
// restartPolicy restarts it. Docker restarts the containers that exit.
const (
	// startBackoff is the wait before the first retry; it doubles.
	startBackoff = time.Second
	// maxStartBackoff bounds the wait between two retries.
	maxStartBackoff = time.Minute
)

// driverRun is one pod's driver: its cancel, and done closed at its end.
type driverRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startDriver runs drive for uid unless it already runs.
func (d *Sidecar) startDriver(uid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.driving[uid]; ok || d.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	run := &driverRun{cancel: cancel, done: make(chan struct{})}
	d.driving[uid] = run
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer func() {
			d.mu.Lock()
			delete(d.driving, uid)
			d.mu.Unlock()
			cancel()
			close(run.done)
		}()
		for attempt := 0; ; attempt++ {
			err := d.drive(ctx, uid)
			if err == nil || ctx.Err() != nil {
				return
			}
			d.log.Warn("pod driver failed; retrying", "uid", uid, "err", err)
			if sleep(ctx, min(time.Duration(attempt+1)*time.Second, 30*time.Second)) != nil {
				return
			}
		}
	}()
}

// stopDriver stops the driver of uid, its probes and hooks with it, and
// waits for its end (or for the end of ctx).
func (d *Sidecar) stopDriver(ctx context.Context, uid string) {
	d.mu.Lock()
	run := d.driving[uid]
	d.mu.Unlock()
	if run == nil {
		return
	}
	run.cancel()
	select {
	case <-run.done:
	case <-ctx.Done():
	}
}

// drive runs the pod's init containers in order (the first that fails for
// good stops the pod from starting), then starts its other containers. It
// is resumable: what already ran is not run again.
func (d *Sidecar) drive(ctx context.Context, uid string) error {
	pods, err := d.pods(ctx, uid)
	if err != nil {
		return err
	}
	cs := pods[uid]
	for _, c := range cs {
		if c.Labels[LabelRole] != roleInit {
			continue
		}
		ok, err := d.runInit(ctx, c)
		if err != nil {
			return err
		}
		if !ok {
			return nil // the pod failed; its status says so
		}
	}
	// Each app container is started if it was not, then supervised
	// (supervise.go) while it runs: its hooks, probes and termination
	// messages.
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range cs {
		if c.Labels[LabelRole] != roleApp {
			continue
		}
		g.Go(func() error {
			fresh := c.State == container.StateCreated
			if fresh {
				if err := d.startApp(gctx, c); err != nil {
					return err
				}
			}
			return d.supervise(gctx, c, fresh)
		})
	}
	return g.Wait()
}

// runInit runs an init container to its end, unless it ran, and tells
// whether it succeeded. One that failed (exited with another code than 0,
// or Docker could not start it) is run again when its pod's restartPolicy
// says so (Docker restarts it after an exit: its restart policy is
// on-failure; the sidecar after a failed start, with backoff); otherwise
// it failed for good (false), and so did its pod.
func (d *Sidecar) runInit(ctx context.Context, c container.Summary) (bool, error) {
	name := c.Labels[LabelContainer]
	for failures := 0; ; {
		// The wait is in place before the state is read: no exit is missed.
		w := d.waitNextExit(ctx, c.ID)
		in, err := d.inspect(ctx, c.ID)
		if err != nil {
			w.stop()
			return false, err
		}
		st, restart := in.State, restarts(in.HostConfig)
		if st.Status == container.StateRunning || st.Status == container.StateRestarting {
			if err := w.await(ctx); err != nil {
				return false, engineError("wait for init container "+name, err)
			}
			continue
		}
		w.stop()
		switch ran, failedStart := started(st), startFailed(st); {
		case ran && st.ExitCode == 0:
			return true, nil
		case (ran || failedStart) && !restart:
			return false, nil
		case ran || failedStart:
			if err := sleep(ctx, backoff(failures)); err != nil {
				return false, err
			}
			failures++
			d.addRetry(c.ID)
		}
		if err := d.start(ctx, c.ID, name); err != nil {
			return false, err
		}
	}
}

// startApp starts a created app container. When Docker cannot start it
// and its pod's restartPolicy restarts it, the start is retried with
// backoff, each retry counted as a restart; otherwise its status tells the
// failure (ContainerCannotRun).
func (d *Sidecar) startApp(ctx context.Context, c container.Summary) error {
	name := c.Labels[LabelContainer]
	for failures := 0; ; {
		in, err := d.inspect(ctx, c.ID)
		if err != nil {
			return err
		}
		st := in.State
		switch {
		case st.Status != container.StateCreated:
			return nil // started: Docker restarts it as its policy says
		case !startFailed(st):
		case !restarts(in.HostConfig):
			return nil
		default:
			if err := sleep(ctx, backoff(failures)); err != nil {
				return err
			}
			failures++
			d.addRetry(c.ID)
		}
		if err := d.start(ctx, c.ID, name); err != nil {
			return err
		}
	}
}

// start starts a container. A start that Docker refuses for the
// container's own sake (its command missing or not executable, a mount
// that failed) is no error: the container's state records it (startFailed)
// and its caller reads it. Other errors are.
func (d *Sidecar) start(ctx context.Context, id, name string) error {
	t0 := time.Now()
	_, err := d.api.ContainerStart(ctx, id, client.ContainerStartOptions{})
	d.observe("start", t0, err)
	if err == nil {
		return nil
	}
	if in, ierr := d.inspect(ctx, id); ierr == nil && startFailed(in.State) {
		d.log.Info("docker could not start a container", "container", name, "exit_code", in.State.ExitCode, "err", in.State.Error)
		return nil
	}
	return engineError("start container "+name, err)
}

func (d *Sidecar) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	t0 := time.Now()
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	d.observe("inspect", t0, err)
	if err != nil {
		return container.InspectResponse{}, engineError("inspect container", err)
	}
	if res.Container.State == nil {
		res.Container.State = &container.State{}
	}
	if res.Container.HostConfig == nil {
		res.Container.HostConfig = &container.HostConfig{}
	}
	return res.Container, nil
}

// started tells whether the container ever ran.
func started(s *container.State) bool {
	t := parseTime(s.StartedAt)
	return !t.IsZero()
}

// startFailed tells whether Docker failed to start the container (it stays
// created, with the error and an exit code: 127 for a command not found,
// 126 for one not executable, 128 otherwise).
func startFailed(s *container.State) bool {
	return s.Error != "" && s.Status == container.StateCreated
}

// restarts tells whether Docker restarts the container after it exits: so
// does the sidecar after a failed start.
func restarts(h *container.HostConfig) bool {
	switch h.RestartPolicy.Name {
	case container.RestartPolicyAlways, container.RestartPolicyOnFailure, container.RestartPolicyUnlessStopped:
		return true
	}
	return false
}

func backoff(failures int) time.Duration {
	b := startBackoff
	for range failures {
		if b *= 2; b >= maxStartBackoff {
			return maxStartBackoff
		}
	}
	return b
}

// sleep waits for d or the end of ctx (its error then).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// exitWait is a wait for a container's next exit, registered by Docker.
type exitWait struct {
	cancel context.CancelFunc
	res    client.ContainerWaitResult
}

func (d *Sidecar) waitNextExit(ctx context.Context, id string) *exitWait {
	wctx, cancel := context.WithCancel(ctx)
	return &exitWait{cancel: cancel, res: d.api.ContainerWait(wctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})}
}

// await waits for the exit (or for ctx, then the wait's end).
func (w *exitWait) await(ctx context.Context) error {
	defer w.cancel()
	select {
	case <-w.res.Result:
		return nil
	case err := <-w.res.Error:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
}

// stop ends the wait; the client's goroutine ends with it.
func (w *exitWait) stop() {
	w.cancel()
	select {
	case <-w.res.Result:
	case err := <-w.res.Error:
		_ = err // the wait's end, as asked
	}
}
