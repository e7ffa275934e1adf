#!/usr/bin/env bash
# make demo-down: stop what make demo started, by PID, then its control plane.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEMO_DIR=${INTERLINK_DEMO_DIR:-${TMPDIR:-/tmp}/interlink-demo}
stopped=0
for name in interlink-vk interlink sim; do
	pidfile="$DEMO_DIR/$name.pid"
	[ -f "$pidfile" ] || continue
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		stopped=$((stopped + 1))
	fi
	rm -f "$pidfile"
done
[ -d "$DEMO_DIR/cluster" ] && examples/cluster/cluster.sh down "$DEMO_DIR/cluster"
echo "demo stopped ($stopped processes and the control plane)"
