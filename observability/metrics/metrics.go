// Package metrics builds the Prometheus registry every interLink binary
// serves on /metrics: its own registry (never the global one) with the Go
// and process collectors and an interlink_build_info gauge.
package metrics

import (
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// New returns a registry for the named binary.
func New(binary string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "interlink_build_info", Help: "Build information of the binary; always 1."},
		[]string{"binary", "version"})
	info.WithLabelValues(binary, version).Set(1)
	reg.MustRegister(info)
	return reg
}

// Handler serves reg in the Prometheus exposition format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
