package probe

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kind is a probe's kind.
type Kind string

// Kinds of probe.
const (
	Startup   Kind = "startup"
	Liveness  Kind = "liveness"
	Readiness Kind = "readiness"
)

// Defaults the API server sets on a probe, used when a field is zero.
const (
	DefaultPeriodSeconds    = 10
	DefaultTimeoutSeconds   = 1
	DefaultFailureThreshold = 3
	DefaultSuccessThreshold = 1
)

// MaxGracePeriodSeconds caps a grace period (a pod's
// terminationGracePeriodSeconds, or a probe's) where the sidecars use it:
// the API allows far larger values, which would overflow a time.Duration
// or hold a deleted pod's job for good.
const MaxGracePeriodSeconds = 3600

// unit is a probe's second (shortened by tests).
var unit = time.Second

// Report is told what a container's probes find. Each func may be nil.
type Report struct {
	// Started is called once the startup probe has passed, or at once
	// without one: the container counts as started.
	Started func()
	// Ready is called when readiness changes (it starts false).
	// Without a readiness probe the container is ready once started.
	Ready func(ready bool)
	// Kill is called when the startup or liveness probe fails
	// failureThreshold times in a row: the container must be stopped and
	// started again as its restartPolicy says. Run returns after it.
	Kill func(kind Kind, message string)
	// Result, if set, is told of each try (for events and metrics).
	Result func(kind Kind, r Result)
}

// Validate checks a container's probes and hooks: each names exactly one
// handler this package runs.
func Validate(c *corev1.Container) error {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
	}{{"startupProbe", c.StartupProbe}, {"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}} {
		if p.probe == nil {
			continue
		}
		if err := ForProbe(p.probe).Validate(); err != nil {
			return fieldErr(c.Name, p.name, err)
		}
	}
	if l := c.Lifecycle; l != nil {
		if l.PostStart != nil {
			if err := ForHook(l.PostStart).Validate(); err != nil {
				return fieldErr(c.Name, "lifecycle.postStart", err)
			}
		}
		if l.PreStop != nil {
			if err := ForHook(l.PreStop).Validate(); err != nil {
				return fieldErr(c.Name, "lifecycle.preStop", err)
			}
		}
	}
	return nil
}

type fieldError struct {
	container, field string
	err              error
}

func (e *fieldError) Error() string {
	return "container " + e.container + ": " + e.field + ": " + e.err.Error()
}
func (e *fieldError) Unwrap() error { return e.err }

func fieldErr(c, f string, err error) error { return &fieldError{c, f, err} }

// Has tells whether c has any probe.
func Has(c *corev1.Container) bool {
	return c.StartupProbe != nil || c.LivenessProbe != nil || c.ReadinessProbe != nil
}

// Run runs c's probes against t until ctx ends or a failing startup or
// liveness probe calls r.Kill. The startup probe runs first; liveness and
// readiness only once it has passed. initialDelaySeconds count from start,
// the container's start (a postStart hook's time included, as the
// kubelet counts it).
func Run(ctx context.Context, c *corev1.Container, t Target, start time.Time, r Report) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var killOnce sync.Once
	kill := func(k Kind, msg string) {
		killOnce.Do(func() {
			cancel()
			if r.Kill != nil {
				r.Kill(k, msg)
			}
		})
	}
	result := func(k Kind, res Result) {
		if r.Result != nil {
			r.Result(k, res)
		}
	}
	if p := c.StartupProbe; p != nil {
		passed := false
		loop(ctx, p, t, start, func(res Result, successes, failures int32) bool {
			result(Startup, res)
			if successes >= 1 { // a startup probe's successThreshold is 1
				passed = true
				return false
			}
			if failures >= threshold(p.FailureThreshold, DefaultFailureThreshold) {
				kill(Startup, "Startup probe failed: "+res.Message)
				return false
			}
			return true
		})
		if !passed {
			return
		}
	}
	if r.Started != nil {
		r.Started()
	}
	var wg sync.WaitGroup
	if p := c.ReadinessProbe; p != nil {
		wg.Go(func() {
			ready := false
			loop(ctx, p, t, start, func(res Result, successes, failures int32) bool {
				result(Readiness, res)
				switch {
				case !ready && successes >= threshold(p.SuccessThreshold, DefaultSuccessThreshold):
					ready = true
				case ready && failures >= threshold(p.FailureThreshold, DefaultFailureThreshold):
					ready = false
				default:
					return true
				}
				if r.Ready != nil && ctx.Err() == nil {
					r.Ready(ready)
				}
				return true
			})
		})
	} else if r.Ready != nil && ctx.Err() == nil {
		r.Ready(true)
	}
	if p := c.LivenessProbe; p != nil {
		wg.Go(func() {
			loop(ctx, p, t, start, func(res Result, _, failures int32) bool {
				result(Liveness, res)
				if failures >= threshold(p.FailureThreshold, DefaultFailureThreshold) {
					kill(Liveness, "Liveness probe failed: "+res.Message)
					return false
				}
				return true
			})
		})
	}
	wg.Wait()
}

func threshold(v, def int32) int32 {
	if v < 1 {
		return def
	}
	return v
}

// loop tries p every period from start + initialDelaySeconds, telling
// each result and the counts of successes and failures in a row to next,
// until next returns false or ctx ends.
func loop(ctx context.Context, p *corev1.Probe, t Target, start time.Time, next func(Result, int32, int32) bool) {
	period := time.Duration(threshold(p.PeriodSeconds, DefaultPeriodSeconds)) * unit
	timeout := time.Duration(threshold(p.TimeoutSeconds, DefaultTimeoutSeconds)) * unit
	if !sleepUntil(ctx, start.Add(time.Duration(p.InitialDelaySeconds)*unit)) {
		return
	}
	a := ForProbe(p)
	var successes, failures int32
	for {
		began := time.Now()
		res := a.Run(ctx, t, timeout)
		if ctx.Err() != nil {
			return
		}
		if res.OK {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
		}
		if !next(res, successes, failures) {
			return
		}
		if !sleepUntil(ctx, began.Add(period)) {
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
