#!/usr/bin/env bash
# Apptainer (and its singularity alias), built once from the Go module proxy
# into the cache: Debian 12 does not package it, and the proxy serves
# github.com/apptainer/apptainer up to v1.3.6 (RECIPES.md). Unprivileged
# build (--without-suid): it runs containers in user namespaces, which is
# what these machines allow (root needs --userns: docs/slurm.md).
#
#   .ci/apptainer.sh install   apt-get what the build and the runtime need (root only)
#   .ci/apptainer.sh build     print the bin directory (apptainer, singularity),
#                              building it into $INTERLINK_CACHE/apptainer-VERSION
#                              if needed (about 10-15 minutes cold, at low priority)
# Logs go to stderr; stdout is the bin directory only.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

export DEBIAN_FRONTEND=noninteractive

APPTAINER_VERSION=1.3.6
# What the build needs (a C compiler, libseccomp, pkg-config) and what
# Apptainer runs (newuidmap, mksquashfs, fakeroot, cryptsetup).
PACKAGES=(build-essential libseccomp-dev pkg-config uidmap squashfs-tools fakeroot cryptsetup)

install() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; run '.ci/apptainer.sh install' as root"
	log "installing ${missing[*]}"
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
}

# Removed on every exit path of a build that did not finish.
WORK=''
cleanup() {
	local rc=$?
	[ -z "$WORK" ] || chmod -R u+w "$WORK" 2>/dev/null || true
	[ -z "$WORK" ] || rm -rf --one-file-system "$WORK" || log "could not remove $WORK"
	exit "$rc"
}

# compile SRC PREFIX DEST: configure, make and install the source tree SRC
# for PREFIX, staged under DEST (DESTDIR). Apptainer's make runs `go clean
# -cache` before building its starter: it gets a Go build cache of its own
# (in the work directory), never the machine's.
compile() {
	local src=$1 prefix=$2 dest=$3
	export GOCACHE=$src/.gocache
	cd "$src"
	./mconfig --without-suid -b builddir -p "$prefix"
	make -C builddir
	make -C builddir install DESTDIR="$dest"
}

build() {
	local prefix="$INTERLINK_CACHE/apptainer-$APPTAINER_VERSION" dir src p t0=$SECONDS
	exec 3>&1 >&2 # stdout: the bin directory only
	if [ ! -x "$prefix/bin/apptainer" ]; then
		mkdir -p "$INTERLINK_CACHE"
		exec 9>"$INTERLINK_CACHE/.apptainer.lock"
		if ! flock -n 9; then
			log "waiting for another .ci/apptainer.sh build to release $INTERLINK_CACHE/.apptainer.lock"
			flock 9
		fi
	fi
	if [ -x "$prefix/bin/apptainer" ]; then
		log "Apptainer $APPTAINER_VERSION is in the cache ($prefix)"
		printf '%s\n' "$prefix/bin" >&3
		return
	fi
	for p in "${PACKAGES[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || die "$p is missing; run '.ci/apptainer.sh install' as root"
	done
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# Under the lock no other build runs: what is left of one was killed.
	rm -rf --one-file-system "$prefix".tmp.*
	log "building Apptainer $APPTAINER_VERSION into $prefix (once; about 10-15 minutes)"
	WORK=$(mktemp -d "$prefix.tmp.XXXXXX")
	# Outside any module (the work directory): the project's go.mod and
	# GOFLAGS play no part.
	dir=$(cd "$WORK" && GOFLAGS='' go mod download -json "github.com/apptainer/apptainer@v$APPTAINER_VERSION" |
		python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])') ||
		die "go mod download of github.com/apptainer/apptainer@v$APPTAINER_VERSION failed"
	# The module cache is read-only and its zip lost the run bits; there is
	# no .git for the version either.
	src=$WORK/src
	cp -r "$dir" "$src"
	chmod -R u+w "$src"
	chmod +x "$src/mconfig" "$src"/makeit/* "$src"/scripts/* "$src"/mlocal/scripts/*
	find "$src" -type f \( -name '*.sh' -o -name '*.awk' \) -exec chmod +x {} +
	echo "$APPTAINER_VERSION" >"$src/VERSION"
	progress "mconfig, make and make install of Apptainer $APPTAINER_VERSION" "$WORK/build.log" \
		nice -n 19 bash -c "$(declare -f compile); compile \"\$@\"" compile "$src" "$prefix" "$WORK/dest" ||
		die "the Apptainer build failed (see above)"
	[ -x "$WORK/dest$prefix/bin/apptainer" ] || die "the build left no $WORK/dest$prefix/bin/apptainer"
	"$WORK/dest$prefix/bin/apptainer" --version >&2 || true
	# Into place in one rename: the cache never holds half a build.
	mv -T "$WORK/dest$prefix" "$prefix" || die "could not move the build to $prefix"
	log "Apptainer $APPTAINER_VERSION built into $prefix in $((SECONDS - t0))s"
	printf '%s\n' "$prefix/bin" >&3
}

usage() { sed -n '2,12p' "$0"; exit 2; }
case ${1:-} in
install) [ $# -eq 1 ] || usage; install ;;
build) [ $# -eq 1 ] || usage; build ;;
*) usage ;;
esac
