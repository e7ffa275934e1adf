#!/usr/bin/env bash
# make demo-down: stop what make demo started, by PID: the virtual node (it
# removes its Node), interlink, the token refresher, the sidecar, then the
# private SLURM or dockerd, Hydra and the control plane. Against an existing
# cluster (KUBECONFIG), the demo's pods and its Node are deleted there.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh
DEMO_DIR=${INTERLINK_DEMO_DIR:-/tmp/interlink-demo}
[ -e "$DEMO_DIR/.interlink-demo" ] || [ -e "$DEMO_DIR/settings" ] || { echo "no demo in $DEMO_DIR"; exit 0; }
SIDECAR="" EXTERNAL="" NODE="" KUBECONFIG_FILE=""
if [ -f "$DEMO_DIR/settings" ]; then
	SIDECAR=$(sed -n 's/^SIDECAR=//p' "$DEMO_DIR/settings")
	EXTERNAL=$(sed -n 's/^EXTERNAL=//p' "$DEMO_DIR/settings")
	NODE=$(sed -n 's/^NODE=//p' "$DEMO_DIR/settings")
	KUBECONFIG_FILE=$(sed -n 's/^KUBECONFIG=//p' "$DEMO_DIR/settings")
fi

if [ -n "$EXTERNAL" ] && [ -n "$KUBECONFIG_FILE" ] && [ -n "$NODE" ]; then
	kubectl=$(command -v kubectl || true)
	[ -n "$kubectl" ] || kubectl=$(examples/cluster/build.sh 2>/dev/null)/kubectl
	# The remote jobs are cancelled by the sidecar when the VK deletes the pods.
	for f in examples/pods/*.yaml; do
		"$kubectl" --kubeconfig "$KUBECONFIG_FILE" delete -f "$f" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
	done
fi

stopped=0
for name in interlink-vk interlink token-refresher sidecar; do
	pidfile="$DEMO_DIR/$name.pid"
	[ -f "$pidfile" ] || continue
	pid=$(cat "$pidfile")
	# Only a process of ours: a PID left from a stopped demo may be another's now.
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	if [[ ${exe##*/} == interlink* ]]; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		stopped=$((stopped + 1))
	fi
	rm -f "$pidfile"
done
if [ -n "$EXTERNAL" ] && [ -n "$KUBECONFIG_FILE" ] && [ -n "$NODE" ]; then
	"$kubectl" --kubeconfig "$KUBECONFIG_FILE" delete node "$NODE" --ignore-not-found >/dev/null 2>&1 || true
fi
[ -d "$DEMO_DIR/slurm" ] && .ci/slurm.sh down "$DEMO_DIR/slurm" >/dev/null 2>&1
[ -d "$DEMO_DIR/docker" ] && .ci/docker.sh down "$DEMO_DIR/docker" >/dev/null 2>&1
# RUNTIME=podman's private Podman, when .ci/podman.sh can stop it.
[ -d "$DEMO_DIR/podman" ] && [ -x .ci/podman.sh ] && { .ci/podman.sh down "$DEMO_DIR/podman" >/dev/null 2>&1 || true; }
[ -d "$DEMO_DIR/hydra" ] && .ci/hydra.sh down "$DEMO_DIR/hydra"
[ -d "$DEMO_DIR/cluster" ] && examples/cluster/cluster.sh down "$DEMO_DIR/cluster"
rm -f "$DEMO_DIR/settings"
echo "demo stopped: $stopped processes${SIDECAR:+, the private $SIDECAR}$([ -d "$DEMO_DIR/cluster" ] && echo ', the control plane')"
