#!/usr/bin/env bash
# A private Docker Engine (Debian docker.io 20.10) with its own containerd and a
# busybox:latest image, and a private registry (Debian docker-registry 2.8) with
# basic auth. Everything lives under DIR; nothing listens off loopback.
#
#   .ci/docker.sh install           apt-get what is missing (root only)
#   .ci/docker.sh up DIR            start containerd and dockerd, import busybox:latest;
#                                   writes DIR/env (DOCKER_HOST=unix://DIR/docker.sock)
#   .ci/docker.sh down DIR          stop them by PID, unmount what is left under DIR, delete
#                                   the host interfaces of its bridge networks
#   .ci/docker.sh restart DIR       restart dockerd (containers and images are kept)
#   .ci/docker.sh registry-up DIR USER PASSWORD [DOCKER_DIR]
#                                   registry on 127.0.0.1 (plain HTTP, basic auth), holding
#                                   busybox pushed by the dockerd of DOCKER_DIR (default:
#                                   $DOCKER_DIR) as test/busybox:latest; writes DIR/registry.env
#   .ci/docker.sh registry-down DIR stop it by PID
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

export DEBIAN_FRONTEND=noninteractive

# package:command pairs; a package counts as present when its command is.
# dockerd, not docker: a client-only /usr/local/bin/docker may be there.
REQUIRED=(docker.io:dockerd busybox-static: apache2-utils:htpasswd)
# Installed when apt has them; the registry subcommands need docker-registry
# (Debian 12 has it: 2.8.2) and die clearly when it is missing. docker-compose
# (Debian 12: 1.29.2) is for tests that want it.
OPTIONAL=(docker-registry:docker-registry docker-compose:docker-compose)

# The client of docker.io matches its daemon; any other docker client
# negotiates the API version down to the daemon's (1.41).
if [ -x /usr/bin/docker ]; then DOCKER_CLI=/usr/bin/docker; else DOCKER_CLI=docker; fi

has() { # has PKG:CMD
	local pkg=${1%%:*} cmd=${1#*:}
	if [ -n "$cmd" ]; then
		PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1
	else
		# busybox-static: the dynamic busybox would not run in the image
		dpkg -s "$pkg" >/dev/null 2>&1
	fi
}

candidate() { # candidate PKG: true when apt knows an installable version of PKG
	local c
	c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	[ -n "$c" ] && [ "$c" != "(none)" ]
}

install() {
	local missing=() optional=() p pkg
	for p in "${REQUIRED[@]}"; do has "$p" || missing+=("${p%%:*}"); done
	for p in "${OPTIONAL[@]}"; do has "$p" || optional+=("${p%%:*}"); done
	[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		[ ${#missing[@]} -eq 0 ] && return 0 # optional ones are only nice to have
		die "missing packages: ${missing[*]}; run '.ci/docker.sh install' as root"
	fi
	# Update only when a required package is missing, or when apt has no
	# package lists at all (a new machine); an optional package that apt does
	# not know is skipped rather than updating the lists on every run.
	if [ ${#missing[@]} -gt 0 ] || ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		log "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
	fi
	for pkg in "${optional[@]}"; do
		if ! candidate "$pkg"; then
			log "$pkg is not available from apt; skipping it"
			continue
		fi
		log "installing $pkg"
		apt-get install -y -qq --no-install-recommends "$pkg" >&2 || log "could not install $pkg; going on without it"
	done
}

running() { # running FILE NAME: the PID in FILE is a live NAME
	[ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ] && alive "$(cat "$1")"
}

# busybox_tar prints the path of a busybox root filesystem tarball (the
# RECIPES.md one, plus etc/passwd and etc/group), built once per busybox
# version into $INTERLINK_CACHE.
busybox_tar() {
	local ver dir root tar d
	dpkg -s busybox-static >/dev/null 2>&1 || die "busybox-static is missing; run '.ci/docker.sh install' as root"
	ver=$(dpkg-query -W -f='${Version}' busybox-static | tr -c 'A-Za-z0-9.+~\n-' _)
	dir=$INTERLINK_CACHE/busybox
	tar=$dir/busybox-$ver.tar
	if [ ! -s "$tar" ]; then
		log "building $tar"
		mkdir -p "$dir"
		root=$(mktemp -d "$dir/rootfs.XXXXXX")
		for d in bin proc sys dev tmp etc usr/bin sbin usr/sbin home root; do mkdir -p "$root/$d"; done
		chmod 1777 "$root/tmp"
		cp /bin/busybox "$root/bin/busybox"
		chroot "$root" /bin/busybox --install -s
		printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
		printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
		tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
		rm -rf "$root"
	fi
	printf '%s\n' "$tar"
}

# containerd of its own: without --containerd, dockerd 20.10 uses
# /run/containerd/containerd.sock whenever that exists (shared with any other
# dockerd then) and only otherwise starts a containerd under its exec-root.
start_containerd() {
	local dir=$1 c=$1/containerd pid
	running "$c/containerd.pid" containerd && return 0
	mkdir -p "$c"
	rm -f "$c/containerd.sock" "$c/containerd.sock.ttrpc"
	cat >"$c/config.toml" <<CONF
# Written by .ci/docker.sh up: the private containerd of the dockerd in $dir.
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
CONF
	setsid containerd --config "$c/config.toml" </dev/null >>"$c/containerd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$c/containerd.pid"
	for _ in $(seq 100); do
		[ -S "$c/containerd.sock" ] && break
		alive "$pid" || break
		sleep 0.1
	done
	if [ ! -S "$c/containerd.sock" ] || ! running "$c/containerd.pid" containerd; then
		tail -20 "$c/containerd.log" >&2 || true
		die "containerd did not start (log: $c/containerd.log)"
	fi
}

start_dockerd() {
	local dir=$1 t0 i
	running "$dir/dockerd.pid" dockerd && die "dockerd already runs in $dir; run '.ci/docker.sh down $dir' first"
	start_containerd "$dir"
	# Its own config file: /etc/docker/daemon.json is not read. The trust key
	# would otherwise go to /etc/docker/key.json.
	printf '{"deprecated-key-path": "%s/key.json"}\n' "$dir" >"$dir/daemon.json"
	rm -f "$dir/docker.sock"
	t0=$(date +%s%N)
	setsid dockerd --config-file "$dir/daemon.json" \
		--data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
		-H "unix://$dir/docker.sock" --containerd "$dir/containerd/containerd.sock" \
		--bridge=none --iptables=false --ip6tables=false \
		</dev/null >>"$dir/dockerd.log" 2>&1 &
	for i in $(seq 300); do
		if "$DOCKER_CLI" -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
			log "dockerd in $dir answers after $(((($(date +%s%N) - t0) / 1000000))) ms"
			return 0
		fi
		[ "$i" -gt 20 ] && ! running "$dir/dockerd.pid" dockerd && break
		sleep 0.1
	done
	tail -30 "$dir/dockerd.log" >&2 || true
	die "dockerd in $dir did not answer within 30 s (log: $dir/dockerd.log)"
}

dk() { # dk DIR ARGS...: the docker client on the dockerd of DIR
	local dir=$1
	shift
	DOCKER_HOST="unix://$dir/docker.sock" "$DOCKER_CLI" "$@"
}

up() {
	local dir=$1 tar
	install
	dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
	start_dockerd "$dir"
	if ! dk "$dir" image inspect busybox:latest >/dev/null 2>&1; then
		tar=$(busybox_tar)
		dk "$dir" import --change 'CMD ["/bin/sh"]' "$tar" busybox:latest >/dev/null ||
			die "docker import of $tar failed"
	fi
	printf 'export DOCKER_HOST=unix://%s/docker.sock\n' "$dir" >"$dir/env"
	[ "$(dk "$dir" run --rm --network none busybox echo hi)" = hi ] || die "busybox does not run on the dockerd in $dir"
	cat "$dir/env"
}

# reap_shims DIR: kill containerd shims left by the containerd of DIR (when
# dockerd or containerd had to be killed) and the containers they hold.
reap_shims() {
	local want="$1/containerd/containerd.sock" p pid c
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		case $(cat "$p/comm" 2>/dev/null) in containerd-shim*) ;; *) continue ;; esac
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$want" || continue
		log "killing leftover shim $pid and its container"
		for c in $(pgrep -P "$pid"); do kill -KILL "$c" 2>/dev/null || true; done
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# unmount_under DIR: unmount every mount point at or below DIR, deepest first
# (RECIPES.md names DIR/exec/netns/default; not seen with --bridge=none, but a
# killed dockerd leaves container overlays and netns mounts).
unmount_under() {
	local dir=$1 m
	awk -v d="$dir" '{ m = $2; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print m }' /proc/mounts |
		sort -r | while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
	done
}

stop_dockerd() {
	local dir=$1
	stop_pid "$dir/dockerd.pid" dockerd 15
	rm -f "$dir/docker.sock"
}

# record_bridges DIR: append the host interfaces of the bridge networks of
# the dockerd in DIR to DIR/bridges. dockerd never deletes a bridge's
# interface when it stops, and each one left holds an address pool (a /16 or
# a /20 of the 31 dockerd has by default): a machine that ran the demo 31
# times could not create another network ("could not find an available,
# non-overlapping IPv4 address pool").
record_bridges() {
	local dir=$1 id name
	for id in $(timeout 10 "$DOCKER_CLI" -H "unix://$dir/docker.sock" network ls -q --no-trunc --filter driver=bridge 2>/dev/null); do
		name=$(timeout 10 "$DOCKER_CLI" -H "unix://$dir/docker.sock" network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$id" 2>/dev/null) || name=
		[ -n "$name" ] || name=br-${id:0:12}
		# docker0 is the default bridge of the host's own dockerd (this one
		# runs with --bridge=none): never ours to delete.
		[ "$name" != docker0 ] || continue
		grep -qxF "$name" "$dir/bridges" 2>/dev/null || printf '%s\n' "$name" >>"$dir/bridges"
	done
}

# delete_bridges DIR: delete the interfaces DIR/bridges names that are still
# there (a dockerd stops without deleting them; a killed one cannot).
delete_bridges() {
	local dir=$1 name
	[ -s "$dir/bridges" ] || return 0
	while IFS= read -r name; do
		[ -n "$name" ] && [ -e "/sys/class/net/$name/bridge" ] || continue
		ip link delete "$name" type bridge 2>/dev/null || log "could not delete the bridge $name"
	done <"$dir/bridges"
	rm -f "$dir/bridges"
}

down() {
	local dir=$1 ids
	[ -d "$dir" ] || return 0
	dir=$(cd "$dir" && pwd)
	if running "$dir/dockerd.pid" dockerd; then
		record_bridges "$dir"
		# Kill running containers first: dockerd would give each 10 s to stop.
		ids=$(timeout 10 "$DOCKER_CLI" -H "unix://$dir/docker.sock" ps -q 2>/dev/null) || ids=
		# shellcheck disable=SC2086
		[ -z "$ids" ] || timeout 20 "$DOCKER_CLI" -H "unix://$dir/docker.sock" kill $ids >/dev/null 2>&1 || true
	fi
	stop_dockerd "$dir"
	stop_pid "$dir/containerd/containerd.pid" containerd 15
	reap_shims "$dir"
	unmount_under "$dir"
	delete_bridges "$dir"
}

restart() {
	local dir=$1
	[ -f "$dir/daemon.json" ] || die "no dockerd in $dir; run '.ci/docker.sh up $dir' first"
	dir=$(cd "$dir" && pwd)
	stop_dockerd "$dir"
	# the network namespace is mounted again at start
	unmount_under "$dir/exec/netns"
	start_dockerd "$dir"
}

# registry-up DIR USER PASSWORD [DOCKER_DIR]: Debian's docker-registry
# (distribution 2.8) on 127.0.0.1:PORT over plain HTTP, with htpasswd (bcrypt)
# basic auth for USER. dockerd allows plain HTTP to 127.0.0.0/8 registries
# (its default insecure registries). busybox:latest of the dockerd in
# DOCKER_DIR is pushed as 127.0.0.1:PORT/test/busybox:latest, then logged out
# and untagged so that a later pull must come from the registry. The docker
# client's login goes to DIR/client (DOCKER_CONFIG), not to ~/.docker.
registry_up() {
	local dir=$1 user=$2 pass=$3 ddir=${4:-${DOCKER_DIR:-}} port reg img out
	install
	command -v docker-registry >/dev/null 2>&1 ||
		die "docker-registry is not installed (Debian package docker-registry); the registry subcommands need it"
	command -v htpasswd >/dev/null 2>&1 || die "htpasswd is missing; run '.ci/docker.sh install' as root"
	[ -n "$ddir" ] || die "no dockerd to push with: give its DIR as the 4th argument or in DOCKER_DIR"
	ddir=$(cd "$ddir" && pwd)
	[ -S "$ddir/docker.sock" ] || die "no dockerd runs in $ddir; run '.ci/docker.sh up $ddir' first"
	dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
	running "$dir/registry.pid" docker-registry && die "a registry already runs in $dir; run '.ci/docker.sh registry-down $dir' first"
	mkdir -p "$dir/storage" "$dir/client"
	chmod 700 "$dir/client"
	rm -f "$dir/htpasswd"
	printf '%s\n' "$pass" | htpasswd -B -i -c "$dir/htpasswd" "$user" 2>/dev/null || die "htpasswd failed"
	port=$(free_port)
	reg=127.0.0.1:$port
	img=$reg/test/busybox:latest
	cat >"$dir/config.yml" <<CONF
# Written by .ci/docker.sh registry-up.
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $reg
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
auth:
  htpasswd:
    realm: interlink-test-registry
    path: $dir/htpasswd
CONF
	setsid docker-registry serve "$dir/config.yml" </dev/null >>"$dir/registry.log" 2>&1 &
	echo $! >"$dir/registry.pid"
	for _ in $(seq 100); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$reg/v2/" 2>/dev/null)" = 401 ] && break
		running "$dir/registry.pid" docker-registry || break
		sleep 0.1
	done
	if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$reg/v2/" 2>/dev/null)" != 401 ]; then
		tail -20 "$dir/registry.log" >&2 || true
		die "the registry in $dir does not answer 401 on http://$reg/v2/"
	fi
	{
		printf 'export REGISTRY=%q\n' "$reg"
		printf 'export REGISTRY_IMAGE=%q\n' "$img"
		printf 'export REGISTRY_USER=%q\n' "$user"
		printf 'export REGISTRY_PASSWORD=%q\n' "$pass"
	} >"$dir/registry.env"
	chmod 600 "$dir/registry.env"

	export DOCKER_CONFIG=$dir/client
	login "$ddir" "$reg" "$user" "$pass"
	dk "$ddir" tag busybox:latest "$img"
	dk "$ddir" push "$img" >/dev/null || die "docker push $img failed"
	dk "$ddir" logout "$reg" >/dev/null
	dk "$ddir" rmi "$img" >/dev/null
	# An anonymous pull must be refused (dockerd 20.10 says: Error response
	# from daemon: Head "http://REGISTRY/v2/test/busybox/manifests/latest":
	# no basic auth credentials)...
	if out=$(dk "$ddir" pull "$img" 2>&1); then
		die "the registry at $reg let an anonymous pull through"
	fi
	case $out in *"no basic auth credentials"* | *unauthorized*) ;; *) die "anonymous pull failed oddly: $out" ;; esac
	# ...and one with the credentials must work.
	login "$ddir" "$reg" "$user" "$pass"
	dk "$ddir" pull "$img" >/dev/null || die "docker pull $img failed after login"
	dk "$ddir" logout "$reg" >/dev/null
	dk "$ddir" rmi "$img" >/dev/null
	cat "$dir/registry.env"
}

# login DOCKER_DIR REGISTRY USER PASSWORD (into $DOCKER_CONFIG; its warning
# about the unencrypted password is shown only when the login fails)
login() {
	local out
	out=$(printf '%s\n' "$4" | dk "$1" login -u "$3" --password-stdin "$2" 2>&1) ||
		die "docker login $2 failed: $out"
}

registry_down() {
	stop_pid "$1/registry.pid" docker-registry 15
}

usage() { sed -n '2,15p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
case $1 in
install) [ $# -eq 1 ] || usage; install ;;
up) [ $# -eq 2 ] || usage; up "$2" ;;
down) [ $# -eq 2 ] || usage; down "$2" ;;
restart) [ $# -eq 2 ] || usage; restart "$2" ;;
registry-up) [ $# -eq 4 ] || [ $# -eq 5 ] || usage; registry_up "$2" "$3" "$4" "${5:-}" ;;
registry-down) [ $# -eq 2 ] || usage; registry_down "$2" ;;
*) usage ;;
esac
