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
	"github.com/seed-3f807049/interlink/vk"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-vk:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := vk.DefaultConfig()
	log, flags, err := cli.Start("interlink-vk", "VK_CONFIG_PATH", &cfg)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
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
