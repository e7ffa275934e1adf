#!/usr/bin/env bash
# A real local Kubernetes control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager) built from the Kubernetes Go modules, on free
# loopback ports, for the e2e tests, the demo and trying interLink without a
# cluster. Several can run at once, each in its own directory.
#
#   cluster.sh up DIR     start one; writes DIR/kubeconfig and DIR/env
#   cluster.sh down DIR   stop it, by PID (apiserver before etcd)
#   cluster.sh kubelet-cert DIR NODE   issue a kubelet serving cert for NODE
#   cluster.sh restart DIR NAME   stop etcd or kube-apiserver by PID and start
#                                 it again as before, waiting until it serves
#
# DIR/env holds KUBECONFIG, the ports, the CA and the kubelet client cert the
# apiserver presents to kubelets, and K8S_BIN (kubectl, helm are there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../.ci/lib.sh"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2

# cert NAME CN [O] [SAN] [EXT]: a key and a certificate signed by the CA.
cert() {
	local name=$1 cn=$2 org=${3:-} san=${4:-} ext=${5:-clientAuth} subj="/CN=$2"
	[ -n "$org" ] && subj="/O=$org/CN=$cn"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/pki/$name.key" -subj "$subj" \
		-out "$dir/pki/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$ext"
		[ -n "$san" ] && echo "subjectAltName=$san"
	} >"$dir/pki/$name.ext"
	openssl x509 -req -in "$dir/pki/$name.csr" -CA "$dir/pki/ca.crt" -CAkey "$dir/pki/ca.key" \
		-CAcreateserial -days 30 -extfile "$dir/pki/$name.ext" -out "$dir/pki/$name.crt" 2>/dev/null
	chmod 600 "$dir/pki/$name.key"
}

# start NAME CMD...: run a daemon in the background, its log and PID in DIR.
start() {
	local name=$1; shift
	printf '%q ' "$@" >"$dir/$name.cmd"
	"$@" >>"$dir/$name.log" 2>&1 &
	echo $! >"$dir/$name.pid"
}

# wait_for WHAT SECONDS CMD...: poll until CMD succeeds.
wait_for() {
	local what=$1 secs=$2; shift 2
	for _ in $(seq $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "--- logs in $dir ---" >&2
	tail -n 20 "$dir"/*.log >&2 || true
	die "$what did not come up within ${secs}s"
}

stop_pid() {
	local f="$dir/$1.pid"
	[ -f "$f" ] || return 0
	local pid; pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

up() {
	local t0; t0=$(date +%s%N)
	K8S_BIN=$("$here/build.sh")
	mkdir -p "$dir/pki" "$dir/etcd"
	chmod 700 "$dir"
	local etcd_port etcd_peer api_port sched_port cm_port
	etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
	sched_port=$(free_port); cm_port=$(free_port)

	# PKI: a CA, the apiserver's serving cert, its client cert for kubelets,
	# a service-account key pair, and a static admin token.
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/pki/ca.key" -out "$dir/pki/ca.crt" \
		-days 30 -subj "/CN=interlink-test-ca" 2>/dev/null
	chmod 600 "$dir/pki/ca.key"
	cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes.default.svc" serverAuth
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
	openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
	chmod 600 "$dir/pki/sa.key"
	local token; token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf '%s,admin,admin,"system:masters"\n' "$token" >"$dir/pki/tokens.csv"
	chmod 600 "$dir/pki/tokens.csv"
	cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KC
	chmod 600 "$dir/kubeconfig"

	start etcd "$K8S_BIN/etcd" --name test --data-dir "$dir/etcd" --unsafe-no-fsync \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "test=http://127.0.0.1:$etcd_peer" --listen-metrics-urls ""
	wait_for etcd 20 curl -fsS "http://127.0.0.1:$etcd_port/health"

	# CLUSTER_AUDIT_POLICY=FILE: an audit log (JSON lines) of what that policy
	# selects, in DIR/audit.log (the chart's e2e test checks RBAC against it).
	local audit=()
	if [ -n "${CLUSTER_AUDIT_POLICY:-}" ]; then
		audit=(--audit-policy-file "$CLUSTER_AUDIT_POLICY" --audit-log-path "$dir/audit.log" --audit-log-format json)
	fi
	start kube-apiserver "$K8S_BIN/kube-apiserver" "${audit[@]}" --etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
		--endpoint-reconciler-type none --tls-cert-file "$dir/pki/apiserver.crt" \
		--tls-private-key-file "$dir/pki/apiserver.key" --client-ca-file "$dir/pki/ca.crt" \
		--token-auth-file "$dir/pki/tokens.csv" --authorization-mode Node,RBAC \
		--service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/pki/sa.pub" \
		--service-account-signing-key-file "$dir/pki/sa.key" --service-cluster-ip-range 10.0.0.0/24 \
		--allow-privileged=true --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$dir/pki/ca.crt" --kubelet-preferred-address-types InternalIP \
		--max-requests-inflight 2000 --max-mutating-requests-inflight 1000
	wait_for kube-apiserver 60 "$K8S_BIN/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz

	start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$dir/kubeconfig" --leader-elect=false \
		--bind-address 127.0.0.1 --secure-port "$sched_port" --kube-api-qps 500 --kube-api-burst 1000
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$dir/kubeconfig" \
		--leader-elect=false --bind-address 127.0.0.1 --secure-port "$cm_port" \
		--use-service-account-credentials=false --service-account-private-key-file "$dir/pki/sa.key" \
		--root-ca-file "$dir/pki/ca.crt" --cluster-signing-cert-file "$dir/pki/ca.crt" \
		--cluster-signing-key-file "$dir/pki/ca.key" --kube-api-qps 500 --kube-api-burst 1000 \
		--controllers '*,-nodeipam'
	wait_for "the default service account" 60 "$K8S_BIN/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default

	cat >"$dir/env" <<ENV
export KUBECONFIG=$dir/kubeconfig
export K8S_BIN=$K8S_BIN
export CLUSTER_CA=$dir/pki/ca.crt
export CLUSTER_CA_KEY=$dir/pki/ca.key
export APISERVER_URL=https://127.0.0.1:$api_port
export ETCD_PORT=$etcd_port
ENV
	log "control plane up in $(( ($(date +%s%N) - t0) / 1000000 )) ms: . $dir/env"
}

down() {
	# The apiserver before etcd: the other order hangs it for a minute.
	for d in kube-controller-manager kube-scheduler kube-apiserver etcd; do stop_pid "$d"; done
}

restart() {
	local name=$1
	[ -f "$dir/$name.cmd" ] || die "$name was not started in $dir"
	. "$dir/env"
	stop_pid "$name"
	eval "start $name $(cat "$dir/$name.cmd")"
	case $name in
	etcd) wait_for etcd 20 curl -fsS "http://127.0.0.1:$ETCD_PORT/health" ;;
	kube-apiserver) wait_for kube-apiserver 60 "$K8S_BIN/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz ;;
	esac
}

case $cmd in
up) up ;;
down) down ;;
restart)
	[ $# -eq 3 ] || usage
	case $3 in etcd | kube-apiserver | kube-scheduler | kube-controller-manager) restart "$3" ;; *) usage ;; esac
	;;
kubelet-cert)
	[ $# -eq 3 ] || usage
	cert "kubelet-$3" "system:node:$3" system:nodes "IP:127.0.0.1,DNS:localhost,DNS:$3" serverAuth,clientAuth
	echo "$dir/pki/kubelet-$3.crt $dir/pki/kubelet-$3.key"
	;;
*) usage ;;
esac
