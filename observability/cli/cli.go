// Package cli is the start of every interLink binary: flags (--config,
// --config-test), the config (defaults, YAML file, environment, validation)
// and the logger, with a warning for config keys the binary does not know.
package cli

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// Config is a binary's Config: it says how to log.
type Config interface {
	LogSettings() (format, level string)
}

// Start parses os.Args, loads cfg (a pointer holding its defaults) from the
// file named by --config or the configEnv variable, and returns the logger.
func Start(name, configEnv string, cfg Config) (*slog.Logger, config.Flags, error) {
	flags, err := config.ParseFlags(name, os.Args[1:], os.Getenv(configEnv))
	if err != nil {
		return nil, flags, err
	}
	unknown, err := config.Load(cfg, flags.Path)
	if err != nil {
		return nil, flags, err
	}
	format, level := cfg.LogSettings()
	log, err := logging.New(os.Stderr, format, level)
	if err != nil {
		return nil, flags, err
	}
	logging.Bridge(log)
	if len(unknown) > 0 {
		log.Warn("unknown config keys ignored", "keys", unknown)
	}
	return log, flags, nil
}

// StartTracing installs the binary's tracing (see package tracing); call
// the returned function at exit to flush the last spans.
func StartTracing(ctx context.Context, cfg tracing.Config, name string) (end func(), err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	shutdown, err := tracing.Start(ctx, cfg, name)
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	}, nil
}
