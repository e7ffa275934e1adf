// Command interlink-sim is the simulated sidecar: no containers, pods go
// through their phases on configurable delays. For scale tests only.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := sim.DefaultConfig()
	log, flags, err := cli.Start("interlink-sim", "INTERLINK_SIM_CONFIG", &cfg)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	s, err := sim.New(cfg)
	if err != nil {
		return err
	}
	log.Warn("this is the simulated sidecar: it runs no containers")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	endTracing, err := cli.StartTracing(ctx, cfg.Tracing, "interlink-sim")
	if err != nil {
		return err
	}
	defer endTracing()
	reg := metrics.New("interlink-sim")
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_sim_pods", Help: "Pods the simulated sidecar holds."},
		func() float64 { return float64(s.Len()) }))
	mux := http.NewServeMux()
	mux.Handle("/", s.Handler(sidecars.NewHandler(s, sidecars.HandlerConfig{MaxBodyBytes: cfg.MaxBodyBytes, Logger: log})))
	mux.Handle("/metrics", metrics.Handler(reg))
	err = server.Run(ctx, server.Config{Listen: cfg.Listen}, mux, log)
	if serr := s.Save(); serr != nil {
		log.Error("could not save the jobs", "err", serr)
	}
	return err
}
