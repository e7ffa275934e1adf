#!/usr/bin/env bash
# make demo: a local Kubernetes control plane, the interLink virtual node,
# interLink and the simulated sidecar, all on loopback; then pods applied with
# kubectl as a user would. The stack keeps running; `make demo-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

DEMO_DIR=${INTERLINK_DEMO_DIR:-${TMPDIR:-/tmp}/interlink-demo}
BIN=${BIN:-bin}
NODE=interlink-demo
for tool in curl openssl python3; do command -v "$tool" >/dev/null || die "$tool is needed by the demo"; done
for b in interlink interlink-sim interlink-vk; do [ -x "$BIN/$b" ] || die "run make build first (make demo does)"; done

step() { STEP_START=$(date +%s%N); log "$*"; }
done_step() { printf '    done in %d ms\n' $(( ($(date +%s%N) - STEP_START) / 1000000 )); }

examples/demo/down.sh >/dev/null 2>&1 || true
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"

step "control-plane binaries (built once from the Kubernetes Go modules; about 8 minutes the first time)"
examples/cluster/build.sh >/dev/null
done_step

step "starting a local control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager)"
examples/cluster/cluster.sh up "$DEMO_DIR/cluster" 2>/dev/null
. "$DEMO_DIR/cluster/env"
kubectl() { "$K8S_BIN/kubectl" "$@"; }
read -r CRT KEY < <(examples/cluster/cluster.sh kubelet-cert "$DEMO_DIR/cluster" "$NODE")
done_step

step "starting the simulated sidecar, interlink and the virtual node $NODE"
SOCK="$DEMO_DIR/sim.sock"
IL_PORT=$(free_port)
KUBELET_PORT=$(free_port)
INTERLINK_SIM_LISTEN="unix://$SOCK" INTERLINK_SIM_RUN_DURATION=6s INTERLINK_SIM_LOG_INTERVAL=1s \
	"$BIN/interlink-sim" >"$DEMO_DIR/sim.log" 2>&1 &
echo $! >"$DEMO_DIR/sim.pid"
# interLink admits only bearer tokens it knows; the VK reads its token from a file.
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; printf '%s,%s\n' "$TOKEN" "$NODE" >"$DEMO_DIR/tokens.csv"; printf '%s\n' "$TOKEN" >"$DEMO_DIR/vk-token")
SIDECARSERVICE=sim SIDECARURL="unix://$SOCK" INTERLINKPORT="$IL_PORT" INTERLINK_AUTH_STATIC_TOKENS_FILE="$DEMO_DIR/tokens.csv" \
	"$BIN/interlink" >"$DEMO_DIR/interlink.log" 2>&1 &
echo $! >"$DEMO_DIR/interlink.pid"
NODENAME=$NODE INTERLINKPORT="$IL_PORT" KUBELET_PORT="$KUBELET_PORT" VKTOKENFILE="$DEMO_DIR/vk-token" \
	INTERLINK_KUBELET_CERT_FILE="$CRT" INTERLINK_KUBELET_KEY_FILE="$KEY" INTERLINK_KUBELET_CLIENT_CA_FILE="$CLUSTER_CA" \
	INTERLINK_STATUS_INTERVAL=1s INTERLINK_PING_INTERVAL=2s \
	"$BIN/interlink-vk" >"$DEMO_DIR/interlink-vk.log" 2>&1 &
echo $! >"$DEMO_DIR/interlink-vk.pid"
for _ in $(seq 300); do
	[ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
	sleep 0.1
done
done_step

log "kubectl get nodes"
kubectl get nodes -o wide

log "kubectl apply -f examples/pods/hello.yaml"
kubectl apply -f examples/pods/hello.yaml
last=""
for _ in $(seq 300); do
	p=$(kubectl get pod hello -o jsonpath='{.status.phase}' 2>/dev/null || true)
	[ "$p" != "$last" ] && kubectl get pod hello -o wide --no-headers && last=$p
	case $p in Succeeded|Failed) break ;; esac
	sleep 0.2
done
[ "$last" = Succeeded ] || die "pod hello ended as $last"

log "kubectl logs hello (through the virtual node's authenticated kubelet API)"
kubectl logs hello

log "kubectl apply -f examples/pods/failing.yaml"
kubectl apply -f examples/pods/failing.yaml
for _ in $(seq 300); do
	p=$(kubectl get pod failing -o jsonpath='{.status.phase}' 2>/dev/null || true)
	[ "$p" = Failed ] && break
	sleep 0.2
done
kubectl get pod failing -o jsonpath='pod failing: {.status.phase}, exit code {.status.containerStatuses[0].state.terminated.exitCode}{"\n"}'
[ "$p" = Failed ] || die "pod failing ended as $p"

log "kubectl delete pod hello failing"
kubectl delete pod hello failing --wait=true --timeout=60s

cat <<MSG

The virtual node $NODE is running on a local control plane, in front of interLink and
the simulated sidecar (which runs no containers). Try it:

  export KUBECONFIG=$KUBECONFIG
  $K8S_BIN/kubectl get nodes
  $K8S_BIN/kubectl apply -f examples/pods/hello.yaml

Logs are in $DEMO_DIR. Stop everything with: make demo-down
MSG
