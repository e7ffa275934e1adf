package functions

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Metrics are interLink's own: requests by path, code and sidecar, their
// latency, requests in flight, sidecar errors by reason, status batch sizes
// and each sidecar's health. Labels never hold pod names or UIDs.
type Metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	inflight      prometheus.Gauge
	sidecarErrors *prometheus.CounterVec
	batchSize     *prometheus.HistogramVec
	sidecarUp     *prometheus.GaugeVec
	streams       *prometheus.GaugeVec
	streamBytesC  *prometheus.CounterVec
	streamEnds    *prometheus.CounterVec
}

// sidecarReasons are the reasons counted for each sidecar from the start,
// so that their rates are 0 rather than absent.
var sidecarReasons = []api.Reason{api.ReasonUnavailable, api.ReasonTimeout, api.ReasonNotFound, api.ReasonInvalid, api.ReasonInternal}

// NewMetrics registers interLink's metrics for the named sidecars.
func NewMetrics(reg prometheus.Registerer, sidecarNames []string) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_http_requests_total",
			Help: "Requests to the interLink API by path, status code and sidecar (empty when none or several)."}, []string{"path", "code", "sidecar"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "interlink_http_request_duration_seconds",
			Help: "Latency of the interLink API by path (streamed logs and exec: until the stream ends).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"path"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "interlink_http_requests_in_flight",
			Help: "Requests being served by the interLink API."}),
		sidecarErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_sidecar_errors_total",
			Help: "Failed calls from interLink to a sidecar, by reason."}, []string{"sidecar", "reason"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "interlink_status_batch_size",
			Help: "Pods per status call sent to a sidecar.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}, []string{"sidecar"}),
		sidecarUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "interlink_sidecar_up",
			Help: "1 when the sidecar answered interLink's last ping, else 0."}, []string{"sidecar"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "interlink_streams_active",
			Help: "Streams (exec -it, attach, port-forward) open through interLink, by kind."}, []string{"kind"}),
		streamBytesC: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_stream_bytes_total",
			Help: "Bytes carried by streams, by kind and direction (in: towards the sidecar)."}, []string{"kind", "direction"}),
		streamEnds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_streams_ended_total",
			Help: "Streams ended, by kind and reason (ok for a close by either side)."}, []string{"kind", "reason"}),
	}
	for _, s := range sidecarNames {
		for _, r := range sidecarReasons {
			m.sidecarErrors.WithLabelValues(s, string(r))
		}
	}
	reg.MustRegister(m.requests, m.duration, m.inflight, m.sidecarErrors, m.batchSize, m.sidecarUp, m.streams, m.streamBytesC, m.streamEnds)
	return m
}

// requestInfo is filled in by a handler: the sidecar the request went to.
type requestInfo struct{ sidecar string }

type infoKey struct{}

// noteSidecar records which sidecar served the request; several sidecars
// leave the label empty.
func noteSidecar(ctx context.Context, name string) {
	if info, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		switch info.sidecar {
		case "", name:
			info.sidecar = name
		default:
			info.sidecar = "*"
		}
	}
}

// sidecarError counts a failed call to a sidecar.
func (m *Metrics) sidecarError(name string, err error) {
	if m != nil && err != nil {
		m.sidecarErrors.WithLabelValues(name, string(api.ReasonOf(err))).Inc()
	}
}

func (m *Metrics) batch(name string, n int) {
	if m != nil {
		m.batchSize.WithLabelValues(name).Observe(float64(n))
	}
}

func (m *Metrics) up(name string, ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.sidecarUp.WithLabelValues(name).Set(v)
}

// streamStarted counts an open stream until the returned func is called.
func (m *Metrics) streamStarted(kind string) func() {
	if m == nil {
		return func() {}
	}
	g := m.streams.WithLabelValues(kind)
	g.Inc()
	return g.Dec
}

// streamBytes returns the counter of a stream's bytes by direction.
func (m *Metrics) streamBytes(kind string) func(dir string, n int) {
	if m == nil {
		return nil
	}
	in, out := m.streamBytesC.WithLabelValues(kind, "in"), m.streamBytesC.WithLabelValues(kind, "out")
	return func(dir string, n int) {
		if dir == "in" {
			in.Add(float64(n))
		} else {
			out.Add(float64(n))
		}
	}
}

// streamEnded counts a stream's end by its reason.
func (m *Metrics) streamEnded(kind string, err error) {
	if m == nil {
		return
	}
	reason := "ok"
	if err != nil {
		reason = string(api.ReasonOf(err))
	}
	m.streamEnds.WithLabelValues(kind, reason).Inc()
}

// instrument wraps one route's handler.
func (m *Metrics) instrument(path string, next http.HandlerFunc) http.HandlerFunc {
	if m == nil {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		m.inflight.Inc()
		defer m.inflight.Dec()
		start := time.Now()
		info := &requestInfo{}
		rw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		next(rw, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
		sc := info.sidecar
		if sc == "*" {
			sc = ""
		}
		m.requests.WithLabelValues(path, strconv.Itoa(rw.code), sc).Inc()
		m.duration.WithLabelValues(path).Observe(time.Since(start).Seconds())
	}
}

// codeWriter remembers the status code; Unwrap lets http.ResponseController
// reach the connection (flushes of streamed logs).
type codeWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (c *codeWriter) WriteHeader(code int) {
	if !c.wrote {
		c.code, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(b []byte) (int, error) {
	c.wrote = true
	return c.ResponseWriter.Write(b)
}

func (c *codeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
