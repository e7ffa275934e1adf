#!/usr/bin/env bash
# Ory Hydra, a real OIDC provider, built from its Go modules once into the
# cache (about 4 minutes cold) and started on free loopback ports.
#
#   .ci/hydra.sh build        print the binary's path, building it if needed
#   .ci/hydra.sh up DIR       start it; writes DIR/env (HYDRA_PUBLIC, HYDRA_ADMIN)
#   .ci/hydra.sh down DIR     stop it by PID
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

HYDRA_VERSION=v2.3.0
# Hydra does not build without this replace (see the recipes).
POP_REPLACE=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b

build() {
	local dir="$INTERLINK_CACHE/hydra-$HYDRA_VERSION"
	if [ -x "$dir/bin/hydra" ]; then
		printf '%s\n' "$dir/bin/hydra"
		return
	fi
	log "building Ory Hydra $HYDRA_VERSION into $dir (once; about 4 minutes)"
	mkdir -p "$dir/src" "$dir/bin"
	(
		cd "$dir/src"
		[ -f go.mod ] || go mod init hydra-build >/dev/null 2>&1
		go mod edit -replace "github.com/gobuffalo/pop/v6=$POP_REPLACE"
		go get -tool "github.com/ory/hydra/v2@$HYDRA_VERSION"
		GOBIN="$dir/bin" GOFLAGS=-buildvcs=false go install -tags sqlite github.com/ory/hydra/v2
	) >&2 || die "could not build Hydra"
	printf '%s\n' "$dir/bin/hydra"
}

up() {
	local dir=$1 hydra public admin
	hydra=$(build)
	mkdir -p "$dir"
	chmod 700 "$dir"
	public=$(free_port)
	admin=$(free_port)
	cat >"$dir/env" <<ENV
export HYDRA_PUBLIC=http://127.0.0.1:$public
export HYDRA_ADMIN=http://127.0.0.1:$admin
export HYDRA_BIN=$hydra
ENV
	export DSN="sqlite://$dir/db.sqlite?_fk=true" URLS_SELF_ISSUER="http://127.0.0.1:$public" \
		SECRETS_SYSTEM="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
		SERVE_PUBLIC_HOST=127.0.0.1 SERVE_PUBLIC_PORT="$public" SERVE_ADMIN_HOST=127.0.0.1 SERVE_ADMIN_PORT="$admin" \
		STRATEGIES_ACCESS_TOKEN=jwt LOG_LEVEL=warn TTL_ACCESS_TOKEN="${HYDRA_TTL_ACCESS_TOKEN:-1h}"
	"$hydra" migrate sql up -e --yes >"$dir/migrate.log" 2>&1 || die "hydra migrate failed: $(tail -5 "$dir/migrate.log")"
	"$hydra" serve all --dev --sqa-opt-out >"$dir/hydra.log" 2>&1 &
	echo $! >"$dir/hydra.pid"
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$public/.well-known/openid-configuration" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -20 "$dir/hydra.log" >&2
	die "hydra did not come up"
}

down() {
	local f="$1/hydra.pid"
	[ -f "$f" ] || return 0
	kill "$(cat "$f")" 2>/dev/null || true
	rm -f "$f"
}

case ${1:-} in
build) build ;;
up) up "$2" ;;
down) down "$2" ;;
*) sed -n '2,8p' "$0"; exit 2 ;;
esac
