#!/usr/bin/env bash
# A real local Kubernetes control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager) built from the Kubernetes Go modules, on free
# loopback ports, for the e2e tests, the demo and trying interLink without a
# cluster. Several can run at once, each in its own directory.
#
#   cluster.sh up DIR     start one; writes DIR/kubeconfig and DIR/env
#   cluster.sh down DIR   stop it, by PID (apiserver before etcd)
#   cluster.sh kubelet-cert DIR NODE   issue a kubelet serving cert for NODE
#   cluster.sh metrics-server DIR      start metrics-server (built once, build.sh)
#                                 as a host process on this machine's first
#                                 non-loopback IPv4 address (the API server
#                                 refuses loopback endpoints), register it as
#                                 the metrics.k8s.io APIService, and wait
#                                 until the API server serves it: kubectl top
#   cluster.sh restart DIR NAME   stop etcd or kube-apiserver by PID and start
#                                 it again as before, waiting until it serves
#
# DIR/env holds KUBECONFIG, the ports, the CA and the kubelet client cert the
# apiserver presents to kubelets, and K8S_BIN (kubectl, helm are there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../.ci/lib.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2

# cert NAME CN [O] [SAN] [EXT]: a key and a certificate signed by the CA
# (CA=NAME: by pki/NAME.crt instead).
cert() {
	local name=$1 cn=$2 org=${3:-} san=${4:-} ext=${5:-clientAuth} subj="/CN=$2" ca=${CA:-ca}
	[ -n "$org" ] && subj="/O=$org/CN=$cn"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/pki/$name.key" -subj "$subj" \
		-out "$dir/pki/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$ext"
		[ -n "$san" ] && echo "subjectAltName=$san"
	} >"$dir/pki/$name.ext"
	openssl x509 -req -in "$dir/pki/$name.csr" -CA "$dir/pki/$ca.crt" -CAkey "$dir/pki/$ca.key" \
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
	local end=$((SECONDS + secs))
	while [ "$SECONDS" -lt "$end" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "--- logs in $dir ---" >&2
	tail -n 20 "$dir"/*.log >&2 || true
	die "$what did not come up within ${secs}s"
}

# stop NAME: stop the daemon NAME started (.ci/lib.sh's stop_pid).
stop() { stop_pid "$dir/$1.pid" "$1"; }

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
	# The front proxy's CA and client cert: the API server calls aggregated
	# APIs (metrics-server's metrics.k8s.io) with them, naming the user in
	# request headers that only this CA's front-proxy-client may set.
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/pki/front-proxy-ca.key" -out "$dir/pki/front-proxy-ca.crt" \
		-days 30 -subj "/CN=interlink-test-front-proxy-ca" 2>/dev/null
	chmod 600 "$dir/pki/front-proxy-ca.key"
	CA=front-proxy-ca cert front-proxy-client front-proxy-client
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
		--max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
		--requestheader-client-ca-file "$dir/pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
		--requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
		--requestheader-extra-headers-prefix X-Remote-Extra- --proxy-client-cert-file "$dir/pki/front-proxy-client.crt" \
		--proxy-client-key-file "$dir/pki/front-proxy-client.key" --enable-aggregator-routing=true
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
	for d in metrics-server kube-controller-manager kube-scheduler kube-apiserver etcd; do stop "$d"; done
}

# host_address prints this machine's first global IPv4 address.
host_address() {
	local a
	a=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub("/.*", "", $4); print $4; exit }')
	[ -n "$a" ] || a=$(hostname -I 2>/dev/null | awk '{ print $1 }')
	[ -n "$a" ] || die "no non-loopback IPv4 address on this machine: the API server refuses loopback endpoints, so metrics-server cannot be registered"
	printf '%s\n' "$a"
}

metrics_server() {
	[ -f "$dir/env" ] || die "no control plane in $dir (cluster.sh up $dir first)"
	. "$dir/env"
	local bin addr port
	bin=$("$here/build.sh" metrics-server)/metrics-server
	addr=${METRICS_SERVER_ADDRESS:-$(host_address)}
	port=$(free_port)
	stop metrics-server
	# Its serving cert, for the name the API server checks (the Service's).
	cert metrics-server metrics-server "" "IP:$addr,DNS:metrics-server.kube-system.svc" serverAuth
	# It reads the kubelets' /metrics/resource with the admin's credentials
	# (a kubelet API checks them with TokenReview and SubjectAccessReview),
	# verifying their serving certs against the cluster's CA (cluster.sh
	# kubelet-cert); it serves metrics.k8s.io on addr:port.
	start metrics-server "$bin" --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" \
		--authorization-kubeconfig "$dir/kubeconfig" --bind-address "$addr" --secure-port "$port" \
		--tls-cert-file "$dir/pki/metrics-server.crt" --tls-private-key-file "$dir/pki/metrics-server.key" \
		--kubelet-certificate-authority "$dir/pki/ca.crt" \
		--kubelet-preferred-address-types InternalIP --kubelet-use-node-status-port --metric-resolution 10s --kubelet-request-timeout 5s
	"$K8S_BIN/kubectl" --kubeconfig "$dir/kubeconfig" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: $port}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
endpoints: [{addresses: [$addr], conditions: {ready: true}}]
ports: [{name: https, port: $port, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  caBundle: $(base64 -w0 "$dir/pki/ca.crt")
  service: {name: metrics-server, namespace: kube-system, port: 443}
YAML
	wait_for "metrics-server's metrics.k8s.io API" 60 "$K8S_BIN/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /apis/metrics.k8s.io/v1beta1
	log "metrics-server serves metrics.k8s.io from $addr:$port: kubectl top pod"
}

restart() {
	local name=$1
	[ -f "$dir/$name.cmd" ] || die "$name was not started in $dir"
	. "$dir/env"
	stop "$name"
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
metrics-server) metrics_server ;;
kubelet-cert)
	[ $# -eq 3 ] || usage
	cert "kubelet-$3" "system:node:$3" system:nodes "IP:127.0.0.1,DNS:localhost,DNS:$3" serverAuth,clientAuth
	echo "$dir/pki/kubelet-$3.crt $dir/pki/kubelet-$3.key"
	;;
*) usage ;;
esac
