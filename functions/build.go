package functions

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/observability/tracing"
	"github.com/seed-3f807049/interlink/proxy"
	"github.com/seed-3f807049/interlink/sidecars"
)

// FromConfig builds the handler and the server settings of a validated
// Config: one reusing client per sidecar. Its metrics go to reg (nil: none).
func FromConfig(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Handler, server.Config, error) {
	listen, err := cfg.Listen()
	if err != nil {
		return nil, server.Config{}, err
	}
	srv := server.Config{Listen: listen}
	if cfg.TLS.Enabled {
		srv.CertFile, srv.KeyFile, srv.ClientCAFile = cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.CACertFile
		// With other credentials accepted too, a certificate is optional at
		// the TLS layer; the proxy decides.
		srv.ClientCertOptional = cfg.Auth.ClientCerts && (len(cfg.Auth.Issuers) > 0 || cfg.Auth.StaticTokensFile != "")
	}
	var tlsCfg *tls.Config
	if cfg.SidecarCAFile != "" {
		pem, err := os.ReadFile(cfg.SidecarCAFile)
		if err != nil {
			return nil, srv, fmt.Errorf("read SidecarCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, srv, fmt.Errorf("SidecarCAFile %s holds no PEM certificate", cfg.SidecarCAFile)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	urls, err := cfg.SidecarURLs()
	if err != nil {
		return nil, srv, err
	}
	scs := make(map[string]Sidecar, len(urls))
	for name, u := range urls {
		ep, err := api.ParseEndpoint(u)
		if err != nil {
			return nil, srv, fmt.Errorf("sidecar %s: %w", name, err)
		}
		c, err := sidecars.NewClient(sidecars.ClientConfig{
			URL:         u,
			HTTPClient:  &http.Client{Transport: tracing.Transport(api.NewTransport(ep, tlsCfg))},
			CallTimeout: cfg.CallTimeout.Duration,
			Retries:     cfg.Retries,
		})
		if err != nil {
			return nil, srv, fmt.Errorf("sidecar %s: %w", name, err)
		}
		scs[name] = c
		shown := u
		if pu, err := url.Parse(u); err == nil {
			shown = pu.Redacted()
		}
		log.Info("sidecar configured", "sidecar", name, "url", shown, "default", name == cfg.Default())
	}
	var m *Metrics
	if reg != nil {
		names := make([]string, 0, len(scs))
		for n := range scs {
			names = append(names, n)
		}
		m = NewMetrics(reg, names)
	}
	h, err := New(HandlerConfig{
		Metrics:         m,
		Sidecars:        scs,
		Default:         cfg.Default(),
		MaxBodyBytes:    cfg.MaxBodyBytes,
		StatusBatchSize: cfg.StatusBatchSize,
		Logger:          log,
	})
	return h, srv, err
}

// App is interlink assembled: the API handlers with /metrics, behind the
// authenticating proxy.
type App struct {
	Handler http.Handler
	Server  server.Config
	// Run runs the proxy's background work (static tokens reload).
	Run func(ctx context.Context) error
	// Metrics, when Config.MetricsListen is set, serves /metrics alone
	// (without authentication) on that listener.
	Metrics       http.Handler
	MetricsServer server.Config
}

// NewApp builds interlink from a validated Config.
func NewApp(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	reg := metrics.New("interlink")
	h, srv, err := FromConfig(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("/metrics", metrics.Handler(reg)) // behind the same authentication as the API
	auth, err := proxy.New(ctx, cfg.Auth, mux, log.With("component", "proxy"))
	if err != nil {
		return nil, err
	}
	auth.Observe = proxy.NewMetrics(reg).Observe
	app := &App{Handler: tracing.Handler(auth, "interlink"), Server: srv, Run: auth.Run}
	if cfg.MetricsListen != "" {
		m := http.NewServeMux()
		m.Handle("/metrics", metrics.Handler(reg))
		app.Metrics, app.MetricsServer = m, server.Config{Listen: cfg.MetricsListen}
	}
	return app, nil
}
