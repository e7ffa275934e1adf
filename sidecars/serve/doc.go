// Package serve is the start of every sidecar binary (interlink-slurm,
// interlink-docker, interlink-sim): flags and config (observability/cli),
// the logger, tracing, the metrics registry, the protocol's handler
// (sidecars.NewHandler) with /metrics beside it, the listener on TCP or a
// unix socket, with the caller's authentication when the sidecar has one
// (observability/server), and a graceful stop on SIGINT or SIGTERM. A
// sidecar's main only builds its plugin (Build).
//
// Config is the block of settings every sidecar's Config embeds.
package serve
