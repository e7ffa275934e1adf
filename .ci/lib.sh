# Shared shell helpers of the project's scripts. Source it; do not run it.
# shellcheck shell=bash

# Cache of heavy builds, outside the repository, keyed by version.
: "${INTERLINK_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/interlink}"
export INTERLINK_CACHE

GOLANGCI_LINT_VERSION=v2.15.0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# golangci_lint prints the path of golangci-lint, building it once per version.
golangci_lint() {
	local dir="$INTERLINK_CACHE/tools/golangci-lint-$GOLANGCI_LINT_VERSION"
	if [ ! -x "$dir/golangci-lint" ]; then
		log "building golangci-lint $GOLANGCI_LINT_VERSION into $dir (once; about 3 minutes)"
		mkdir -p "$dir"
		(cd "$dir" && GOBIN="$dir" GOFLAGS=-buildvcs=false go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION") >&2 ||
			die "could not build golangci-lint"
	fi
	printf '%s\n' "$dir/golangci-lint"
}

# free_port prints a free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
