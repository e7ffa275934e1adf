// Command interlink-vk is the virtual kubelet of interLink: it registers a
// virtual node and runs the pods bound to it through interLink.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/vk"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-vk:", err)
		os.Exit(1)
	}
}

func run() error {
	// Not cli.Start: the original's flags (-configpath, -nodename) and
	// variables (CONFIGPATH, ENABLE_TRACING, ...) are read too.
	flags, err := vk.ParseFlags(os.Args[1:], os.Getenv)
	if err != nil {
		return err
	}
	cfg := vk.DefaultConfig()
	warnings, err := vk.Load(&cfg, flags, os.Getenv)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.LogFormat, logging.Level(cfg.VerboseLogging, cfg.ErrorsOnlyLogging))
	if err != nil {
		return err
	}
	logging.Bridge(log)
	for _, w := range warnings {
		log.Warn(w)
	}
	if flags.Test {
		fmt.Println("config OK")
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	endTracing, err := cli.StartTracing(ctx, cfg.Tracing, "interlink-vk")
	if err != nil {
		return err
	}
	defer endTracing()
	return vk.Run(ctx, cfg, log)
}
