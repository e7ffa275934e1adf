// Package slurm is the SLURM sidecar: each pod becomes one batch job,
// submitted with sbatch from a generated script that runs the pod's
// containers with an HPC container runtime (Apptainer/Singularity, Enroot,
// Charliecloud or Podman). Pod data (ConfigMaps, Secrets, projected volumes,
// emptyDirs) is written under a per-pod directory confined to
// DataRootFolder, or embedded in the script when compute nodes do not share
// that filesystem. An embedded bbolt store maps pod UIDs to jobs so that a
// restarted sidecar recovers every job and never submits one twice.
package slurm
