package docker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the Docker sidecar: Docker API latency and errors by
// operation (never by container or pod), and pod start latency.
type metrics struct {
	apiDuration    *prometheus.HistogramVec
	apiErrors      *prometheus.CounterVec
	createDuration prometheus.Histogram
}

// Register adds the sidecar's metrics to reg.
func (d *Docker) Register(reg prometheus.Registerer) error {
	m := &metrics{
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "interlink_docker_api_duration_seconds", Help: "Duration of Docker Engine API calls, by operation.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlink_docker_api_errors_total", Help: "Docker Engine API calls that failed, by operation.",
		}, []string{"operation"}),
		createDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "interlink_docker_create_duration_seconds", Help: "Time to create a pod: images pulled as needed, data written, containers created.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	for _, op := range []string{"list", "inspect", "create", "start", "stop", "remove", "pull", "info"} {
		m.apiErrors.WithLabelValues(op) // 0 rather than absent
	}
	for _, c := range []prometheus.Collector{m.apiDuration, m.apiErrors, m.createDuration} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	d.metrics.Store(m)
	return nil
}

// observe records one Docker API call that began at start.
func (d *Docker) observe(op string, start time.Time, err error) {
	m := d.metrics.Load()
	if m == nil {
		return
	}
	m.apiDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.apiErrors.WithLabelValues(op).Inc()
	}
}
