// Command interlink-vk is the virtual kubelet of interLink: it registers a
// virtual node and runs the pods bound to it through interLink.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-3f807049/interlink/observability/config"
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
	flags, err := config.ParseFlags("interlink-vk", os.Args[1:], os.Getenv("VK_CONFIG_PATH"))
	if err != nil {
		return err
	}
	cfg := vk.DefaultConfig()
	unknown, err := config.Load(&cfg, flags.Path)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel())
	if err != nil {
		return err
	}
	logging.Bridge(log)
	if len(unknown) > 0 {
		log.Warn("unknown config keys ignored", "keys", unknown)
	}
	if flags.Test {
		fmt.Println("config OK")
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return vk.Run(ctx, cfg, log)
}
