// Command interlink-token-refresher keeps the virtual kubelet's token file
// fresh with tokens from an OAuth2 issuer (client_credentials or
// refresh_token grant). It runs beside the VK, for example as a sidecar
// container sharing the token file's volume.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/vk/token"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-token-refresher:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := token.DefaultConfig()
	log, flags, err := cli.Start("interlink-token-refresher", "INTERLINK_TOKEN_CONFIG", &cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := token.New(ctx, cfg, log)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	if cfg.MetricsListen == "" {
		return r.Run(ctx)
	}
	reg := metrics.New("interlink-token-refresher")
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_token_refreshes_total",
		Help: "Token refreshes by outcome (ok, error)."}, []string{"outcome"})
	expiry := prometheus.NewGauge(prometheus.GaugeOpts{Name: "interlink_token_expiry_timestamp_seconds",
		Help: "Unix time when the token last written expires."})
	reg.MustRegister(refreshes, expiry)
	refreshes.WithLabelValues("error")
	r.Wrote = func(t time.Time) { refreshes.WithLabelValues("ok").Inc(); expiry.Set(float64(t.Unix())) }
	r.Failed = func(error) { refreshes.WithLabelValues("error").Inc() }
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Run(ctx) })
	g.Go(func() error {
		return server.Run(ctx, server.Config{Listen: cfg.MetricsListen}, metrics.Handler(reg), log)
	})
	return g.Wait()
}
