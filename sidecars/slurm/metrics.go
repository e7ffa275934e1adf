package slurm

import (
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the SLURM sidecar. Labels are Slurm command names and job
// states, never pod UIDs.
type metrics struct {
	commandDuration *prometheus.HistogramVec
	commandErrors   *prometheus.CounterVec
	submitDuration  prometheus.Histogram
}

// Register adds the sidecar's metrics to reg: Slurm command latency and
// errors, submission latency, and the jobs it holds by state.
func (s *Sidecar) Register(reg prometheus.Registerer) error {
	m := &metrics{
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "interlink_slurm_command_duration_seconds", Help: "Duration of the Slurm commands the sidecar runs.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"command"}),
		commandErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlink_slurm_command_errors_total", Help: "Slurm commands that failed or did not answer in time.",
		}, []string{"command"}),
		submitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "interlink_slurm_submit_duration_seconds", Help: "Time to submit a pod's job: its data written, sbatch run, the record saved.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
	}
	for _, c := range []string{filepath.Base(s.cfg.SbatchPath), filepath.Base(s.cfg.SqueuePath), filepath.Base(s.cfg.ScancelPath),
		filepath.Base(s.cfg.SacctPath), filepath.Base(s.cfg.SinfoPath)} {
		m.commandErrors.WithLabelValues(c) // 0 rather than absent
	}
	jobs := prometheus.NewDesc("interlink_slurm_jobs", "Jobs the sidecar holds, by state: active (not ended as last seen) or the state they ended in.", []string{"state"}, nil)
	for _, c := range []prometheus.Collector{m.commandDuration, m.commandErrors, m.submitDuration, &jobsCollector{s: s, desc: jobs}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	s.cmd.observe = func(name string, d time.Duration, err error) {
		name = filepath.Base(name)
		m.commandDuration.WithLabelValues(name).Observe(d.Seconds())
		if err != nil {
			m.commandErrors.WithLabelValues(name).Inc()
		}
	}
	s.metrics = m
	return nil
}

// jobsCollector counts the store's records by state at scrape time.
type jobsCollector struct {
	s    *Sidecar
	desc *prometheus.Desc
}

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{"active": 0}
	c.s.store.each(func(r *record) {
		if r.Final == nil {
			counts["active"]++
		} else {
			counts[r.Final.State]++
		}
	})
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}
