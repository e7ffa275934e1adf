package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/observability/tracing"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Config holds the settings every sidecar has, with the same keys and
// environment variables in each: embed it in the sidecar's Config.
type Config struct {
	LogFormat string         `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing   tracing.Config `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`
	LogLevel  string         `json:"LogLevel" env:"INTERLINK_LOG_LEVEL" doc:"Log level: debug, info, warn or error."`
}

// DefaultConfig returns the defaults: JSON logs at info, tracing off.
func DefaultConfig() Config {
	return Config{LogFormat: "json", LogLevel: "info", Tracing: tracing.DefaultConfig()}
}

// LogSettings implements cli.Config. A sidecar with more logging keys (the
// original's VerboseLogging) defines its own.
func (c *Config) LogSettings() (format, level string) { return c.LogFormat, c.LogLevel }

// Shared returns c, the block a sidecar's Config embeds (Settings).
func (c *Config) Shared() *Config { return c }

// Settings is a sidecar's Config as Main reads it: a pointer to a struct
// that embeds Config.
type Settings interface {
	// LogSettings says how to log (cli.Config).
	LogSettings() (format, level string)
	// Serving says where to serve, once the config is loaded.
	Serving() Serving
	// Shared is promoted from the embedded Config.
	Shared() *Config
}

// Serving says where a sidecar serves and whom it lets in.
type Serving struct {
	// Addr is a TCP address (host:port) or a unix socket path (absolute,
	// or unix://path).
	Addr string
	// Auth authenticates the callers of the protocol's paths
	// (server.RunSidecar): on a unix socket its mode, on TCP a credential.
	// Nil serves without any (the sim, a test backend).
	Auth *server.Auth
	// MaxBodyBytes caps request bodies (sidecars.HandlerConfig).
	MaxBodyBytes int64
}

// Sidecar is what a main builds: its plugin and what goes with it.
type Sidecar struct {
	// Plugin is served with sidecars.NewHandler.
	Plugin sidecars.Plugin
	// Register, if set, adds the plugin's metrics to the registry served on
	// /metrics.
	Register func(prometheus.Registerer) error
	// Wrap, if set, wraps the protocol's handler (the sim adds its own
	// paths).
	Wrap func(http.Handler) http.Handler
	// Close, if set, releases the plugin once serving has ended; its error
	// is logged.
	Close func() error
}

// Build builds a sidecar from its loaded config. ctx ends at SIGINT or
// SIGTERM; it is for the I/O of the build, not to be kept.
type Build func(ctx context.Context, log *slog.Logger) (*Sidecar, error)

// Main is a sidecar's main: it parses the flags (--config, --config-test),
// loads cfg (holding its defaults) from the file named by --config or the
// configEnv variable and from the environment, builds the sidecar with
// build and serves it until SIGINT or SIGTERM. With --config-test it prints
// "config OK" once cfg is valid, and exits. An error is printed after the
// binary's name, and the process exits 1.
func Main(name, configEnv string, cfg Settings, build Build) {
	if err := run(name, configEnv, cfg, build); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

func run(name, configEnv string, cfg Settings, build Build) error {
	log, flags, err := cli.Start(name, configEnv, cfg)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, name, cfg, log, build)
}

// Run builds the sidecar named name (interlink-slurm: its metrics and
// spans carry it) from cfg, a loaded config, and serves it until ctx ends;
// then it waits for the requests in flight (server.ShutdownTimeout) and
// closes the sidecar.
func Run(ctx context.Context, name string, cfg Settings, log *slog.Logger, build Build) error {
	sc, err := build(ctx, log)
	if err != nil {
		return err
	}
	if sc.Close != nil {
		defer func() {
			if err := sc.Close(); err != nil {
				log.Error("could not close the sidecar", "err", err)
			}
		}()
	}
	endTracing, err := cli.StartTracing(ctx, cfg.Shared().Tracing, name)
	if err != nil {
		return err
	}
	defer endTracing()
	reg := metrics.New(name)
	if sc.Register != nil {
		if err := sc.Register(reg); err != nil {
			return err
		}
	}
	s := cfg.Serving()
	h := sidecars.NewHandler(sc.Plugin, sidecars.HandlerConfig{MaxBodyBytes: s.MaxBodyBytes, Logger: log})
	if sc.Wrap != nil {
		h = sc.Wrap(h)
	}
	// /metrics needs no credential: Prometheus scrapes it, and its labels
	// carry no pod data.
	open := map[string]http.Handler{"/metrics": metrics.Handler(reg)}
	if s.Auth != nil {
		return server.RunSidecar(ctx, s.Addr, *s.Auth, h, open, log)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	for path, oh := range open {
		mux.Handle(path, oh)
	}
	return server.Run(ctx, server.Config{Listen: s.Addr}, mux, log)
}
