// Command interlink-slurm is the SLURM sidecar: it runs each pod as a batch
// job on the Slurm cluster it can submit to.
package main

import (
	"context"
	"log/slog"

	"github.com/seed-3f807049/interlink/sidecars/serve"
	"github.com/seed-3f807049/interlink/sidecars/slurm"
)

func main() {
	cfg := slurm.DefaultConfig()
	serve.Main("interlink-slurm", "SLURMCONFIGPATH", &cfg, func(ctx context.Context, log *slog.Logger) (*serve.Sidecar, error) {
		s, err := slurm.New(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		return &serve.Sidecar{Plugin: s, Register: s.Register, Close: s.Close}, nil
	})
}
