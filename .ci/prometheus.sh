#!/usr/bin/env bash
# Prometheus and promtool from Debian (prometheus 2.42).
#
#   .ci/prometheus.sh install     apt-get them when missing (root only)
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

install() {
	command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
	[ "$(id -u)" -eq 0 ] || die "prometheus is missing; run '.ci/prometheus.sh install' as root"
	log "installing prometheus (promtool)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends prometheus >&2 || die "apt-get install prometheus failed"
}

case ${1:-} in
install) install ;;
*) sed -n '2,5p' "$0"; exit 2 ;;
esac
