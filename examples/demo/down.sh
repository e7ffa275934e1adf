#!/usr/bin/env bash
# make demo-down: stop what make demo started, by PID.
set -euo pipefail
DEMO_DIR=${INTERLINK_DEMO_DIR:-${TMPDIR:-/tmp}/interlink-demo}
stopped=0
for name in interlink sim; do
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
echo "demo stopped ($stopped processes)"
