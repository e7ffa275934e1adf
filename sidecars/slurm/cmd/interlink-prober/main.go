// Command interlink-prober runs a SLURM pod's probes and lifecycle hooks
// inside its job, beside its containers (see package prober): the job
// starts "interlink-prober run DIR/probes.json" with the containers and
// "interlink-prober stop DIR/probes.json" when the pod is deleted.
package main

import (
	"os"

	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

func main() { os.Exit(prober.Main(os.Args, os.Stderr)) }
