// Command interlink-proxy is interLink's authenticating proxy on its own, in
// front of any upstream URL (an original interLink, say): the same checks as
// the proxy embedded in interlink.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/proxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-proxy:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := proxy.DefaultStandaloneConfig()
	log, flags, err := cli.Start("interlink-proxy", "INTERLINK_PROXY_CONFIG", &cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	endTracing, err := cli.StartTracing(ctx, cfg.Tracing, "interlink-proxy")
	if err != nil {
		return err
	}
	defer endTracing()
	up, err := proxy.NewUpstream(cfg.Upstream, cfg.MaxBodyBytes, log)
	if err != nil {
		return err
	}
	reg := metrics.New("interlink-proxy")
	mux := http.NewServeMux()
	mux.Handle("/", up)
	mux.Handle("/metrics", metrics.Handler(reg)) // behind the proxy's authentication
	p, err := proxy.New(ctx, cfg.Auth, mux, log)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	p.Observe = proxy.NewMetrics(reg).Observe
	srv := server.Config{Listen: cfg.Listen, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, ClientCAFile: cfg.ClientCAFile,
		ClientCertOptional: cfg.Auth.ClientCerts && (len(cfg.Auth.Issuers) > 0 || cfg.Auth.StaticTokensFile != "")}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(ctx) })
	g.Go(func() error { return server.Run(ctx, srv, p, log) })
	return g.Wait()
}
