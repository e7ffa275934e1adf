// Command interlink-sim is the simulated sidecar: no containers, pods go
// through their phases on configurable delays. For scale tests only.
package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-3f807049/interlink/sidecars/serve"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

func main() {
	cfg := sim.DefaultConfig()
	serve.Main("interlink-sim", "INTERLINK_SIM_CONFIG", &cfg, func(_ context.Context, log *slog.Logger) (*serve.Sidecar, error) {
		s, err := sim.New(cfg)
		if err != nil {
			return nil, err
		}
		log.Warn("this is the simulated sidecar: it runs no containers")
		return &serve.Sidecar{
			Plugin: s,
			Register: func(reg prometheus.Registerer) error {
				return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_sim_pods", Help: "Pods the simulated sidecar holds."},
					func() float64 { return float64(s.Len()) }))
			},
			Wrap: s.Handler,
			Close: func() error {
				if err := s.Save(); err != nil {
					log.Error("could not save the jobs", "err", err)
				}
				return nil
			},
		}, nil
	})
}
