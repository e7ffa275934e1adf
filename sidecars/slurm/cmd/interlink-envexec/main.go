// Command interlink-envexec starts a SLURM pod's container command inside
// its container with the pod's environment, read from a NUL-separated file
// (see package envexec). The SLURM sidecar binds it into every container; it
// is static and imports no cgo package, so that it runs in any image.
package main

import (
	"os"

	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
)

func main() { os.Exit(envexec.Main(os.Args, os.Stderr)) }
