#!/usr/bin/env bash
# make demo: interLink doing its job for real, on loopback. It starts a local
# Kubernetes control plane, a private SLURM (or dockerd), Ory Hydra as the
# OIDC provider, interlink with its embedded authenticating proxy, a sidecar
# and the virtual node; then applies examples/ workloads with kubectl as a
# user would. The stack keeps running; `make demo-down` stops it.
#
# Settings (environment, or make variables: make demo SIDECAR=docker):
#   SIDECAR=slurm|docker  the remote side: SLURM jobs running containers
#                         (default), or a Docker Engine
#   RUNTIME=apptainer|charliecloud|podman
#                         the container runtime of the SLURM jobs: Apptainer
#                         (default; built once from its Go module, about 15
#                         minutes), Charliecloud (Debian's), or Podman
#                         (.ci/podman.sh)
#   AUTH=oidc|static      a real OIDC access token from Ory Hydra, refreshed
#                         by interlink-token-refresher (default; Hydra is
#                         built once, about 4 minutes), or a static token
#   KUBECONFIG=FILE       use that cluster instead of starting one; the
#                         node's kubelet certificate then comes from the CSR
#                         API and is approved with your credentials
#   DEMO_NODE             the virtual node's name (default interlink-demo)
#   DEMO_SERVICE_ADDRESS  where Services reach the node's forwarders (default:
#                         this machine's address; empty: Services off)
#   DEMO_NODE_ADDRESS     the node's InternalIP, where the API server reaches
#                         the kubelet API for kubectl logs and exec (default
#                         127.0.0.1: set this machine's address for a cluster
#                         whose API server runs elsewhere)
#   INTERLINK_DEMO_DIR    state and logs (default /tmp/interlink-demo); it
#                         must be new, empty, or an earlier demo's
#   DEMO_SLURM_CONFIG     a file of YAML lines appended to the SLURM
#                         sidecar's config after the demo's keys, such as
#                         AllowedMPIFlags: ["-n="] (SIDECAR=slurm)
#   DEMO_IMAGE_ROOT       the SLURM sidecar's ImageRoot: a directory of
#                         image directories or ch-image storage (default:
#                         the test images of .ci/images.sh, busybox among
#                         them, as ch-image storage in the demo's directory)
#   SLURM_NODE_CPUS       the SLURM node's CPUs (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

DEMO_DIR=${INTERLINK_DEMO_DIR:-/tmp/interlink-demo}
BIN=${BIN:-$PWD/bin}
SIDECAR=${SIDECAR:-slurm}
RUNTIME=${RUNTIME:-apptainer}
AUTH=${AUTH:-oidc}
NODE=${DEMO_NODE:-interlink-demo}
NODE_ADDRESS=${DEMO_NODE_ADDRESS:-127.0.0.1}
# Services reach the demo's offloaded pods through the node's forwarders,
# at an address the API server accepts in an EndpointSlice (not loopback):
# this machine's address on its default route (else its first global IPv4
# address), or DEMO_SERVICE_ADDRESS; none leaves Services off.
host_address() {
	local a
	a=$(ip -4 -o route get 192.0.2.255 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }')
	[ -n "$a" ] || a=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
	printf '%s\n' "$a"
}
SERVICE_ADDRESS=${DEMO_SERVICE_ADDRESS-$(host_address)}
AUDIENCE=interlink
# A second run in a shell that exported the KUBECONFIG the first one printed
# means the demo's own cluster, started again, not an existing one.
case ${KUBECONFIG:-} in
"$DEMO_DIR/cluster/kubeconfig" | "$(cd "$DEMO_DIR" 2>/dev/null && pwd -P)/cluster/kubeconfig") unset KUBECONFIG ;;
esac
EXTERNAL=${KUBECONFIG:+1}

case $SIDECAR in slurm | docker) ;; *) die "SIDECAR must be slurm or docker, not '$SIDECAR'" ;; esac
case $RUNTIME in apptainer | charliecloud | podman) ;; *) die "RUNTIME must be apptainer, charliecloud or podman, not '$RUNTIME'" ;; esac
if [ "$SIDECAR" = slurm ] && [ "$RUNTIME" = podman ] && [ ! -x .ci/podman.sh ]; then
	die "RUNTIME=podman needs .ci/podman.sh (its 'up DIR' and 'load DIR TAR'), which this checkout lacks: use RUNTIME=apptainer or charliecloud"
fi
case $AUTH in oidc | static) ;; *) die "AUTH must be oidc or static, not '$AUTH'" ;; esac
[ "$(id -u)" -eq 0 ] || die "the demo starts a private $SIDECAR daemon (and installs it with apt when missing): run it as root"
[[ $NODE =~ ^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$ ]] || die "DEMO_NODE '$NODE' is not a valid node name (lower-case letters, digits, '-' and '.')"
python3 -c 'import ipaddress,sys; ipaddress.ip_address(sys.argv[1])' "$NODE_ADDRESS" 2>/dev/null ||
	die "DEMO_NODE_ADDRESS '$NODE_ADDRESS' is not an IP address"
# The path goes into YAML configs and a JSON body: plain characters only.
[[ $DEMO_DIR =~ ^/[A-Za-z0-9_./-]+$ ]] || die "INTERLINK_DEMO_DIR must be an absolute path of letters, digits and _ . / - only, not '$DEMO_DIR'"
SLURM_EXTRA=${DEMO_SLURM_CONFIG:-}
[ -z "${DEMO_IMAGE_ROOT:-}" ] || [ -d "$DEMO_IMAGE_ROOT" ] || die "DEMO_IMAGE_ROOT=$DEMO_IMAGE_ROOT is not a directory"
[ -z "$SLURM_EXTRA" ] || { [ -f "$SLURM_EXTRA" ] && [ -r "$SLURM_EXTRA" ]; } || die "DEMO_SLURM_CONFIG=$SLURM_EXTRA is not a readable file"
for tool in curl openssl python3; do command -v "$tool" >/dev/null || die "$tool is needed by the demo"; done
for b in interlink "interlink-$SIDECAR" interlink-vk interlink-token-refresher; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing: run make build first (make demo does)"
done
if [ -n "$EXTERNAL" ]; then
	[[ $KUBECONFIG != *:* ]] || die "KUBECONFIG lists several files ($KUBECONFIG): set it to the one file of the cluster to join"
	[ -r "$KUBECONFIG" ] || die "KUBECONFIG=$KUBECONFIG is not a readable file"
	KUBECONFIG=$(cd "$(dirname "$KUBECONFIG")" && pwd)/$(basename "$KUBECONFIG")
fi

# say TEXT: a step of the demo, in bold; show CMD...: print a command, run it.
say() { printf '\n\033[1;36m## %s\033[0m\n' "$*"; }
show() {
	local a line=""
	for a in "$@"; do
		[[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]] || a="'${a//\'/\'\\\'\'}'"
		line+=" $a"
	done
	printf '\033[2m$%s\033[0m\n' "$line"
	"$@"
}

# The directory is removed and made anew: only when it is an earlier demo's
# (its marker file, or the settings file of a demo older than the marker) or
# empty, never a directory of something else.
if [ -d "$DEMO_DIR" ] && [ ! -e "$DEMO_DIR/.interlink-demo" ] && [ ! -e "$DEMO_DIR/settings" ] && [ -n "$(ls -A "$DEMO_DIR")" ]; then
	die "INTERLINK_DEMO_DIR=$DEMO_DIR holds files that are not a demo's: choose a new or empty directory"
fi
examples/demo/down.sh >/dev/null 2>&1 || true
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR/steps" "$DEMO_DIR/config"
: >"$DEMO_DIR/.interlink-demo"
# Open to traverse (munged and slurmd run as other users); secrets go to config/, 0700.
chmod 755 "$DEMO_DIR"
chmod 700 "$DEMO_DIR/config"
# down.sh reads what to stop from here.
printf 'SIDECAR=%s\nRUNTIME=%s\nEXTERNAL=%s\nNODE=%s\n' "$SIDECAR" "$RUNTIME" "$EXTERNAL" "$NODE" >"$DEMO_DIR/settings"
[ -n "$EXTERNAL" ] && printf 'KUBECONFIG=%s\n' "$KUBECONFIG" >>"$DEMO_DIR/settings"
STEPS=$DEMO_DIR/steps

# start NAME CMD...: a daemon in the background, its log and PID in DEMO_DIR.
start() {
	local name=$1
	shift
	"$@" >"$DEMO_DIR/$name.log" 2>&1 &
	echo $! >"$DEMO_DIR/$name.pid"
}
# job_env FILE: the variables FILE sets (NAME=VALUE lines, exported or not)
# as the SLURM sidecar's JobEnv, which its jobs get.
job_env() {
	printf 'JobEnv:\n'
	(
		set -a
		# shellcheck disable=SC1090
		. "$1"
		python3 - "$1" <<'PY'
import json, os, re, sys
names = sorted(set(re.findall(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", open(sys.argv[1]).read(), re.M)))
for n in names:
    print("  %s: %s" % (n, json.dumps(os.environ[n])))
PY
	)
}
# wait_until WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_until() {
	local what=$1 secs=$2 i
	shift 2
	for i in $(seq $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "$what did not happen within ${secs}s (logs in $DEMO_DIR)"
}

log "preparing (installs and builds happen once; a second run takes seconds)"
if [ -n "$EXTERNAL" ]; then
	if command -v kubectl >/dev/null; then
		K8S_BIN=$(dirname "$(command -v kubectl)")
	else
		EXPECT=720 progress "building kubectl from the Kubernetes Go modules (once)" "$STEPS/k8s-build.log" examples/cluster/build.sh
		K8S_BIN=$(examples/cluster/build.sh)
	fi
else
	EXPECT=720 progress "control-plane binaries from the Kubernetes Go modules (once)" "$STEPS/k8s-build.log" examples/cluster/build.sh
	K8S_BIN=$(examples/cluster/build.sh)
fi
case $SIDECAR in
slurm)
	progress "SLURM, munge and Charliecloud (Debian packages, with apt when missing)" "$STEPS/slurm-install.log" .ci/slurm.sh install
	case $RUNTIME in
	apptainer)
		progress "Apptainer's build and run dependencies (Debian packages, with apt when missing)" \
			"$STEPS/apptainer-install.log" .ci/apptainer.sh install
		EXPECT=900 progress "Apptainer from its Go module (once)" "$STEPS/apptainer-build.log" .ci/apptainer.sh build
		APPTAINER_BIN=$(.ci/apptainer.sh build 2>/dev/null)
		;;
	podman) progress "Podman and runc (Debian packages, with apt when missing)" "$STEPS/podman-install.log" .ci/podman.sh install ;;
	esac
	IMAGE_ROOT=${DEMO_IMAGE_ROOT:-$DEMO_DIR/images/ch}
	if [ -z "${DEMO_IMAGE_ROOT:-}" ] || [ "$RUNTIME" = podman ]; then
		# busybox and the pod-behavior suite's images, built offline once
		# (mmdebstrap, docker build), as ch-image storage and a docker save.
		progress "the test images' tools (Debian packages, with apt when missing)" "$STEPS/images-install.log" .ci/images.sh install
		EXPECT=180 progress "the test images (once)" "$STEPS/images.log" .ci/images.sh build "$DEMO_DIR/images"
	fi
	;;
docker) progress "Docker Engine (Debian's docker.io, with apt when missing)" "$STEPS/docker-install.log" .ci/docker.sh install ;;
esac
if [ -z "$EXTERNAL" ]; then
	EXPECT=450 progress "metrics-server from its Go module (once)" "$STEPS/metrics-server-build.log" \
		examples/cluster/build.sh metrics-server
fi
if [ "$AUTH" = oidc ]; then
	EXPECT=210 progress "Ory Hydra, the OIDC provider, from its Go modules (once)" "$STEPS/hydra-build.log" .ci/hydra.sh build
fi
kubectl() { "$K8S_BIN/kubectl" "$@"; }

log "starting the stack on loopback"
if [ -z "$EXTERNAL" ]; then
	progress "a Kubernetes control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager)" \
		"$STEPS/cluster.log" examples/cluster/cluster.sh up "$DEMO_DIR/cluster"
	. "$DEMO_DIR/cluster/env"
	read -r KUBELET_CERT KUBELET_KEY < <(examples/cluster/cluster.sh kubelet-cert "$DEMO_DIR/cluster" "$NODE")
fi
export KUBECONFIG

SOCK=$DEMO_DIR/sidecar.sock
case $SIDECAR in
slurm)
	progress "a private SLURM (munged, slurmctld, slurmd with two fake GPUs)" "$STEPS/slurm-up.log" .ci/slurm.sh up "$DEMO_DIR/slurm"
	. "$DEMO_DIR/slurm/env"
	export SLURM_CONF
	mkdir -p "$DEMO_DIR/jobs"
	cat >"$DEMO_DIR/config/slurm.yaml" <<YAML
# interlink-slurm: one SLURM job per pod, containers run by $RUNTIME.
Listen: unix://$SOCK
DataRootFolder: $DEMO_DIR/jobs
StatePath: $DEMO_DIR/slurm-sidecar.db
Runtime: $RUNTIME
ImageRoot: $IMAGE_ROOT
Partition: debug
YAML
	case $RUNTIME in
	apptainer)
		# The jobs run as root here, and root's capabilities on these machines
		# are not all Apptainer asks for: --userns runs it in a user namespace
		# (docs/slurm.md). --containall and --no-home are the defaults.
		cat >>"$DEMO_DIR/config/slurm.yaml" <<YAML
ApptainerPath: $APPTAINER_BIN/apptainer
SingularityDefaultOptions: [--containall, --no-home, --userns]
YAML
		;;
	podman)
		# A private Podman (storage and config in the demo's directory), the
		# test images loaded; its jobs get the environment that selects it.
		progress "a private Podman" "$STEPS/podman-up.log" .ci/podman.sh up "$DEMO_DIR/podman"
		progress "the test images loaded into it" "$STEPS/podman-load.log" .ci/podman.sh load "$DEMO_DIR/podman" "$DEMO_DIR/images/images.tar"
		# The sidecar shares the jobs' host and image storage: it checks
		# each image at create (a missing one waits as ErrImagePull).
		echo "PodmanLocalStorage: true" >>"$DEMO_DIR/config/slurm.yaml"
		job_env "$DEMO_DIR/podman/env" >>"$DEMO_DIR/config/slurm.yaml" || die "could not read $DEMO_DIR/podman/env"
		set -a
		# shellcheck disable=SC1091 # written by .ci/podman.sh up
		. "$DEMO_DIR/podman/env"
		set +a
		;;
	esac
	[ -z "$SLURM_EXTRA" ] || cat "$SLURM_EXTRA" >>"$DEMO_DIR/config/slurm.yaml"
	start sidecar "$BIN/interlink-slurm" --config "$DEMO_DIR/config/slurm.yaml"
	;;
docker)
	progress "a private dockerd and containerd" "$STEPS/docker-up.log" .ci/docker.sh up "$DEMO_DIR/docker"
	. "$DEMO_DIR/docker/env"
	export DOCKER_HOST
	# The private dockerd has no default bridge (--bridge=none): the pods
	# get a bridge network of their own, which this host reaches (network
	# probes, one pod calling another by its pod IP).
	docker network inspect interlink-demo >/dev/null 2>&1 ||
		docker network create --driver bridge interlink-demo >"$STEPS/docker-network.log" 2>&1 ||
		die "docker network create: $(tail -5 "$STEPS/docker-network.log")"
	cat >"$DEMO_DIR/config/docker.yaml" <<YAML
# interlink-docker: pods as containers on the private dockerd, on its
# interlink-demo bridge network; busybox holds each pod's namespaces.
Listen: unix://$SOCK
DockerHost: $DOCKER_HOST
DataRootFolder: $DEMO_DIR/pods
NetworkMode: interlink-demo
PauseImage: busybox:latest
PauseCommand: [sleep, "2147483647"]
YAML
	start sidecar "$BIN/interlink-$SIDECAR" --config "$DEMO_DIR/config/docker.yaml"
	;;
esac

(umask 077 && : >"$DEMO_DIR/config/vk-token")
if [ "$AUTH" = oidc ]; then
	.ci/hydra.sh up "$DEMO_DIR/hydra" 2>"$STEPS/hydra-up.log" || die "hydra: $(tail -5 "$STEPS/hydra-up.log")"
	. "$DEMO_DIR/hydra/env"
	# An OAuth2 client for the virtual node, as a site admin registers one.
	(umask 077 && curl -fsS -X POST -H 'Content-Type: application/json' "$HYDRA_ADMIN/admin/clients" \
		-d "{\"client_name\":\"$NODE\",\"grant_types\":[\"client_credentials\"],\"audience\":[\"$AUDIENCE\"],\"token_endpoint_auth_method\":\"client_secret_basic\"}" \
		>"$DEMO_DIR/config/client.json") || die "could not register an OAuth2 client with Hydra"
	CLIENT_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$DEMO_DIR/config/client.json")
	(umask 077 && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"], end="")' \
		"$DEMO_DIR/config/client.json" >"$DEMO_DIR/config/client-secret")
	cat >"$DEMO_DIR/config/token-refresher.yaml" <<YAML
# interlink-token-refresher: keeps a fresh access token in the VK's token file.
TokenURL: $HYDRA_PUBLIC/oauth2/token
Grant: client_credentials
ClientID: $CLIENT_ID
ClientSecretFile: $DEMO_DIR/config/client-secret
Audience: $AUDIENCE
TokenFile: $DEMO_DIR/config/vk-token
YAML
	start token-refresher "$BIN/interlink-token-refresher" --config "$DEMO_DIR/config/token-refresher.yaml"
	wait_until "the first access token" 20 test -s "$DEMO_DIR/config/vk-token"
	AUTH_YAML="  Issuers: [$HYDRA_PUBLIC]
  Audiences: [$AUDIENCE]"
else
	TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	(umask 077 && printf '%s,%s\n' "$TOKEN" "$NODE" >"$DEMO_DIR/config/tokens.csv" && printf '%s\n' "$TOKEN" >"$DEMO_DIR/config/vk-token")
	AUTH_YAML="  StaticTokensFile: $DEMO_DIR/config/tokens.csv"
fi

IL_PORT=$(free_port)
cat >"$DEMO_DIR/config/interlink.yaml" <<YAML
# interlink: the API the virtual node calls, behind its embedded proxy.
InterlinkAddress: http://127.0.0.1
InterlinkPort: "$IL_PORT"
SidecarService: $SIDECAR
SidecarURL: unix://$SOCK
Auth:
$AUTH_YAML
YAML
start interlink "$BIN/interlink" --config "$DEMO_DIR/config/interlink.yaml"
# ping_interlink: /pinglink with the node's token, sent as a header read
# from standard input (never on a command line others can read).
ping_interlink() {
	printf 'Authorization: Bearer %s\n' "$(<"$DEMO_DIR/config/vk-token")" |
		curl -fsS -X POST -H @- "http://127.0.0.1:$IL_PORT/pinglink"
}
wait_until "interlink answering /pinglink" 30 ping_interlink

KUBELET_PORT=$(free_port)
{
	cat <<YAML
# interlink-vk: the virtual node.
NodeName: $NODE
InterlinkURL: http://127.0.0.1
InterlinkPort: "$IL_PORT"
VKTokenFile: $DEMO_DIR/config/vk-token
Kubeconfig: $KUBECONFIG
KubeletPort: "$KUBELET_PORT"
NodeAddress: $NODE_ADDRESS
StatusInterval: 1s
PingInterval: 2s
YAML
	if [ -n "$SERVICE_ADDRESS" ]; then
		printf 'Services:\n  Enabled: true\n  Address: %s\n' "$SERVICE_ADDRESS"
	fi
	if [ -n "$EXTERNAL" ]; then
		# The CA of the API server's client certificate (kubectl logs) is read by
		# the VK from kube-system/extension-apiserver-authentication (ClientCAConfigMap).
		printf 'KubeletCertMode: csr\nKubeletCertDir: %s\n' "$DEMO_DIR/kubelet-pki"
	else
		printf 'KubeletCertMode: files\nKubeletCertFile: %s\nKubeletKeyFile: %s\nClientCAFile: %s\n' \
			"$KUBELET_CERT" "$KUBELET_KEY" "$CLUSTER_CA"
	fi
} >"$DEMO_DIR/config/vk.yaml"
start interlink-vk "$BIN/interlink-vk" --config "$DEMO_DIR/config/vk.yaml"
if [ -n "$EXTERNAL" ]; then
	# The node asks for its kubelet serving certificate; approve it as an
	# admin would, after checking that the request is the node's: its
	# subject names the node and it was sent with the VK's credentials (the
	# KUBECONFIG's, which are also the approver's here).
	ME=$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}') ||
		die "kubectl auth whoami failed: the cluster must serve SelfSubjectReview (Kubernetes 1.28 or later)"
	# node_csr prints the node's CSR: "NAME" while it waits, "NAME Approved"
	# once approved (by us, or by a cluster that approves these itself).
	node_csr() {
		local name state user
		while read -r name user state; do
			[ "$user" = "$ME" ] || continue
			kubectl get csr "$name" -o jsonpath='{.spec.request}' | base64 -d | openssl req -noout -subject 2>/dev/null |
				grep -q "CN *= *system:node:$NODE\$" && { echo "$name${state:+ $state}"; return 0; }
		done < <(kubectl get csr -o jsonpath='{range .items[?(@.spec.signerName=="kubernetes.io/kubelet-serving")]}{.metadata.name}{" "}{.spec.username}{" "}{.status.conditions[0].type}{"\n"}{end}')
		return 1
	}
	wait_until "the node's certificate signing request" 60 node_csr
	read -r csr state < <(node_csr)
	[ -n "${state:-}" ] || show kubectl certificate approve "$csr"
fi
node_ready() { [ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_until "the virtual node $NODE Ready" 60 node_ready
if [ -z "$EXTERNAL" ]; then
	# kubectl top: metrics-server reads the virtual node's /metrics/resource.
	progress "metrics-server (kubectl top)" "$STEPS/metrics-server.log" examples/cluster/cluster.sh metrics-server "$DEMO_DIR/cluster"
fi

# remote: how the remote side sees the pods (squeue, or docker ps).
remote() {
	case $SIDECAR in
	slurm) show squeue --format='%.8i %.40j %.9T %.10M %.6D %b' ;;
	docker) show docker --host "$DOCKER_HOST" ps --filter label=interlink.io/pod-uid --format 'table {{.Names}}\t{{.Status}}' ;;
	esac
}

# follow POD FINAL...: print the pod each time its phase changes, until it
# reaches one of the FINAL phases; fails after 120 s. The remote view is
# shown once while it runs.
follow() {
	local pod=$1 phase last="" shown="" deadline=$((SECONDS + 120))
	shift
	while [ "$SECONDS" -lt "$deadline" ]; do
		phase=$(kubectl get pod "$pod" -o jsonpath='{.status.phase}' 2>/dev/null || true)
		if [ -n "$phase" ] && [ "$phase" != "$last" ]; then
			kubectl get pod "$pod" --no-headers -o custom-columns='POD:.metadata.name,PHASE:.status.phase,NODE:.spec.nodeName,REMOTE JOB:.metadata.annotations.JobID'
			last=$phase
		fi
		if [ "$phase" = Running ] && [ -z "$shown" ]; then
			remote
			shown=1
		fi
		for f in "$@"; do [ "$phase" = "$f" ] && return 0; done
		sleep 0.2
	done
	die "pod $pod is $last after 120 s (logs in $DEMO_DIR)"
}

say "the virtual node, Ready (kubectl get nodes)"
show kubectl get nodes -o wide

say "a pod through its lifecycle: Pending -> Running -> Succeeded (examples/pods/hello.yaml)"
show kubectl apply -f examples/pods/hello.yaml
follow hello Succeeded Failed
[ "$(kubectl get pod hello -o jsonpath='{.status.phase}')" = Succeeded ] || die "pod hello did not succeed"
say "its logs, read through the virtual node's kubelet API"
show kubectl logs hello

say "a failing pod keeps its exit code and reason (examples/pods/failing.yaml)"
show kubectl apply -f examples/pods/failing.yaml
follow failing Failed Succeeded
show kubectl get pod failing -o jsonpath='{.metadata.name}: phase {.status.phase}, reason {.status.containerStatuses[0].state.terminated.reason}, exit code {.status.containerStatuses[0].state.terminated.exitCode}{"\n"}'
show kubectl logs failing

say "a long-running pod: follow its logs, then delete it (examples/pods/long-running.yaml)"
show kubectl apply -f examples/pods/long-running.yaml
follow ticker Running Failed Succeeded
if [ "$SIDECAR" = slurm ]; then
	say "how its job runs the container ($RUNTIME), from the job's script in SLURM"
	job=$(kubectl get pod ticker -o jsonpath='{.metadata.annotations.JobID}')
	case $RUNTIME in
	apptainer) run_line='apptainer (--quiet )?exec ' ;;
	charliecloud) run_line='ch-run ' ;;
	podman) run_line='podman run ' ;;
	esac
	printf "\033[2m\$ scontrol write batch_script %s - | grep -E '%s'\033[0m\n" "$job" "$run_line"
	scontrol write batch_script "$job" - | grep -E -- "$run_line" || die "no '$run_line' line in job $job's script"
fi
# Follow its logs until its third line (the container may still be starting
# when the pod turns Running on a busy machine), for at most 60 s.
printf "\033[2m\$ kubectl logs -f ticker | sed '/^tick 3\$/q'\033[0m\n"
{ timeout 60 "$K8S_BIN/kubectl" logs -f ticker || true; } | sed '/^tick 3$/q'
show kubectl delete pod ticker --wait=true --timeout=60s
say "nothing is left running on the remote side"
remote

say "cleaning up the pods of the demo"
show kubectl delete pod hello failing --wait=true --timeout=60s

where="" runs=""
[ -z "$EXTERNAL" ] && where=" on a local control plane"
case $SIDECAR in
slurm) look="SLURM_CONF=$SLURM_CONF squeue" runs=" (containers run by $RUNTIME)" ;;
docker) look="docker --host $DOCKER_HOST ps" ;;
esac
cat <<MSG

$(printf '\033[1m')The virtual node $NODE is running$where, in front of interlink (auth: $AUTH)
and the $SIDECAR sidecar$runs.$(printf '\033[0m') Try the other examples:

  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$K8S_BIN/kubectl
  kubectl apply -f examples/pods/     # hello, env and args, volumes, init containers, a Job, a GPU, SLURM flags ...
  kubectl get pods -w
  kubectl top pod                     # what the pods use at the remote side$( [ -n "$EXTERNAL" ] && printf ' (with the cluster'"'"'s metrics-server)')
  $look

Configuration and logs are in $DEMO_DIR. Stop everything with: make demo-down
MSG
