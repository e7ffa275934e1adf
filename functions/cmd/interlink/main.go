// Command interlink is the interLink API server: it takes pods from the
// virtual kubelet, behind its embedded authenticating proxy, and routes them
// to sidecars.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/seed-3f807049/interlink/functions"
	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink:", err)
		os.Exit(1)
	}
}

func run() error {
	orig, err := functions.ApplyOriginalFlags() // -interlinkconfigpath, -verbose, -errorsonly, -version
	if err != nil || orig.Version {
		if err == nil {
			fmt.Println("interlink", functions.Version())
		}
		return err
	}
	cfg := functions.DefaultConfig()
	log, flags, err := cli.Start("interlink", "INTERLINKCONFIGPATH", &cfg)
	if err != nil {
		return err
	}
	if orig.DefaultPath != "" {
		log.Info("config file read from the original's default path", "path", orig.DefaultPath)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	endTracing, err := cli.StartTracing(ctx, cfg.Tracing, "interlink")
	if err != nil {
		return err
	}
	defer endTracing()
	app, err := functions.NewApp(ctx, cfg, log)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return app.Run(ctx) })
	g.Go(func() error { return server.Run(ctx, app.Server, app.Handler, log) })
	if app.Metrics != nil {
		g.Go(func() error { return server.Run(ctx, app.MetricsServer, app.Metrics, log) })
	}
	if app.Pprof != nil {
		g.Go(func() error { return server.Run(ctx, app.PprofServer, app.Pprof, log.With("server", "pprof")) })
	}
	return g.Wait()
}
