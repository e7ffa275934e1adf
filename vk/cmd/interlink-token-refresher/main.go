// Command interlink-token-refresher keeps the virtual kubelet's token file
// fresh with tokens from an OAuth2 issuer (client_credentials or
// refresh_token grant). It runs beside the VK, for example as a sidecar
// container sharing the token file's volume.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-3f807049/interlink/observability/cli"
	"github.com/seed-3f807049/interlink/vk/token"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interlink-token-refresher:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := token.DefaultConfig()
	log, flags, err := cli.Start("interlink-token-refresher", "INTERLINK_TOKEN_CONFIG", &cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := token.New(ctx, cfg, log)
	if err != nil || flags.Test {
		if err == nil {
			fmt.Println("config OK")
		}
		return err
	}
	return r.Run(ctx)
}
