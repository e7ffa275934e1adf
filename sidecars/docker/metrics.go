package docker

import (
	"context"
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
func (d *Sidecar) Register(reg prometheus.Registerer) error {
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
	for _, op := range []string{"list", "inspect", "create", "start", "stop", "remove", "pull", "info", "stats"} {
		m.apiErrors.WithLabelValues(op) // 0 rather than absent
	}
	containers := &containersCollector{d: d, desc: prometheus.NewDesc("interlink_docker_containers",
		"Containers of the sidecar's pods on the Docker host, by role (pause, init, app) and state (created, running, exited, ...).",
		[]string{"role", "state"}, nil)}
	for _, c := range []prometheus.Collector{m.apiDuration, m.apiErrors, m.createDuration, containers} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	d.metrics.Store(m)
	return nil
}

// observe records one Docker API call that began at start.
func (d *Sidecar) observe(op string, start time.Time, err error) {
	m := d.metrics.Load()
	if m == nil {
		return
	}
	m.apiDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.apiErrors.WithLabelValues(op).Inc()
	}
}

// containersCollector counts the pods' containers at scrape time (one list
// call of the Docker API).
type containersCollector struct {
	d    *Sidecar
	desc *prometheus.Desc
}

func (c *containersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *containersCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.d.ctx, 5*time.Second)
	defer cancel()
	pods, err := c.d.pods(ctx, "")
	if err != nil {
		return // the list error is counted in interlink_docker_api_errors_total
	}
	counts := map[[2]string]int{{roleApp, "running"}: 0}
	for _, cs := range pods {
		for _, ct := range cs {
			counts[[2]string{ct.Labels[LabelRole], string(ct.State)}]++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
