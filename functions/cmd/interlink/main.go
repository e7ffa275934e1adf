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
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink:", err)
		os.Exit(1)
	}
}

func run() error {
	flags, err := config.ParseFlags("interlink", os.Args[1:], os.Getenv("INTERLINKCONFIGPATH"))
	if err != nil {
		return err
	}
	cfg := functions.DefaultConfig()
	unknown, err := config.Load(&cfg, flags.Path)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel())
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		log.Warn("unknown config keys ignored", "keys", unknown)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
	return g.Wait()
}
