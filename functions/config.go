package functions

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/observability/tracing"
	"github.com/seed-3f807049/interlink/proxy"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Defaults of Config.
const (
	// DefaultAddress is where interLink listens (the original's default).
	DefaultAddress = "http://127.0.0.1"
	// DefaultPort is the original's default port.
	DefaultPort = "3000"
	// DefaultSidecarURL and DefaultSidecarPort locate the single sidecar of
	// an original-style config.
	DefaultSidecarURL  = "http://127.0.0.1"
	DefaultSidecarPort = "4000"
	// DefaultSidecarName names that sidecar when SidecarService is not set.
	DefaultSidecarName = "default"
	// DefaultMaxBodyBytes caps request bodies (a 10,000-pod status batch is
	// about 40 MiB).
	DefaultMaxBodyBytes = api.DefaultMaxBodyBytes
	// DefaultStreamIdleTimeout closes a stream through which nothing passed
	// for this long (the kubelet's streaming idle timeout is 4 h; a
	// forgotten port-forward should not hold a site's resources that long).
	DefaultStreamIdleTimeout = 30 * time.Minute
	// DefaultStreamMaxDuration is the longest any stream stays open.
	DefaultStreamMaxDuration = 24 * time.Hour
)

// TLSConfig is the original's TLS block: serving certificate, and a CA that,
// when set, requires client certificates (mTLS).
type TLSConfig struct {
	Enabled    bool   `json:"Enabled" env:"INTERLINK_TLS_ENABLED" doc:"Serve HTTPS, whether InterlinkAddress is http:// or https:// (https:// needs it)."`
	CertFile   string `json:"CertFile" env:"INTERLINK_TLS_CERT_FILE" doc:"PEM serving certificate."`
	KeyFile    string `json:"KeyFile" env:"INTERLINK_TLS_KEY_FILE" doc:"PEM private key of the certificate."`
	CACertFile string `json:"CACertFile" env:"INTERLINK_TLS_CA_FILE" doc:"PEM CA; when set, clients must present a certificate it signed (mTLS)."`
}

// Config is the interLink API server's configuration. The original's YAML
// keys and environment variables keep working.
type Config struct {
	InterlinkAddress  string            `json:"InterlinkAddress" env:"INTERLINKURL" doc:"Listen address: http://host, https://host or unix:///path.sock (original key)."`
	InterlinkPort     string            `json:"InterlinkPort" env:"INTERLINKPORT" doc:"Listen port, unused for a unix socket (original key)."`
	SidecarURL        string            `json:"SidecarURL" env:"SIDECARURL" doc:"URL of the single sidecar of an original-style config (http, https or unix)."`
	SidecarPort       string            `json:"SidecarPort" env:"SIDECARPORT" doc:"Port of that sidecar (docker 4000, slurm 4001 in the original)."`
	SidecarService    string            `json:"SidecarService" env:"SIDECARSERVICE" doc:"Name of that sidecar (for example slurm or docker); pods choose it with the interlink.io/sidecar annotation."`
	Sidecars          map[string]string `json:"Sidecars" env:"INTERLINK_SIDECARS" envSeparator:"," envKeyValSeparator:"=" doc:"Several sidecars by name: name -> URL (env: name=url,name=url). Replaces SidecarURL/SidecarPort when set."`
	DefaultSidecar    string            `json:"DefaultSidecar" env:"INTERLINK_DEFAULT_SIDECAR" doc:"Sidecar of pods without the interlink.io/sidecar annotation (default: SidecarService, or the only sidecar)."`
	TLS               TLSConfig         `json:"TLS" doc:"Serving TLS (original key)."`
	Auth              proxy.Config      `json:"Auth" doc:"Who may call interLink: OIDC bearer JWTs, static tokens, client certificates."`
	SidecarCAFile     string            `json:"SidecarCAFile" env:"INTERLINK_SIDECAR_CA_FILE" doc:"PEM CA trusted for https sidecars (default: the system roots)."`
	SidecarTokenFile  string            `json:"SidecarTokenFile" env:"INTERLINK_SIDECAR_TOKEN_FILE" doc:"File holding the bearer token sent to the sidecars (one listed in their Auth.TokenFile); read at start and again when it changes. Not needed for a sidecar on a unix socket."`
	SidecarCertFile   string            `json:"SidecarCertFile" env:"INTERLINK_SIDECAR_CERT_FILE" doc:"PEM client certificate presented to https sidecars (signed by their Auth.ClientCAFile); reloaded when it changes."`
	SidecarKeyFile    string            `json:"SidecarKeyFile" env:"INTERLINK_SIDECAR_KEY_FILE" doc:"PEM key of SidecarCertFile."`
	CallTimeout       config.Duration   `json:"CallTimeout" env:"INTERLINK_CALL_TIMEOUT" doc:"Timeout of one call to a sidecar (followed logs excepted)."`
	Retries           int               `json:"Retries" env:"INTERLINK_RETRIES" doc:"Tries of an idempotent sidecar call (status, delete, logs, ping); create is never retried."`
	StatusBatchSize   int               `json:"StatusBatchSize" env:"INTERLINK_STATUS_BATCH_SIZE" doc:"Largest number of pods in one status call to a sidecar; 0 sends each sidecar its whole share."`
	StreamIdleTimeout config.Duration   `json:"StreamIdleTimeout" env:"INTERLINK_STREAM_IDLE_TIMEOUT" doc:"A stream (exec -it, attach, port-forward) through which no byte passed for this long is closed."`
	StreamMaxDuration config.Duration   `json:"StreamMaxDuration" env:"INTERLINK_STREAM_MAX_DURATION" doc:"A stream is closed after this long, whatever passes through it."`
	MaxBodyBytes      int64             `json:"MaxBodyBytes" env:"INTERLINK_MAX_BODY_BYTES" doc:"Request bodies larger than this are refused with 413."`
	MetricsListen     string            `json:"MetricsListen" env:"INTERLINK_METRICS_LISTEN" doc:"host:port of a listener that serves only /metrics, without authentication, for a Prometheus that should hold no API token; empty: /metrics is served on the API listener, behind its authentication."`
	VerboseLogging    bool              `json:"VerboseLogging" env:"VERBOSELOGGING" doc:"Log at debug level (original key)."`
	ErrorsOnlyLogging bool              `json:"ErrorsOnlyLogging" env:"ERRORSONLYLOGGING" doc:"Log errors only (original key)."`
	LogFormat         string            `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing           tracing.Config    `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`

	JobScriptTemplate       string             `json:"JobScriptTemplate" env:"INTERLINK_JOBSCRIPT_TEMPLATE" doc:"Go text/template file, parsed at start, rendered at each create with the pod's data (.Pod, .Containers, .JobScriptBuild) into the jobScript sent to the sidecar (original key). Pod values are data, never template code, and every action prints its value shell-quoted (as one bash word) by default: do not quote actions yourself; end an action with raw (as in {{ raw .JobScriptBuild.VolumesOptions.ScratchArea }}) only for the operator's trusted text, never for a pod's value."`
	JobScriptBuildConfig    ScriptBuildConfig  `json:"JobScriptBuildConfig" doc:"Sent as jobConfig to a job script builder (original key); needs JobScriptBuilderURLs."`
	JobScriptBuilderURLs    []string           `json:"JobScriptBuilderURLs" env:"INTERLINK_JOBSCRIPT_BUILDER_URLS" envSeparator:"," doc:"Job script builders interlink may call, as http(s)://host/path (no user info, query or fragment: credentials belong in a header, not in a logged URL): a create whose jobscriptURL (the VK's JobScriptBuilderURL) is not listed here exactly is refused with 400. Empty: none."`
	JobScriptBuilderTimeout config.Duration    `json:"JobScriptBuilderTimeout" env:"INTERLINK_JOBSCRIPT_BUILDER_TIMEOUT" doc:"Timeout of one call to a job script builder."`
	JobScriptMaxBytes       int64              `json:"JobScriptMaxBytes" env:"INTERLINK_JOBSCRIPT_MAX_BYTES" doc:"Largest job script, rendered from JobScriptTemplate or replied by a builder."`
	Pprof                   server.PprofConfig `json:"Pprof" doc:"Profiling server (original key)."`
	DataRootFolder          string             `json:"DataRootFolder" doc:"Accepted and without effect, as in the original since 0.4; a warning is logged."`
	ExportPodData           bool               `json:"ExportPodData" doc:"Accepted and without effect (an original 0.3 key); a warning is logged."`
	// impliedClientCerts: Auth.ClientCerts was turned on by originalMTLS.
	impliedClientCerts bool
	// OriginalTelemetry holds the original's ENABLE_TRACING and TELEMETRY_*
	// variables, read only to refuse or warn about them (see compat.go).
	OriginalTelemetry OriginalTelemetry `json:"-"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		InterlinkAddress:  DefaultAddress,
		InterlinkPort:     DefaultPort,
		SidecarURL:        DefaultSidecarURL,
		SidecarPort:       DefaultSidecarPort,
		CallTimeout:       config.D(sidecars.DefaultCallTimeout),
		Retries:           sidecars.DefaultRetries,
		MaxBodyBytes:      DefaultMaxBodyBytes,
		StreamIdleTimeout: config.D(DefaultStreamIdleTimeout),
		StreamMaxDuration: config.D(DefaultStreamMaxDuration),
		Tracing:           tracing.DefaultConfig(),
		LogFormat:         "json",
		Auth:              proxy.DefaultConfig(),

		JobScriptBuilderTimeout: config.D(DefaultJobScriptBuilderTimeout),
		JobScriptMaxBytes:       DefaultJobScriptMaxBytes,
		Pprof:                   server.PprofConfig{Address: server.PprofAddress, Port: DefaultPprofPort},
	}
}

// Validate reports every problem at once. It first completes an original
// mTLS config (see originalMTLS).
func (c *Config) Validate() error {
	c.originalMTLS()
	var errs []error
	if _, err := c.Listen(); err != nil {
		errs = append(errs, err)
	}
	urls, err := c.SidecarURLs()
	if err != nil {
		errs = append(errs, err)
	}
	if _, ok := urls[c.Default()]; !ok && err == nil {
		errs = append(errs, fmt.Errorf("DefaultSidecar %q is not a configured sidecar", c.Default()))
	}
	if c.TLS.Enabled && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("TLS.Enabled needs TLS.CertFile and TLS.KeyFile"))
	}
	if (c.SidecarCertFile == "") != (c.SidecarKeyFile == "") {
		errs = append(errs, errors.New("SidecarCertFile and SidecarKeyFile go together"))
	}
	if c.CallTimeout.Duration <= 0 || c.CallTimeout.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("CallTimeout %s must be between 0 and 1h", c.CallTimeout))
	}
	if c.Retries < 1 {
		errs = append(errs, errors.New("Retries must be at least 1"))
	}
	if c.StreamIdleTimeout.Duration <= 0 || c.StreamMaxDuration.Duration <= 0 {
		errs = append(errs, fmt.Errorf("StreamIdleTimeout %s and StreamMaxDuration %s must be positive", c.StreamIdleTimeout, c.StreamMaxDuration))
	}
	if c.StatusBatchSize < 0 {
		errs = append(errs, errors.New("StatusBatchSize must not be negative"))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("MetricsListen %q: want host:port: %w", c.MetricsListen, err))
		}
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("MaxBodyBytes must be at least 1024"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Auth.ClientCerts && (!c.TLS.Enabled || c.TLS.CACertFile == "") {
		errs = append(errs, errors.New("Auth.ClientCerts needs TLS.Enabled and TLS.CACertFile"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("LogFormat %q: want json or text", c.LogFormat))
	}
	errs = append(errs, c.compatProblems()...)
	return errors.Join(errs...)
}

// Listen returns the listen address: host:port or a unix socket path.
func (c *Config) Listen() (string, error) {
	addr := c.InterlinkAddress
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		if p == "" {
			return "", errors.New("InterlinkAddress unix:// has no socket path")
		}
		return "unix://" + p, nil
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", fmt.Errorf("InterlinkAddress %q: want http://host, https://host or unix:///path", addr)
	}
	if c.InterlinkPort == "" {
		return "", errors.New("InterlinkPort is empty")
	}
	return net.JoinHostPort(u.Hostname(), c.InterlinkPort), nil
}

// LogSettings implements cli.Config: the original's logging switches.
func (c *Config) LogSettings() (format, level string) {
	return c.LogFormat, logging.Level(c.VerboseLogging, c.ErrorsOnlyLogging)
}

// SidecarURLs returns the sidecars by name.
func (c *Config) SidecarURLs() (map[string]string, error) {
	out := map[string]string{}
	if len(c.Sidecars) > 0 {
		for n, u := range c.Sidecars {
			out[n] = u
		}
	} else {
		name := c.SidecarService
		if name == "" {
			name = DefaultSidecarName
		}
		u := c.SidecarURL
		if !strings.HasPrefix(u, "unix://") && c.SidecarPort != "" {
			u = strings.TrimSuffix(u, "/") + ":" + c.SidecarPort
		}
		out[name] = u
	}
	var errs []error
	for n, u := range config.SortedByKey(out) {
		if n == "" {
			errs = append(errs, errors.New("a sidecar has an empty name"))
		}
		if _, err := sidecars.NewClient(sidecars.ClientConfig{URL: u}); err != nil {
			errs = append(errs, fmt.Errorf("sidecar %q: %w", n, err))
		}
	}
	return out, errors.Join(errs...)
}

// Default returns the default sidecar's name.
func (c *Config) Default() string {
	switch {
	case c.DefaultSidecar != "":
		return c.DefaultSidecar
	case len(c.Sidecars) == 1:
		for n := range c.Sidecars {
			return n
		}
	case len(c.Sidecars) == 0 && c.SidecarService != "":
		return c.SidecarService
	case len(c.Sidecars) == 0:
		return DefaultSidecarName
	}
	return ""
}
