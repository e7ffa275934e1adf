#!/usr/bin/env bash
# Podman (Debian bookworm's 4.3) for the SLURM sidecar's podman runtime: a
# private config and image storage under DIR, for root. Podman is daemonless:
# nothing runs between commands.
#
#   .ci/podman.sh install          apt-get podman and runc when missing (root only)
#   .ci/podman.sh up DIR           write DIR/containers.conf, DIR/storage.conf,
#                                  DIR/registries.conf (storage, state and events
#                                  under DIR) and DIR/env exporting CONTAINERS_CONF,
#                                  CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF;
#                                  checks that podman answers with them
#   .ci/podman.sh load DIR TAR     podman load a docker save archive into DIR's
#                                  storage, each image named as Docker names it
#                                  (busybox:latest is docker.io/library/busybox:latest)
#   .ci/podman.sh down DIR         remove DIR's containers, stop what is left of
#                                  them and unmount everything under DIR (DIR's
#                                  files stay; remove DIR afterwards)
#
# On these machines podman works only with runc (crun fails on the hybrid
# cgroup hierarchy), the cgroupfs cgroup manager (no systemd), no network
# namespace by default (no CNI bridge; pods use --network=host) and ulimits
# within root's own (root lacks CAP_SYS_RESOURCE here): RECIPES.md.
set -euo pipefail
CALLER_PWD=$PWD # a relative DIR or TAR is the caller's
cd "$(dirname "$0")/.."
. .ci/lib.sh

export DEBIAN_FRONTEND=noninteractive

# package:command pairs; a package counts as present when its command is.
PACKAGES=(podman:podman runc:runc)

install() {
	local missing=() p pkg cmd
	for p in "${PACKAGES[@]}"; do
		pkg=${p%%:*} cmd=${p#*:}
		PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 && continue
		missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; run '.ci/podman.sh install' as root"
	log "installing ${missing[*]}"
	apt-get update -qq >&2 || die "apt-get update failed"
	# Without recommends: no slirp4netns, fuse-overlayfs or buildah (root
	# uses the kernel's overlay and the host's network).
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
}

abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$CALLER_PWD/$1" ;; esac; }

up() {
	local dir
	dir=$(abs "$1")
	install
	[ "$(id -u)" -eq 0 ] || die "'.ci/podman.sh up' is for root (rootless podman needs subuids and slirp4netns)"
	[[ $dir =~ ^/[A-Za-z0-9_./-]+$ ]] || die "DIR must be a path of letters, digits and _ . / - only (it goes into TOML files), not '$dir'"
	mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/volumes"
	chmod 700 "$dir/storage" "$dir/run" "$dir/tmp"
	cat >"$dir/containers.conf" <<CONF
# Written by .ci/podman.sh up: podman for root, its state under $dir.
[containers]
# No CNI bridge here: pods run with --network=host; other containers get none.
netns = "none"
# Within root's own limits (root lacks CAP_SYS_RESOURCE on these machines).
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
# crun fails on this hybrid cgroup hierarchy; no systemd to manage cgroups.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
# Podman's run-time state (exit files, locks), private to this storage.
tmp_dir = "$dir/tmp"
volume_path = "$dir/volumes"
CONF
	cat >"$dir/storage.conf" <<CONF
# Written by .ci/podman.sh up: images and containers under $dir.
[storage]
driver = "overlay"
runroot = "$dir/run"
graphroot = "$dir/storage"
CONF
	# The SLURM sidecar names images in full (docker.io/library/busybox:latest);
	# a short name typed by hand goes to docker.io without a prompt.
	cat >"$dir/registries.conf" <<CONF
# Written by .ci/podman.sh up.
unqualified-search-registries = ["docker.io"]
short-name-mode = "disabled"
CONF
	cat >"$dir/env" <<ENV
export CONTAINERS_CONF=$dir/containers.conf
export CONTAINERS_STORAGE_CONF=$dir/storage.conf
export CONTAINERS_REGISTRIES_CONF=$dir/registries.conf
ENV
	# shellcheck source=/dev/null
	. "$dir/env"
	local rt
	rt=$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphRoot}}') || die "podman info failed with $dir's config"
	[ "$rt" = "runc $dir/storage" ] || die "podman uses '$rt', not runc and $dir/storage"
	cat "$dir/env"
}

# env_of DIR: source DIR/env (written by up).
env_of() {
	[ -f "$1/env" ] || die "no $1/env: run '.ci/podman.sh up $1' first"
	# shellcheck source=/dev/null
	. "$1/env"
}

# docker_names TAR: "LOADED NAME" per image tag of the docker save archive:
# the name podman 4.3 gives it (a tag without a registry becomes
# localhost/TAG) and the one Docker gives it.
docker_names() {
	/usr/bin/python3 - "$1" <<'PY'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    manifest = json.load(t.extractfile("manifest.json"))
for e in manifest:
    for tag in e.get("RepoTags") or []:
        name = tag
        first = tag.split("/")[0]
        has_domain = "/" in tag and ("." in first or ":" in first or first == "localhost")
        if not has_domain:
            name = ("docker.io/" if "/" in tag else "docker.io/library/") + tag
        print(tag if has_domain else "localhost/" + tag, name)
PY
}

load() {
	local dir tar loaded name
	dir=$(abs "$1") tar=$(abs "$2")
	env_of "$dir"
	[ -f "$tar" ] || die "no archive $tar"
	podman load -q -i "$tar" >&2 || die "podman load -i $tar failed"
	while read -r loaded name; do
		[ "$loaded" = "$name" ] && continue
		podman tag "$loaded" "$name" || die "podman tag $loaded $name failed"
		podman untag "$loaded" "$loaded" || die "podman untag $loaded failed"
	done < <(docker_names "$tar")
	podman images --format '{{.Repository}}:{{.Tag}}'
}

# down DIR: remove the containers (podman stops them), then stop what a
# killed job left (conmon and the container's processes of this storage)
# and unmount whatever is still mounted under DIR, deepest first.
down() {
	local dir p pid mnt
	dir=$(abs "$1")
	[ -d "$dir" ] || return 0
	if [ -f "$dir/env" ] && command -v podman >/dev/null 2>&1; then
		env_of "$dir"
		# A container whose podman was just killed may still be locked: once more.
		timeout 60 podman rm --all --force --time=0 >/dev/null 2>&1 ||
			{ sleep 1 && timeout 60 podman rm --all --force --time=0 >/dev/null 2>&1; } ||
			log "podman rm --all failed in $dir"
	fi
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$(cat "$p/comm" 2>/dev/null)" = conmon ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$dir/storage" || continue
		log "killing conmon $pid (a container of $dir left running)"
		# conmon is its container's subreaper: its children go with it
		for c in $(pgrep -P "$pid"); do kill -KILL "$c" 2>/dev/null || true; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	while IFS= read -r mnt; do
		umount "$mnt" 2>/dev/null || umount -l "$mnt" || log "could not unmount $mnt"
	done < <(awk -v d="$dir/" 'index($5, d) == 1 { print length($5) " " $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
}

usage() { sed -n '2,18p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
case $1 in
install) [ $# -eq 1 ] || usage; install ;;
up) [ $# -eq 2 ] || usage; up "$2" ;;
load) [ $# -eq 3 ] || usage; load "$2" "$3" ;;
down) [ $# -eq 2 ] || usage; down "$2" ;;
*) usage ;;
esac
