package docker

import (
	"context"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// Bounds of the supervision of a container's runs.
const (
	// pollInterval is how often a container that Docker is about to
	// start again is looked at.
	pollInterval = 250 * time.Millisecond
	// postStartTimeout bounds a postStart hook (the kubelet sets none; the
	// end of the run ends it too).
	postStartTimeout = 10 * time.Minute
	// minKillGrace is the least time a container stopped by the sidecar is
	// given to stop after SIGTERM, as the kubelet gives 2 s.
	minKillGrace = 2
	// backoffReset: a run that lasted this long resets the backoff of the
	// restarts the sidecar makes after a failed probe or hook.
	backoffReset = 10 * time.Minute
)

// supervise follows an app container's runs until ctx ends or Docker is
// done with it: while a run goes on it runs the postStart hook, then the
// probes; when the liveness or startup probe or the hook fails it stops
// the run and starts the container again as the pod's restartPolicy says
// (Docker does not restart a container stopped through its API); at each
// end it records the run's termination message. fresh tells that the
// container's first run was started by the driver (a run already going on
// when the sidecar started had its postStart hook run before).
func (d *Sidecar) supervise(ctx context.Context, c container.Summary, fresh bool) error {
	l := lifecycleOf(c.Labels)
	last, kills := "", 0
	for {
		w := d.waitNextExit(ctx, c.ID)
		in, err := d.inspect(ctx, c.ID)
		if err != nil {
			w.stop()
			if api.ReasonOf(err) == api.ReasonNotFound {
				return nil
			}
			return err
		}
		in.Config = withLabels(in.Config, c.Labels)
		st := in.State
		switch {
		case st.Status == container.StateRunning && st.StartedAt != last:
			hook := fresh || last != ""
			last = st.StartedAt
			why, err := d.superviseRun(ctx, in, l, w, hook)
			if err != nil {
				return err
			}
			if err := d.afterRun(ctx, c, l, last, why, &kills); err != nil {
				return err
			}
		case st.Status == container.StateRunning:
			if err := w.await(ctx); err != nil {
				return err
			}
		case st.Status == container.StateRestarting:
			w.stop()
			if err := sleep(ctx, pollInterval); err != nil {
				return err
			}
		default: // exited, dead or never started: Docker does not start it again
			w.stop()
			if !started(st) {
				return nil
			}
			if h := d.historyCopy(c.ID); h.run == st.StartedAt && h.killed != "" && restartsAfter(in.HostConfig, st.ExitCode) {
				// The sidecar stopped this run (a failed probe or hook),
				// and an error broke off its supervision (the driver runs
				// it again) before the restart: restart it now.
				last = st.StartedAt
				if err := d.afterRun(ctx, c, l, last, h.killed, &kills); err != nil {
					return err
				}
				continue
			}
			if st.Error != "" && restartsAfter(in.HostConfig, st.ExitCode) {
				// Docker failed to start it again and gave up: at its own
				// restart it may start a pod's container before the pod's
				// holder ("cannot join network of a non running
				// container"). Started again here, with the backoff.
				last = st.StartedAt
				if err := d.afterRun(ctx, c, l, last, "start failed: "+st.Error, &kills); err != nil {
					return err
				}
				continue
			}
			d.recordEnd(ctx, in, l, "")
			return nil
		}
	}
}

func withLabels(cfg *container.Config, labels map[string]string) *container.Config {
	if cfg == nil {
		cfg = &container.Config{}
	}
	if cfg.Labels == nil {
		cfg.Labels = labels
	}
	return cfg
}

// superviseRun runs the postStart hook (with hook) and the probes of the
// run in tells until it ends (w) or they fail: the run is then stopped, and
// why says what failed. An error is the end of ctx.
func (d *Sidecar) superviseRun(ctx context.Context, in container.InspectResponse, l lifecycle, w *exitWait, hook bool) (string, error) {
	run := in.State.StartedAt
	d.setProbed(in.ID, func(h *history) { h.run, h.started, h.ready, h.killed, h.backoff = run, false, false, "", "" })
	rctx, cancel := context.WithCancel(ctx)
	killed := make(chan stopCause, 1)
	var wg sync.WaitGroup
	wg.Go(func() { d.probeRun(rctx, in, l, hook, killed) })
	defer func() { cancel(); wg.Wait() }()
	exited := make(chan error, 1)
	go func() { exited <- w.await(ctx) }()
	select {
	case err := <-exited:
		return "", err
	case k := <-killed:
		cancel()
		d.setProbed(in.ID, func(h *history) {
			if h.run == run {
				h.killed = k.why
			}
		})
		d.log.Info("stopping a container", "pod", in.Config.Labels[LabelName], "namespace", in.Config.Labels[LabelNamespace],
			"container", in.Config.Labels[LabelContainer], "why", k.why)
		_ = d.stopRun(ctx, in.ID, l, l.killGrace(k.kind), true)
		return k.why, <-exited
	}
}

// stopCause is why the sidecar stops a run: the probe that failed (kind,
// empty for the postStart hook) and its message.
type stopCause struct {
	kind probe.Kind
	why  string
}

// probeRun runs the hook and probes of one run, telling the sidecar's
// state what they find; a failure that kills the run is sent on killed.
func (d *Sidecar) probeRun(ctx context.Context, in container.InspectResponse, l lifecycle, hook bool, killed chan<- stopCause) {
	id, run := in.ID, in.State.StartedAt
	update := func(f func(h *history)) {
		d.setProbed(id, func(h *history) {
			if h.run == run {
				f(h)
			}
		})
	}
	t := d.target(ctx, in, l)
	if h := l.postStart(); h != nil && hook {
		res := probe.ForHook(h).Run(ctx, t, postStartTimeout)
		if ctx.Err() != nil {
			return
		}
		if !res.OK {
			killed <- stopCause{why: "FailedPostStartHook: " + res.Message}
			return
		}
	}
	started, err := time.Parse(time.RFC3339Nano, in.State.StartedAt)
	if err != nil {
		started = time.Now()
	}
	probe.Run(ctx, l.container(in.Config.Labels[LabelContainer]), t, started, probe.Report{
		Started: func() { update(func(h *history) { h.started = true }) },
		Ready:   func(ready bool) { update(func(h *history) { h.ready = ready }) },
		Kill: func(k probe.Kind, msg string) {
			select {
			case killed <- stopCause{kind: k, why: msg}:
			default:
			}
		},
	})
}

// stopRun stops a running container as the kubelet kills one: its preStop
// hook (unless the grace period is 0), then SIGTERM, SIGKILL at the end of
// the grace period (grace seconds, within [0, probe.MaxGracePeriodSeconds]) counted from the
// hook's start; a kill by the sidecar (not a deletion) gives at least
// minKillGrace after SIGTERM.
func (d *Sidecar) stopRun(ctx context.Context, id string, l lifecycle, grace int64, kill bool) error {
	g := min(max(grace, 0), probe.MaxGracePeriodSeconds)
	deadline := time.Now().Add(time.Duration(g) * time.Second)
	if h := l.preStop(); h != nil && g > 0 {
		in, err := d.inspect(ctx, id)
		if err == nil && in.State.Status == container.StateRunning {
			hctx, cancel := context.WithDeadline(ctx, deadline)
			res := probe.ForHook(h).Run(hctx, d.target(hctx, in, l), time.Until(deadline))
			cancel()
			if !res.OK {
				d.log.Info("preStop hook failed", "container", in.Config.Labels[LabelContainer], "err", res.Message)
			}
		}
	}
	left := max(int(time.Until(deadline)/time.Second), 0)
	if kill {
		left = max(left, minKillGrace)
	}
	t0 := time.Now()
	_, err := d.api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &left})
	d.observe("stop", t0, err)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return engineError("stop container", err)
	}
	return nil
}

// afterRun follows the end of a run (run, Docker's StartedAt) of c: its
// termination message is recorded, unless Docker started the container
// again already; a run the sidecar stopped (why) is started again when the
// pod's restartPolicy says, after a backoff, and counted as a restart.
func (d *Sidecar) afterRun(ctx context.Context, c container.Summary, l lifecycle, run, why string, kills *int) error {
	id, name := c.ID, c.Labels[LabelContainer]
	in, err := d.inspect(ctx, id)
	if err != nil {
		return err
	}
	in.Config = withLabels(in.Config, c.Labels)
	if in.State.StartedAt != run {
		// Docker started it again already: the run's message is lost, and
		// its file is emptied before the new run's hooks, so that the new
		// run does not inherit it (a message the new run wrote in its
		// first moments is lost with it).
		d.clearMessage(in.Config.Labels)
		return nil
	}
	if in.State.Status == container.StateRunning {
		return nil
	}
	d.recordEnd(ctx, in, l, why)
	if why == "" || !restartsAfter(in.HostConfig, in.State.ExitCode) {
		return nil
	}
	if parseTime(in.State.FinishedAt).Sub(parseTime(run).Time) > backoffReset {
		*kills = 0
	}
	d.setProbed(id, func(h *history) { h.backoff = why })
	defer d.setProbed(id, func(h *history) { h.backoff = "" })
	if err := sleep(ctx, backoff(*kills)); err != nil {
		return err
	}
	*kills++
	d.addRetry(id)
	return d.start(ctx, id, name)
}

// restartsAfter tells whether a container that exited with code is started
// again under its restart policy.
func restartsAfter(h *container.HostConfig, code int) bool {
	switch h.RestartPolicy.Name {
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		return true
	case container.RestartPolicyOnFailure:
		return code != 0
	}
	return false
}

// recordEnd records the termination message of the run that in tells has
// ended (why, if it wrote none), unless recorded already; the run's file
// is then emptied for the next run, as the kubelet gives each run a new
// one.
func (d *Sidecar) recordEnd(ctx context.Context, in container.InspectResponse, l lifecycle, why string) {
	finished := parseTime(in.State.FinishedAt).Time
	h := d.historyCopy(in.ID)
	if why == "" && h.run == in.State.StartedAt {
		why = h.killed
	}
	if msg, ok := messageOf(h.msgs, finished, 0); ok {
		if msg == "" && why != "" {
			d.addMessage(in.ID, finished, why)
		}
		return
	}
	msg := d.terminationMessage(ctx, in, l)
	if msg == "" {
		msg = why
	}
	d.addMessage(in.ID, finished, msg)
	d.clearMessage(in.Config.Labels)
}

// clearMessage empties the termination message file of the container that
// labels tell, for its next run.
func (d *Sidecar) clearMessage(labels map[string]string) {
	name := path.Join(labels[LabelNamespace]+"-"+labels[LabelUID], terminationDir, labels[LabelContainer])
	if f, err := d.data.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		_ = f.Close()
	}
}

// target is where the probes and hooks of a run act: commands run in the
// container through Docker's exec API (their output capped), network
// handlers reach the address of the pod's network namespace.
func (d *Sidecar) target(ctx context.Context, in container.InspectResponse, l lifecycle) probe.Target {
	name := in.Config.Labels[LabelContainer]
	t := probe.Target{Ports: l.Ports, Host: noAddress}
	t.Exec = func(ctx context.Context, cmd []string) (int, []byte, error) {
		var out capped
		code, err := d.execIn(ctx, in.ID, name, cmd, &out)
		return code, out.b, err
	}
	if needsAddress(l) {
		t.Host = d.podAddress(ctx, in)
	}
	return t
}

// noAddress is the host of network handlers when the pod has no address
// the sidecar knows: no valid host name, so that no connection is tried
// (an empty host would reach the sidecar's own host).
const noAddress = "pod-address-unknown!"

func needsAddress(l lifecycle) bool {
	acts := []probe.Action{}
	for _, p := range []*corev1.Probe{l.Startup, l.Liveness, l.Readiness} {
		if p != nil {
			acts = append(acts, probe.ForProbe(p))
		}
	}
	for _, h := range []*corev1.LifecycleHandler{l.postStart(), l.preStop()} {
		if h != nil {
			acts = append(acts, probe.ForHook(h))
		}
	}
	for _, a := range acts {
		if a.HTTPGet != nil || a.TCPSocket != nil || a.GRPC != nil {
			return true
		}
	}
	return false
}

// podAddress is the address at which the sidecar reaches the network
// namespace of the container in: the IP of its pod's holder (the pause
// container, or itself) on its Docker network, or with hostNetwork the
// Docker host's own.
func (d *Sidecar) podAddress(ctx context.Context, in container.InspectResponse) string {
	holder := in
	mode := container.NetworkMode("")
	if in.HostConfig != nil {
		mode = in.HostConfig.NetworkMode
	}
	if mode.IsContainer() {
		h, err := d.inspect(ctx, mode.ConnectedContainer())
		if err != nil {
			return noAddress
		}
		holder = h
		if holder.HostConfig != nil {
			mode = holder.HostConfig.NetworkMode
		}
	}
	if mode.IsHost() {
		return d.dockerHostAddress()
	}
	if n := holder.NetworkSettings; n != nil {
		if ip := endpointIP(n.Networks); ip != "" {
			return ip
		}
	}
	return noAddress
}

// dockerHostAddress is the Docker host's address as the sidecar reaches
// it: loopback when the engine is on a local socket.
func (d *Sidecar) dockerHostAddress() string {
	u, err := url.Parse(d.cfg.DockerHost)
	if err != nil || u.Scheme == "unix" || u.Scheme == "npipe" {
		return "127.0.0.1"
	}
	if h, _, err := net.SplitHostPort(u.Host); err == nil {
		return h
	}
	return strings.TrimSuffix(u.Host, ":")
}

// capped keeps the first probe.MaxOutputBytes written to it.
type capped struct{ b []byte }

func (c *capped) Write(p []byte) (int, error) {
	if room := probe.MaxOutputBytes - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
