package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts authentication outcomes and times verifications.
type Metrics struct {
	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
}

// NewMetrics registers the proxy's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_proxy_auth_requests_total",
			Help: "Requests seen by the authenticating proxy, by outcome (ok, missing, malformed, invalid, unknown_issuer, forbidden)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "interlink_proxy_auth_duration_seconds",
			Help:    "Time to authenticate and authorize a request (cached tokens included).",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1}}),
	}
	for _, o := range []string{OutcomeOK, OutcomeMissing, OutcomeMalformed, OutcomeInvalid, OutcomeUnknownIssuer, OutcomeForbidden} {
		m.outcomes.WithLabelValues(o)
	}
	reg.MustRegister(m.outcomes, m.latency)
	return m
}

// Observe records one outcome; it is the Proxy's Observe hook.
func (m *Metrics) Observe(outcome string, d time.Duration) {
	m.outcomes.WithLabelValues(outcome).Inc()
	m.latency.Observe(d.Seconds())
}
