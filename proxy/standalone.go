package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// StandaloneConfig configures interlink-proxy: the same authentication in
// front of any upstream URL (an original interLink, say).
type StandaloneConfig struct {
	Listen       string         `json:"Listen" env:"INTERLINK_PROXY_LISTEN" doc:"host:port or unix socket path to serve on."`
	Upstream     string         `json:"Upstream" env:"INTERLINK_PROXY_UPSTREAM" doc:"URL requests are forwarded to once admitted (http, https or unix)."`
	CertFile     string         `json:"CertFile" env:"INTERLINK_PROXY_CERT_FILE" doc:"PEM serving certificate (TLS when set; reloaded when it changes)."`
	KeyFile      string         `json:"KeyFile" env:"INTERLINK_PROXY_KEY_FILE" doc:"PEM key of CertFile."`
	ClientCAFile string         `json:"ClientCAFile" env:"INTERLINK_PROXY_CLIENT_CA_FILE" doc:"PEM CA of accepted client certificates (with Auth.ClientCerts)."`
	MaxBodyBytes int64          `json:"MaxBodyBytes" env:"INTERLINK_PROXY_MAX_BODY_BYTES" doc:"Request bodies larger than this are refused with 413."`
	Auth         Config         `json:"Auth" doc:"Who may call the upstream."`
	LogFormat    string         `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing      tracing.Config `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`
	LogLevel     string         `json:"LogLevel" env:"INTERLINK_LOG_LEVEL" doc:"Log level: debug, info, warn or error."`
}

// DefaultStandaloneConfig returns the defaults.
func DefaultStandaloneConfig() StandaloneConfig {
	return StandaloneConfig{Listen: "127.0.0.1:8443", MaxBodyBytes: 128 << 20, Auth: DefaultConfig(), Tracing: tracing.DefaultConfig(), LogFormat: "json", LogLevel: "info"}
}

// LogSettings implements cli.Config.
func (c *StandaloneConfig) LogSettings() (format, level string) { return c.LogFormat, c.LogLevel }

// Validate reports every problem at once.
func (c *StandaloneConfig) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("Listen is empty"))
	}
	if _, err := api.ParseEndpoint(c.Upstream); err != nil {
		errs = append(errs, fmt.Errorf("Upstream: %w", err))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("CertFile and KeyFile go together"))
	}
	if c.Auth.ClientCerts && (c.CertFile == "" || c.ClientCAFile == "") {
		errs = append(errs, errors.New("Auth.ClientCerts needs CertFile, KeyFile and ClientCAFile"))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("MaxBodyBytes must be at least 1024"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NewUpstream returns a reverse proxy to the upstream URL, with a reused
// transport, X-Forwarded-For/Host/Proto set, bodies capped, and an
// upstream failure answered 502 with a typed error.
func NewUpstream(upstream string, maxBody int64, log *slog.Logger) (http.Handler, error) {
	ep, err := api.ParseEndpoint(upstream)
	if err != nil {
		return nil, err
	}
	target := &url.URL{Scheme: ep.Base.Scheme, Host: ep.Base.Host, Path: ep.Base.Path}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The identity headers the proxy set on the inbound request
			// are in Out already (a copy of In).
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: tracing.Transport(api.NewTransport(ep, nil)),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("upstream failed", "path", r.URL.Path, "err", err)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = fmt.Fprintf(w, "upstream unavailable: %v\n", err)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rp.ServeHTTP(w, r)
	}), nil
}
