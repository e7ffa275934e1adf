// Command interlink-installer sets up the remote side of interLink: from a
// few answers (flags, a YAML answers file, or prompts on a terminal) it
// writes interlink's and a sidecar's config, hardened systemd units for
// both, and the Helm values of the cluster side; with an OIDC issuer it gets
// the virtual node's first refresh token by the device-code grant.
// See docs/installer.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/seed-3f807049/interlink/functions/installer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	terminal := term.IsTerminal(int(os.Stdin.Fd())) //nolint:gosec // a file descriptor fits an int
	err := installer.Main(ctx, os.Args[1:], os.Stdin, os.Stderr, terminal)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "interlink-installer:", err)
		os.Exit(1)
	}
}
