#!/usr/bin/env bash
# Runs every fuzz target of the API's and the sidecar SDK's decoders and of the
# SLURM job script's generator, one after another, each for FUZZTIME
# (default 30s). Seeds are in each
# package's testdata/fuzz; the unit tier runs them as plain tests too.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

FUZZTIME=${FUZZTIME:-30s}
PKGS=${FUZZ_PKGS:-"./functions ./functions/api ./functions/client ./sidecars ./sidecars/slurm"}
for pkg in $PKGS; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkg"/*_test.go | sed 's/^func //' | sort -u); do
		log "fuzz $pkg $target for $FUZZTIME"
		go test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" || die "fuzz target $target in $pkg failed"
	done
done
