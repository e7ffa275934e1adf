#!/usr/bin/env bash
# systemd's offline tools for checking unit files: systemd-analyze verify and
# security --offline (Debian's systemd package). PID 1 need not be systemd:
# nothing is started.
#
#   .ci/systemd.sh install     apt-get systemd when systemd-analyze is missing (root only)
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

export DEBIAN_FRONTEND=noninteractive

install() {
	PATH=$PATH:/usr/sbin:/sbin command -v systemd-analyze >/dev/null 2>&1 && return 0
	[ "$(id -u)" -eq 0 ] || die "systemd-analyze is missing; run '.ci/systemd.sh install' as root"
	log "installing systemd (for systemd-analyze)"
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends systemd >&2 || die "apt-get install systemd failed"
	command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze is still missing after installing systemd"
}

usage() { sed -n '2,6p' "$0"; exit 2; }
[ $# -eq 1 ] || usage
case $1 in
install) install ;;
*) usage ;;
esac
