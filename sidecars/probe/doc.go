// Package probe runs a container's probes and lifecycle hooks as a kubelet
// does: startup, liveness and readiness probes with exec, httpGet,
// tcpSocket and grpc handlers, their delays, periods, timeouts and
// thresholds, and postStart/preStop handlers. It knows nothing of where the
// container runs: a Target says which host a network probe reaches and how
// a command runs in the container. The Docker sidecar runs it in the
// sidecar; the SLURM sidecar runs it inside the job, beside the container
// (sidecars/slurm/prober).
package probe
