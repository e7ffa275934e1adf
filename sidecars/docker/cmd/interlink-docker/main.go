// Command interlink-docker is the Docker sidecar: it runs each pod as containers
// on a Docker Engine, through its API.
package main

import (
	"context"
	"log/slog"

	"github.com/seed-3f807049/interlink/sidecars/docker"
	"github.com/seed-3f807049/interlink/sidecars/serve"
)

func main() {
	cfg := docker.DefaultConfig()
	serve.Main("interlink-docker", "INTERLINK_DOCKER_CONFIG", &cfg, func(ctx context.Context, log *slog.Logger) (*serve.Sidecar, error) {
		d, err := docker.New(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		return &serve.Sidecar{Plugin: d, Register: d.Register, Close: d.Close}, nil
	})
}
