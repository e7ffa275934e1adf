package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Paths the sim serves beside the protocol's. They are never faulted.
const (
	// PathStats serves Stats as JSON; ?pods=1 adds the pods held and
	// ?perSecond=1 the calls in each second since the start.
	PathStats = "/sim/stats"
	// PathFaults reads (GET) or sets (POST, a Faults in JSON) the faults
	// injected from now on.
	PathFaults = "/sim/faults"
)

// maxSeconds bounds the per-second call counts kept (one hour).
const maxSeconds = 3600

// Stats counts what the sim did since it started (for fault tests and
// benchmarks: one job per pod, calls per poll, retries over time).
type Stats struct {
	// Started is when the counts began (PerSecond's first second).
	Started time.Time `json:"started"`
	// JobsCreated counts jobs, one per pod UID ever created (and one per
	// duplicate).
	JobsCreated uint64 `json:"jobsCreated"`
	// DuplicateJobs counts jobs made for a pod that had one (OriginalPlugin
	// only: otherwise a create for a pod held returns its job).
	DuplicateJobs uint64 `json:"duplicateJobs"`
	// PodsHeld is the number of jobs held now.
	PodsHeld int `json:"podsHeld"`
	// CreateCalls, DeleteCalls and StatusCalls count the calls that reached
	// the plugin (not those failed by an injected fault); StatusPods the
	// pods they asked about; Pings the empty status calls.
	CreateCalls uint64 `json:"createCalls"`
	DeleteCalls uint64 `json:"deleteCalls"`
	StatusCalls uint64 `json:"statusCalls"`
	StatusPods  uint64 `json:"statusPods"`
	Pings       uint64 `json:"pings"`
	// Faulted counts the calls answered 503 by an injected fault.
	Faulted uint64 `json:"faulted"`
	// MaxInFlight is the most calls of each path served at once.
	MaxInFlight map[string]int `json:"maxInFlight"`
	// PerSecond holds, by path, the calls received in each second since the
	// start, faulted ones included (with ?perSecond=1).
	PerSecond map[string][]uint32 `json:"perSecond,omitempty"`
	// Pods lists the jobs held (with ?pods=1).
	Pods []HeldPod `json:"pods,omitempty"`
}

// HeldPod is one job the sim holds.
type HeldPod struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	JobID     string `json:"jobID"`
	// Created is when the job was made: it starts running PendingDelay
	// later and ends RunDuration after that.
	Created time.Time `json:"created"`
}

// counters are the sim's call counts, kept beside its pods.
type counters struct {
	mu                                            sync.Mutex
	start                                         time.Time
	creates, deletes, statuses, statusPods, pings uint64
	duplicates                                    uint64
	faulted                                       uint64
	inFlight, maxInFlight                         map[string]int
	perSecond                                     map[string][]uint32
	faults                                        Faults
	faultsFrom                                    time.Time
}

func newCounters(now time.Time, f Faults) *counters {
	return &counters{start: now, faultsFrom: now, faults: f, inFlight: map[string]int{}, maxInFlight: map[string]int{}, perSecond: map[string][]uint32{}}
}

func (c *counters) add(field *uint64, n uint64) {
	c.mu.Lock()
	*field += n
	c.mu.Unlock()
}

// Stats returns the current counts.
func (s *Sidecar) Stats() Stats {
	return s.stats(false, false)
}

func (s *Sidecar) stats(pods, perSecond bool) Stats {
	st := Stats{JobsCreated: s.seq.Load(), PodsHeld: s.Len()}
	c := s.counts
	c.mu.Lock()
	st.Started = c.start
	st.CreateCalls, st.DeleteCalls, st.StatusCalls, st.StatusPods, st.Pings = c.creates, c.deletes, c.statuses, c.statusPods, c.pings
	st.Faulted, st.DuplicateJobs = c.faulted, c.duplicates
	st.MaxInFlight = make(map[string]int, len(c.maxInFlight))
	for k, v := range c.maxInFlight {
		st.MaxInFlight[k] = v
	}
	if perSecond {
		st.PerSecond = make(map[string][]uint32, len(c.perSecond))
		for k, v := range c.perSecond {
			st.PerSecond[k] = append([]uint32(nil), v...)
		}
	}
	c.mu.Unlock()
	if pods {
		s.mu.RLock()
		st.Pods = make([]HeldPod, 0, len(s.pods))
		for uid, p := range s.pods {
			st.Pods = append(st.Pods, HeldPod{UID: string(uid), Namespace: p.namespace, Name: p.name, JobID: p.jid, Created: p.created})
		}
		s.mu.RUnlock()
	}
	return st
}

// SetFaults replaces the faults; their Start counts from now.
func (s *Sidecar) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	c := s.counts
	c.mu.Lock()
	c.faults, c.faultsFrom = f, s.now()
	c.mu.Unlock()
	return nil
}

// fault returns the delay and whether to fail a call arriving now.
func (c *counters) fault(now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	f, from := c.faults, c.faultsFrom
	c.mu.Unlock()
	if !f.Active() {
		return 0, false
	}
	begin := from.Add(f.Start.Duration)
	if now.Before(begin) || (f.Duration.Duration > 0 && !now.Before(begin.Add(f.Duration.Duration))) {
		return 0, false
	}
	return f.Delay.Duration, f.ErrorRate > 0 && rand.Float64() < f.ErrorRate //nolint:gosec // fault injection, not security
}

// enter records a call on path arriving at now; leave must follow.
func (c *counters) enter(path string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight[path]++
	if c.inFlight[path] > c.maxInFlight[path] {
		c.maxInFlight[path] = c.inFlight[path]
	}
	sec := int(now.Sub(c.start) / time.Second)
	if sec < 0 || sec >= maxSeconds {
		return
	}
	ps := c.perSecond[path]
	for len(ps) <= sec {
		ps = append(ps, 0)
	}
	ps[sec]++
	c.perSecond[path] = ps
}

func (c *counters) leave(path string) {
	c.mu.Lock()
	c.inFlight[path]--
	c.mu.Unlock()
}

// Handler serves the wire protocol (protocol, from sidecars.NewHandler),
// with the configured faults and call counts, and the sim's own paths.
func (s *Sidecar) Handler(protocol http.Handler) http.Handler {
	mux := http.NewServeMux()
	if s.cfg.OriginalPlugin {
		protocol = withoutVersion(s.originalPing(protocol))
	}
	mux.Handle("/", s.faulty(protocol))
	mux.HandleFunc(PathStats, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.stats(q.Get("pods") != "", q.Get("perSecond") != ""))
	})
	mux.HandleFunc(PathFaults, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			var f Faults
			if err := api.ReadJSON(w, r, 1<<16, &f); err != nil {
				api.WriteError(w, r, err)
				return
			}
			if err := s.SetFaults(f); err != nil {
				api.WriteError(w, r, api.Invalid("%w", err))
				return
			}
		}
		s.counts.mu.Lock()
		f := s.counts.faults
		s.counts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f)
	})
	return mux
}

// faulty counts each call and applies the faults in force when it arrives.
func (s *Sidecar) faulty(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := countedPath(r.URL.Path)
		now := s.now()
		c := s.counts
		c.enter(path, now)
		defer c.leave(path)
		delay, fail := c.fault(now)
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if fail {
			c.add(&c.faulted, 1)
			// Still one of ours, as a failing sidecar built on NewHandler is.
			w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
			api.WriteError(w, r, api.Unavailable("simulated fault: the sidecar is failing"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// countedPath is the key a call is counted under: one of the protocol's
// paths, or "other" for any other (each key keeps up to an hour of
// per-second counts, so paths a client makes up must not become keys).
func countedPath(path string) string {
	switch path {
	case api.PathCreate, api.PathDelete, api.PathStatus, api.PathLogs, api.PathExec, api.PathPing:
		return path
	}
	return "other"
}

// originalPing answers a ping (a status call for no pod) as the kind of
// original plugin OriginalPing names; an object is the PingResponse of
// Ping, as ours.
func (s *Sidecar) originalPing(next http.Handler) http.Handler {
	var body string
	switch s.cfg.OriginalPing {
	case PingArray:
		body = "[]"
	case PingNull:
		body = "null"
	case PingText:
		body = "PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T) NODELIST\nsim*         up   infinite        0/1/0/1 sim1\n"
	default:
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathStatus {
			next.ServeHTTP(w, r)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBodyBytes+1))
		if err != nil {
			api.WriteError(w, r, api.Invalid("read the body: %v", err))
			return
		}
		var pods []json.RawMessage
		if json.Unmarshal(b, &pods) != nil || len(pods) > 0 {
			r.Body = io.NopCloser(bytes.NewReader(b))
			next.ServeHTTP(w, r)
			return
		}
		s.counts.add(&s.counts.pings, 1)
		if s.cfg.OriginalPing == PingText {
			w.Header().Set("Content-Type", "text/plain")
		}
		_, _ = io.WriteString(w, body)
	})
}

// withoutVersion drops the Interlink-Api-Version header from every reply:
// the sim then looks like an original plugin to interLink.
func withoutVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&noVersionWriter{ResponseWriter: w}, r)
	})
}

type noVersionWriter struct{ http.ResponseWriter }

func (w *noVersionWriter) WriteHeader(code int) {
	w.Header().Del(api.HeaderAPIVersion)
	w.ResponseWriter.WriteHeader(code)
}

func (w *noVersionWriter) Write(b []byte) (int, error) {
	w.Header().Del(api.HeaderAPIVersion)
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the streams (logs, exec).
func (w *noVersionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
