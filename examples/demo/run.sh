#!/usr/bin/env bash
# make demo: start interLink in front of the simulated sidecar on loopback and
# take pods through it over the wire protocol, as the virtual kubelet does.
# The stack keeps running; `make demo-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

DEMO_DIR=${INTERLINK_DEMO_DIR:-${TMPDIR:-/tmp}/interlink-demo}
BIN=${BIN:-bin}
for tool in curl jq python3; do command -v "$tool" >/dev/null || die "$tool is needed by the demo"; done
[ -x "$BIN/interlink" ] && [ -x "$BIN/interlink-sim" ] || die "run make build first (make demo does)"

examples/demo/down.sh >/dev/null 2>&1 || true
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"

PORT=$(free_port)
SOCK="$DEMO_DIR/sim.sock"
URL="http://127.0.0.1:$PORT"

log "starting the simulated sidecar on $SOCK"
INTERLINK_SIM_LISTEN="unix://$SOCK" INTERLINK_SIM_RUN_DURATION=4s INTERLINK_SIM_LOG_INTERVAL=1s \
	"$BIN/interlink-sim" >"$DEMO_DIR/sim.log" 2>&1 &
echo $! >"$DEMO_DIR/sim.pid"

log "starting interlink on $URL (sidecar \"sim\")"
SIDECARSERVICE=sim SIDECARURL="unix://$SOCK" INTERLINKPORT="$PORT" INTERLINK_LOG_FORMAT=text \
	"$BIN/interlink" >"$DEMO_DIR/interlink.log" 2>&1 &
echo $! >"$DEMO_DIR/interlink.pid"
echo "$URL" >"$DEMO_DIR/url"

for _ in $(seq 100); do
	curl -fsS -X POST "$URL/pinglink" >/dev/null 2>&1 && break
	sleep 0.1
done
log "ping: POST $URL/pinglink"
curl -fsS -X POST "$URL/pinglink" | jq .

# post FILE: create the pod of FILE with a fresh UID; prints the UID.
post() {
	local uid body
	uid=$(python3 -c 'import uuid; print(uuid.uuid4())')
	body=$(jq --arg uid "$uid" '.pod.metadata.uid = $uid' "$1")
	curl -fsS -X POST -H 'Content-Type: application/json' -d "$body" "$URL/create" >&2
	echo "$uid"
}

# status FILE UID: the pod's status, as GET with a JSON body (original VK style).
status() {
	jq --arg uid "$2" '[.pod | .metadata.uid = $uid]' "$1" |
		curl -fsS -X GET -H 'Content-Type: application/json' --data-binary @- "$URL/status"
}

phase() {
	jq -r 'if length == 0 then "Unknown"
		elif (.[0].containers[0].state.waiting) then "Pending (\(.[0].containers[0].state.waiting.reason))"
		elif (.[0].containers[0].state.running) then "Running"
		elif (.[0].containers[0].state.terminated.exitCode == 0) then "Succeeded"
		else "Failed (exit code \(.[0].containers[0].state.terminated.exitCode), \(.[0].containers[0].state.terminated.reason))" end'
}

log "create: POST $URL/create examples/api/hello-pod.json"
HELLO=$(post examples/api/hello-pod.json)
echo
last=""
for _ in $(seq 100); do
	p=$(status examples/api/hello-pod.json "$HELLO" | phase)
	[ "$p" != "$last" ] && echo "pod default/hello: $p" && last=$p
	case $p in Succeeded|Failed*) break ;; esac
	sleep 0.2
done
[ "$last" = Succeeded ] || die "pod hello ended as $last"

log "logs: GET $URL/getLogs"
jq -n --arg uid "$HELLO" '{Namespace: "default", PodUID: $uid, PodName: "hello", ContainerName: "main", Opts: {Timestamps: true}}' |
	curl -fsS -X GET -H 'Content-Type: application/json' --data-binary @- "$URL/getLogs"

log "a failing pod"
FAIL=$(post examples/api/failing-pod.json)
echo
for _ in $(seq 100); do
	p=$(status examples/api/failing-pod.json "$FAIL" | phase)
	case $p in Failed*) echo "pod default/failing: $p"; break ;; esac
	sleep 0.2
done
case $p in Failed*) ;; *) die "pod failing ended as $p" ;; esac

log "delete: DELETE $URL/delete"
for f in hello-pod:"$HELLO" failing-pod:"$FAIL"; do
	jq --arg uid "${f#*:}" '.pod | .metadata.uid = $uid' "examples/api/${f%%:*}.json" |
		curl -fsS -X DELETE -H 'Content-Type: application/json' --data-binary @- "$URL/delete"
done

log "a bad request gets a clear error"
curl -sS -X POST -H 'Content-Type: application/json' -d '{"pod": {"metadata": {"name": "x"}}}' -w ' (HTTP %{http_code})\n' "$URL/create" || true

cat <<MSG

interLink is running at $URL in front of the simulated sidecar (logs in $DEMO_DIR).
The simulated sidecar runs no containers. Stop everything with: make demo-down
MSG
