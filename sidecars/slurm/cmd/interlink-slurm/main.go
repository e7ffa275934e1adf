// Command interlink-slurm is the SLURM sidecar: it runs each pod as a batch
// job on the Slurm cluster it can submit to.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/slurm"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-slurm:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := slurm.DefaultConfig()
	log, flags, err := cli.Start("interlink-slurm", "SLURMCONFIGPATH", &cfg)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	s, err := slurm.New(cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	endTracing, err := cli.StartTracing(ctx, cfg.Tracing, "interlink-slurm")
	if err != nil {
		return err
	}
	defer endTracing()
	reg := metrics.New("interlink-slurm")
	if err := s.Register(reg); err != nil {
		return err
	}
	api := sidecars.NewHandler(s, sidecars.HandlerConfig{MaxBodyBytes: cfg.MaxBodyBytes, Logger: log})
	// /metrics needs no credential: Prometheus scrapes it, and its labels
	// carry no pod data.
	return server.RunSidecar(ctx, cfg.ListenAddr(), cfg.Auth, api, map[string]http.Handler{"/metrics": metrics.Handler(reg)}, log)
}
