#!/usr/bin/env bash
# Builds the control-plane binaries from their Go modules (the tools module
# beside this script) once, into a cache outside the repository keyed by the
# tools module's go.sum and the Go version, and prints that directory.
# `build.sh metrics-server` does the same for metrics-server.
# A cold build takes about 8 minutes and 3 GB of memory; a warm one nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../.ci/lib.sh"

K8S_VERSION=v1.37.2
HELM_VERSION=v3.22.0
METRICS_SERVER_VERSION=v0.8.0

# build.sh metrics-server: metrics-server, built from its Go module with the
# dependencies its go.mod names (go install MODULE@VERSION), into its own
# cache directory, whose path is printed.
if [ "${1:-}" = metrics-server ]; then
	out="$INTERLINK_CACHE/metrics-server/$METRICS_SERVER_VERSION-$(go env GOVERSION)"
	if [ ! -x "$out/metrics-server" ]; then
		log "building metrics-server $METRICS_SERVER_VERSION into $out (once; about 5 minutes)"
		start=$(date +%s)
		mkdir -p "$out"
		GOBIN="$out.tmp" GOFLAGS=-buildvcs=false go install -trimpath -ldflags="-s -w" \
			"sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" >&2
		mv "$out.tmp/metrics-server" "$out/metrics-server"
		rmdir "$out.tmp"
		log "built in $(( $(date +%s) - start ))s"
	fi
	printf '%s\n' "$out"
	exit 0
fi
key=$( (cat "$here/tools/go.sum" "$here/tools/go.mod"; go env GOVERSION) | sha256sum | cut -c1-16)
out="$INTERLINK_CACHE/k8s/$K8S_VERSION-$key"
if [ -f "$out/.complete" ]; then
	printf '%s\n' "$out"
	exit 0
fi
mkdir -p "$out"
log "building kube-apiserver, kube-scheduler, kube-controller-manager, kubectl, helm and etcd $K8S_VERSION into $out (once; about 8 minutes)"
start=$(date +%s)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
cd "$here/tools"
GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w \
	-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$minor \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
	-o "$out/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl helm.sh/helm/v3/cmd/helm >&2
GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 >&2
touch "$out/.complete"
log "built in $(( $(date +%s) - start ))s"
printf '%s\n' "$out"
