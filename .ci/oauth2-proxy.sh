#!/usr/bin/env bash
# oauth2-proxy v7.15.4, built once from its Go module into the cache, for the
# side-by-side comparison with interLink's embedded proxy.
#
#   .ci/oauth2-proxy.sh build    print the binary's path, building it if needed
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

VERSION=v7.15.4
dir="$INTERLINK_CACHE/oauth2-proxy-$VERSION"
case ${1:-} in
build)
	if [ ! -x "$dir/bin/oauth2-proxy" ]; then
		log "building oauth2-proxy $VERSION into $dir (once; about 2 minutes)"
		mkdir -p "$dir/src" "$dir/bin"
		(
			cd "$dir/src"
			[ -f go.mod ] || go mod init oauth2-proxy-build >/dev/null 2>&1
			go get -tool "github.com/oauth2-proxy/oauth2-proxy/v7@$VERSION"
			GOBIN="$dir/bin" GOFLAGS=-buildvcs=false go install github.com/oauth2-proxy/oauth2-proxy/v7
		) >&2 || die "could not build oauth2-proxy"
	fi
	printf '%s\n' "$dir/bin/oauth2-proxy"
	;;
*) sed -n '2,6p' "$0"; exit 2 ;;
esac
