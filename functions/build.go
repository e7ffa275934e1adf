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
	"github.com/seed-3f807049/interlink/functions/client"
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
	tlsCfg, err := sidecarTLS(cfg, log)
	if err != nil {
		return nil, srv, err
	}
	// The sidecars' bearer token, read now (a missing file is an error at
	// start) and again whenever the file changes.
	var header func() (http.Header, error)
	if cfg.SidecarTokenFile != "" {
		tf := client.NewTokenFile(cfg.SidecarTokenFile)
		if _, err := tf.Get(); err != nil {
			return nil, srv, fmt.Errorf("SidecarTokenFile: %w", err)
		}
		header = tf.Header
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
			Header:      header,
			TLS:         tlsCfg,
		})
		if err != nil {
			return nil, srv, fmt.Errorf("sidecar %s: %w", name, err)
		}
		scs[name] = c
		shown := u
		if pu, err := url.Parse(u); err == nil {
			shown = pu.Redacted()
		}
		log.Info("sidecar configured", "sidecar", name, "url", shown, "default", name == cfg.Default(),
			"token", header != nil, "client_certificate", cfg.SidecarCertFile != "")
		if header != nil && ep.Socket == "" && ep.Base.Scheme == "http" && !server.Loopback(ep.Base.Hostname()) {
			log.Warn("the sidecars' token crosses the network in clear to this sidecar: serve it over https (its Auth.CertFile) or reach it on loopback",
				"sidecar", name, "url", shown)
		}
	}
	var m *Metrics
	if reg != nil {
		names := make([]string, 0, len(scs))
		for n := range scs {
			names = append(names, n)
		}
		m = NewMetrics(reg, names)
	}
	js, err := NewJobScripter(cfg)
	if err != nil {
		return nil, srv, err
	}
	if cfg.JobScriptTemplate != "" {
		log.Info("job scripts rendered from JobScriptTemplate", "template", cfg.JobScriptTemplate)
	}
	if len(cfg.JobScriptBuilderURLs) > 0 {
		log.Info("job script builders allowed", "urls", shownURLs(cfg.JobScriptBuilderURLs))
	}
	h, err := New(HandlerConfig{
		JobScript:       js.Fill,
		Metrics:         m,
		Sidecars:        scs,
		Default:         cfg.Default(),
		MaxBodyBytes:    cfg.MaxBodyBytes,
		StatusBatchSize: cfg.StatusBatchSize,
		StreamLimits:    api.Limits{Idle: cfg.StreamIdleTimeout.Duration, Total: cfg.StreamMaxDuration.Duration},
		Logger:          log,
	})
	return h, srv, err
}

// sidecarTLS is the TLS client config of https sidecars: SidecarCAFile's
// roots (default: the system's) and the client certificate of
// SidecarCertFile, reloaded when it changes. nil when neither is set.
func sidecarTLS(cfg Config, log *slog.Logger) (*tls.Config, error) {
	if cfg.SidecarCAFile == "" && cfg.SidecarCertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.SidecarCAFile != "" {
		pem, err := os.ReadFile(cfg.SidecarCAFile)
		if err != nil {
			return nil, fmt.Errorf("read SidecarCAFile: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SidecarCAFile %s holds no PEM certificate", cfg.SidecarCAFile)
		}
	}
	if cfg.SidecarCertFile != "" {
		r, err := server.NewCertReloader(cfg.SidecarCertFile, cfg.SidecarKeyFile, log)
		if err != nil {
			return nil, fmt.Errorf("SidecarCertFile: %w", err)
		}
		tc.GetClientCertificate = r.GetClientCertificate
	}
	return tc, nil
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
	// Pprof, when Config.Pprof.Enabled, serves net/http/pprof (without
	// authentication) on PprofServer.
	Pprof       http.Handler
	PprofServer server.Config
}

// NewApp builds interlink from a validated Config.
func NewApp(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	for _, w := range cfg.CompatWarnings() {
		log.Warn(w)
	}
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
	if cfg.Pprof.Enabled {
		listen, err := cfg.Pprof.Listen(DefaultPprofPort)
		if err != nil {
			return nil, err
		}
		app.Pprof, app.PprofServer = server.Pprof(), server.Config{Listen: listen}
	}
	return app, nil
}
