package docker

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Docker keeps only a container's current state; a kubelet also reports
// how its last run ended (lastState) after a restart. The sidecar reads
// that from Docker's events (start, oom, die) into a history per
// container, kept in memory: a restarted sidecar knows what Docker still
// has of its recent events (eventsReplay back).

// eventsReplay is how far back the first subscription to Docker's events
// reaches (Docker keeps its last 256 events or so).
const eventsReplay = time.Hour

// history is what the sidecar knows of one container beyond its state.
type history struct {
	// retries counts the starts the drivers retried after Docker could
	// not start the container: restarts Docker's RestartCount does not
	// count.
	retries   int
	startedAt metav1.Time
	oom       bool
	// ends are its last two terminations, the latest last.
	ends []corev1.ContainerStateTerminated

	// What the supervisor (supervise.go) found of the container's runs.
	// run is Docker's StartedAt of the run that started and ready are
	// about: started once postStart is done and the startup probe passed,
	// ready per the readiness probe.
	run            string
	started, ready bool
	// killed says why the sidecar stopped run, once it did.
	killed string
	// backoff, while set, says why the sidecar is about to start again
	// the container it stopped (a failed liveness probe, say).
	backoff string
	// msgs are the termination messages of its last runs, the latest last.
	msgs []runMessage
}

// runMessage is the termination message of one run, by its end.
type runMessage struct {
	finished time.Time
	text     string
}

// maxMessages bounds the runs whose messages are kept.
const maxMessages = 3

// messageOf is the message of the run that ended at finished: the one
// recorded nearest to it, within within (a second for the ends of history,
// whose times are those of Docker's die events, a little after the run's
// end; 0 for Docker's FinishedAt, which the messages are recorded at).
func messageOf(msgs []runMessage, finished time.Time, within time.Duration) (string, bool) {
	best, found := within, -1
	for i, m := range msgs {
		if d := m.finished.Sub(finished).Abs(); d <= best {
			best, found = d, i
		}
	}
	if found < 0 {
		return "", false
	}
	return msgs[found].text, true
}

// addMessage records the termination message of the run of a container
// that ended at finished; a message recorded already stays unless empty.
func (d *Sidecar) addMessage(id string, finished time.Time, text string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.historyOf(id)
	for i := range h.msgs {
		if h.msgs[i].finished.Equal(finished) {
			if h.msgs[i].text == "" {
				h.msgs[i].text = text
			}
			return
		}
	}
	h.msgs = append(h.msgs, runMessage{finished, text})
	if len(h.msgs) > maxMessages {
		h.msgs = h.msgs[len(h.msgs)-maxMessages:]
	}
}

// setProbed records what the supervisor found of a container's run.
func (d *Sidecar) setProbed(id string, update func(h *history)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	update(d.historyOf(id))
}

func (d *Sidecar) historyOf(id string) *history {
	if d.histories == nil {
		d.histories = map[string]*history{}
	}
	h := d.histories[id]
	if h == nil {
		h = &history{}
		d.histories[id] = h
	}
	return h
}

// addRetry counts one start of a container retried by the sidecar.
func (d *Sidecar) addRetry(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.historyOf(id).retries++
}

// retried is the number of starts of a container the sidecar retried.
func (d *Sidecar) retried(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h := d.histories[id]; h != nil {
		return h.retries
	}
	return 0
}

func (d *Sidecar) forget(ids ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		delete(d.histories, id)
		delete(d.usage, id)
	}
}

// historyCopy is a copy of a container's history (empty if none).
func (d *Sidecar) historyCopy(id string) history {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.histories[id]
	if h == nil {
		return history{}
	}
	c := *h
	c.ends = append([]corev1.ContainerStateTerminated(nil), h.ends...)
	c.msgs = append([]runMessage(nil), h.msgs...)
	return c
}

// previousEnd is the latest of ends that came before startedAt.
func previousEnd(ends []corev1.ContainerStateTerminated, startedAt metav1.Time) *corev1.ContainerStateTerminated {
	for i := len(ends) - 1; i >= 0; i-- {
		if !ends[i].FinishedAt.After(startedAt.Time) {
			t := ends[i]
			return &t
		}
	}
	return nil
}

// record notes one event of a pod's container.
func (d *Sidecar) record(m events.Message) {
	at := metav1.NewTime(time.Unix(0, m.TimeNano))
	if m.TimeNano == 0 {
		at = metav1.NewTime(time.Unix(m.Time, 0))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch m.Action {
	case events.ActionDestroy:
		delete(d.histories, m.Actor.ID)
		delete(d.usage, m.Actor.ID)
	case events.ActionStart:
		h := d.historyOf(m.Actor.ID)
		h.startedAt, h.oom = at, false
	case events.ActionOOM:
		h := d.historyOf(m.Actor.ID)
		// Docker may send a run's oom after its die (see oomSettle).
		if n := len(h.ends); n > 0 {
			if last := &h.ends[n-1]; last.ExitCode == 128+9 && last.Reason == "Error" &&
				!h.startedAt.After(last.FinishedAt.Time) && at.Sub(last.FinishedAt.Time) < oomSettle {
				last.Reason = "OOMKilled"
				return
			}
		}
		h.oom = true
	case events.ActionDie:
		h := d.historyOf(m.Actor.ID)
		code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
		t := corev1.ContainerStateTerminated{ExitCode: exitCode(code, 0), Reason: "Completed", StartedAt: h.startedAt, FinishedAt: at}
		switch {
		case h.oom:
			t.Reason = "OOMKilled"
		case code != 0:
			t.Reason = "Error"
		}
		if n := len(h.ends); n > 0 && h.ends[n-1].FinishedAt.Equal(&t.FinishedAt) {
			return // the same event, replayed
		}
		h.ends = append(h.ends, t)
		if len(h.ends) > 2 {
			h.ends = h.ends[len(h.ends)-2:]
		}
	}
}

// watchEvents records the events of the pods' containers until ctx ends,
// subscribing again (from the last event seen) when the stream breaks.
func (d *Sidecar) watchEvents(ctx context.Context) {
	f := client.Filters{}
	f.Add("type", string(events.ContainerEventType))
	f.Add("label", LabelUID)
	for _, a := range []events.Action{events.ActionStart, events.ActionOOM, events.ActionDie, events.ActionDestroy} {
		f.Add("event", string(a))
	}
	since := time.Now().Add(-eventsReplay)
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		res := d.api.Events(sctx, client.EventsListOptions{Since: strconv.FormatInt(since.Unix(), 10), Filters: f})
		err := func() error {
			for {
				select {
				case m := <-res.Messages:
					d.record(m)
					if t := time.Unix(0, m.TimeNano); t.After(since) {
						since = t
					}
				case err := <-res.Err:
					return err
				}
			}
		}()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, context.Canceled) {
			d.log.Debug("docker events stream ended; subscribing again", "err", err)
		}
		if sleep(ctx, time.Second) != nil {
			return
		}
	}
}
