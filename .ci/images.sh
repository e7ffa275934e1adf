#!/usr/bin/env bash
# The test images of the pod-behavior suite, built offline: nothing is pulled
# from a registry. Debian comes from the apt mirror the machine uses
# (mmdebstrap), busybox from busybox-static (.ci/docker.sh's busybox_tar).
#
#   .ci/images.sh install     apt-get what is missing (root only)
#   .ci/images.sh build OUT   build the images, or copy them from the cache, into
#     OUT/images.tar                   docker save of busybox:latest,
#                                      interlink-test/debian:bookworm, interlink-test/links:1
#     OUT/ch/img/NAME/                 the same images as ch-image 0.31 pull leaves
#                                      them (OUT/ch is a ch-image storage directory;
#                                      NAME: busybox+latest, interlink-test%debian+bookworm,
#                                      interlink-test%links+1), ready for ch-run
#     OUT/rootfs/debian-bookworm.tar   the plain Debian root filesystem
#   Needs root. Prints nothing on stdout; logs on stderr.
#
# The expensive parts are kept in $INTERLINK_CACHE/images: rootfs-KEY.tar (keyed
# on the mmdebstrap arguments, the mirror and its release) and KEY/ (keyed on
# this script, the busybox-static version and the rootfs key). A rerun
# hardlinks from there into OUT, so treat OUT as read-only (copy an image dir
# before writing into it, e.g. with ch-run -w). Builds take a lock and go
# through a temporary directory that is renamed when complete, so concurrent
# runs never see a half-built cache entry.
set -euo pipefail
CALLER_PWD=$PWD # a relative OUT is the caller's
cd "$(dirname "$0")/.."
. .ci/lib.sh

export DEBIAN_FRONTEND=noninteractive
umask 022

# The images. The key of the cache is a hash of this whole file, so any change
# here rebuilds them (the Debian rootfs only when its own key changes).
DEBIAN_SUITE=bookworm
DEBIAN_VARIANT=minbase
DEBIAN_INCLUDE=python3
# mmdebstrap copies the host's /etc/hostname and /etc/resolv.conf into the
# rootfs (mode and all): no hostname, an empty resolv.conf to bind over.
# shellcheck disable=SC2016 # $1 is mmdebstrap's, the rootfs being built
DEBIAN_HOOK='rm -f "$1/etc/hostname" "$1/etc/resolv.conf" && : >"$1/etc/resolv.conf"'
REFS=(busybox:latest interlink-test/debian:bookworm interlink-test/links:1)

# busybox:latest: .ci/docker.sh up imports busybox_tar (the RECIPES.md rootfs
# with etc/passwd and etc/group) as busybox:latest; this adds the empty files
# ch-run binds over and docker run mounts.
dockerfile_busybox() {
	cat <<'EOF'
FROM busybox:latest
COPY etc/ /etc/
CMD ["sh"]
EOF
}

dockerfile_debian() {
	cat <<'EOF'
FROM scratch
ADD rootfs.tar /
ENV IMAGE_VAR="from the image" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /srv/app
ENTRYPOINT ["/bin/echo", "entrypoint"]
CMD ["from-cmd"]
EOF
}

dockerfile_links() {
	cat <<'EOF'
FROM busybox:latest
RUN mkdir -p /var/tmp /run /opt/app && chmod 1777 /var/tmp && \
    rm -rf /tmp /var/run /etc/app && \
    ln -s /var/tmp /tmp && ln -s /run /var/run && ln -s /opt/app /etc/app
CMD ["sh"]
EOF
}

# package:command pairs; a package counts as present when its command is (an
# empty command: when dpkg has it). docker.io and busybox-static come from
# .ci/docker.sh install. ch-run is for the smoke test of the ch-image dirs.
PACKAGES=(mmdebstrap:mmdebstrap python3:/usr/bin/python3 charliecloud-runtime:ch-run)

# The docker.io client matches its daemon (see .ci/docker.sh); the classic
# builder uses local images for FROM (BuildKit would ask a registry).
if [ -x /usr/bin/docker ]; then DOCKER_CLI=/usr/bin/docker; else DOCKER_CLI=docker; fi
export DOCKER_BUILDKIT=0
PYTHON=/usr/bin/python3

install() {
	local missing=() p pkg cmd
	.ci/docker.sh install
	for p in "${PACKAGES[@]}"; do
		pkg=${p%%:*} cmd=${p#*:}
		if [ -n "$cmd" ]; then
			PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 && continue
		else
			dpkg -s "$pkg" >/dev/null 2>&1 && continue
		fi
		missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; run '.ci/images.sh install' as root"
	log "installing ${missing[*]}"
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
}

# step WHAT CMD...: run CMD (a command or a function of this script), logging
# WHAT before and how long it took after.
step() {
	local what=$1 t0=$SECONDS
	shift
	log "$what"
	"$@"
	printf '    %s: done in %ds\n' "$what" $((SECONDS - t0)) >&2
}

sha() { sha256sum | cut -c1-16; }

# ch_name REF: the directory name ch-image gives REF ('/' -> '%', ':' -> '+').
ch_name() {
	local n=${1//\//%}
	printf '%s\n' "${n//:/+}"
}

# debian_source prints "URI VERSION" of the mirror apt uses for the suite's
# main component (e.g. "http://deb.debian.org/debian 12.15"), or the default
# mirror with version "unknown" when apt has no lists for it.
debian_source() {
	local line uri ver
	# shellcheck disable=SC2016 # apt's $(FIELD), not the shell's
	line=$(apt-get indextargets --format '$(REPO_URI) $(VERSION)' "Release: $DEBIAN_SUITE" 'Component: main' \
		'Identifier: Packages' 2>/dev/null | sed -n 1p) || line=
	uri=${line%% *} ver=${line#* }
	[ -n "$uri" ] || { uri=http://deb.debian.org/debian/ ver=unknown; }
	printf '%s %s\n' "${uri%/}" "${ver:-unknown}"
}

# py CMD ARGS...: the Python half of this script (JSON and tar files are read
# with Python's json and tarfile modules, never with grep or sed).
#   py check-rootfs TAR            the Debian rootfs has var/run -> /run,
#                                  usr/bin/python3, etc/passwd and etc/group
#   py tags IMAGES_TAR REF...      the docker save archive holds every REF
#   py ch-image IMAGES_TAR REF DIR DIR holds REF's docker export: turn it into
#                                  what ch-image 0.31 pull leaves
py() {
	"$PYTHON" - "$@" <<'PY'
import json, os, shutil, stat, sys, tarfile
from pathlib import PurePosixPath

def die(msg):
    sys.exit("error: " + msg)

def norm(name):
    "A tar member name as a relative path: no leading / or ./, no trailing /."
    return str(PurePosixPath("/", name).relative_to("/"))

def check_rootfs(path):
    with tarfile.open(path) as t:
        m = {norm(i.name): i for i in t}
    run = m.get("var/run")
    if run is None or not run.issym() or run.linkname != "/run":
        die("%s: var/run is not a symlink to /run" % path)
    for f in ("usr/bin/python3", "etc/passwd", "etc/group"):
        if f not in m:
            die("%s: no %s" % (path, f))

def manifest_entry(t, ref):
    manifest = json.load(t.extractfile("manifest.json"))
    found = [e for e in manifest if ref in (e.get("RepoTags") or [])]
    if len(found) != 1:
        die("%s: %d entries with tag %s in manifest.json" % (t.name, len(found), ref))
    return found[0]

def tags(path, refs):
    with tarfile.open(path) as t:
        for ref in refs:
            manifest_entry(t, ref)

# What docker's init layer (daemon/initlayer) puts in every container, and so
# in docker export: files and the mtab symlink replace what the image has
# (empty, mode 0755), directories are made when missing.
INIT_LAYER = ("dev/pts", "dev/shm", "proc", "sys", ".dockerenv", "etc/resolv.conf",
              "etc/hosts", "etc/hostname", "dev/console", "etc/mtab")

def image_members(t, layers):
    """The paths of the flattened image, each with the layer and member that
    gives it: the layers applied in order, each one's whiteouts first."""
    paths = {}
    for layer in layers:
        with tarfile.open(fileobj=t.extractfile(layer)) as lt:
            names = lt.getnames()
        for name in names:
            p = PurePosixPath(norm(name))
            if not p.name.startswith(".wh."):
                continue
            d = "" if str(p.parent) == "." else str(p.parent) + "/"
            if p.name == ".wh..wh..opq":
                paths = {q: v for q, v in paths.items() if not q.startswith(d)}
            else:
                gone = d + p.name[4:]
                paths = {q: v for q, v in paths.items() if q != gone and not q.startswith(gone + "/")}
        for name in names:
            p = norm(name)
            if not PurePosixPath(p).name.startswith(".wh."):
                paths[p] = (layer, name)
    return paths

def undo_init_layer(t, ref, layers, root):
    "Put back what the image has where docker's init layer replaced it."
    paths = image_members(t, layers)
    removed, restored = [], []
    kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    for p in INIT_LAYER:
        dst = os.path.join(root, p)
        if p.startswith("dev/"):
            continue  # ch_fix drops everything in dev/
        if p not in paths:
            if os.path.lexists(dst):
                remove(dst)
                removed.append(p)
            continue
        layer, name = paths[p]
        with tarfile.open(fileobj=t.extractfile(layer)) as lt:
            m = lt.getmember(name)
            if m.isdir():
                continue
            if os.path.lexists(dst):
                remove(dst)
            lt.extract(m, root, numeric_owner=True, **kw)
            restored.append(p)
    print("    %s: docker export's own files: removed %s; put back from the image: %s"
          % (ref, " ".join(removed) or "none", " ".join(restored) or "none"), file=sys.stderr)

def remove(p):
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    else:
        os.unlink(p)

def ch_fix(root):
    """What ch-image 0.31 does to each layer member (Image.validate_members and
    TarFile.fix_*): no devices or FIFOs, nothing under dev/ and no top-level
    .git*; absolute symlinks made relative; owner root:root; no setuid or
    setgid bits; directories u+rwx, files u+rw. Beyond ch-image, everything is
    made readable by everyone, as the image is root's and used by any user."""
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        for name in list(dirs) + files:
            p = os.path.join(d, name)
            r = name if rel == "." else rel + "/" + name
            st = os.lstat(p)
            if (rel == "." and name.startswith(".git")) or r.startswith("dev/") \
               or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) \
               or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                remove(p)
                if name in dirs:
                    dirs.remove(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                tgt = PurePosixPath(os.readlink(p))
                if tgt.is_absolute():
                    new = PurePosixPath(*([".."] * (len(PurePosixPath(r).parts) - 1)),
                                        *tgt.parts[1:])
                    os.unlink(p)
                    os.symlink(str(new), p)
                    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                os.lchown(p, 0, 0)
                continue
            os.lchown(p, 0, 0)
            mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
            mode |= 0o755 if stat.S_ISDIR(st.st_mode) else 0o644
            os.chmod(p, mode)

# Image.unpack_init and metadata_save of ch-image 0.31.
STANDARD_DIRS = ("bin", "dev", "etc", "mnt", "proc", "sys", "tmp", "usr")
ARG_DEFAULTS = {"FAKEROOTDONTTRYCHOWN": "1",
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TAR_OPTIONS": "--no-same-owner"}

def metadata(config):
    "Image.metadata_init, then metadata_merge_from_config."
    md = {"arch": os.uname().machine, "arg": dict(ARG_DEFAULTS), "cwd": "/", "env": {},
          "history": [], "labels": {}, "shell": ["/bin/sh", "-c"], "volumes": []}
    md["arch"] = {"x86_64": "amd64", "aarch64": "arm64"}.get(md["arch"], md["arch"])
    c = config.get("config")
    if c is None:
        die("config missing key 'config'")
    for dst, v in (("arch", config.get("architecture")), ("cwd", c.get("WorkingDir")),
                   ("labels", c.get("Labels")), ("shell", c.get("Shell"))):
        if v is not None and v != "":
            md[dst] = v
    for line in c.get("Env") or []:
        k, v = line.split("=", 1)
        md["env"][k] = v
    if "history" not in config:
        die("invalid config: missing history")
    md["history"] = config["history"]
    md["volumes"] = list((c.get("Volumes") or {}).keys())
    return md

def ch_image(path, ref, root):
    with tarfile.open(path) as t:
        e = manifest_entry(t, ref)
        blob = t.extractfile(e["Config"]).read()
        undo_init_layer(t, ref, e["Layers"], root)
    ch_fix(root)
    os.chmod(root, 0o755)
    for d in STANDARD_DIRS + tuple("mnt/%d" % i for i in range(10)):
        if not os.path.lexists(os.path.join(root, d)):
            os.makedirs(os.path.join(root, d))
    # ch-image makes hosts and resolv.conf; ch-run 0.31 also needs passwd and group.
    for f in ("hosts", "resolv.conf", "passwd", "group"):
        f = os.path.join(root, "etc", f)
        if not os.path.lexists(f):
            open(f, "w").close()
        if not stat.S_ISREG(os.lstat(f).st_mode):
            die("%s: %s is not a regular file" % (ref, f))
    md = metadata(json.loads(blob))
    ch = os.path.join(root, "ch")
    os.makedirs(ch, exist_ok=True)
    with open(os.path.join(ch, "config.pulled.json"), "wb") as f:
        f.write(blob)
    with open(os.path.join(ch, "metadata.json"), "w") as f:
        f.write(json.dumps(md, indent=2, sort_keys=True) + "\n")
    with open(os.path.join(ch, "environment"), "w") as f:
        f.write("\n".join("%s=%s" % kv for kv in sorted(md["env"].items())) + "\n")
    for v in md["volumes"]:
        os.makedirs(os.path.join(root, v.lstrip("/")), exist_ok=True)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "check-rootfs":
    check_rootfs(*args)
elif cmd == "tags":
    tags(args[0], args[1:])
elif cmd == "ch-image":
    ch_image(*args)
else:
    die("py: unknown command " + cmd)
PY
}

# Set by build; removed by cleanup on every exit path.
DOCKER_DIR='' WORK='' NEW=''

cleanup() {
	local rc=$?
	if [ -n "$DOCKER_DIR" ]; then
		.ci/docker.sh down "$DOCKER_DIR" >&2 || log "could not stop the dockerd in $DOCKER_DIR"
		rm -rf --one-file-system "$DOCKER_DIR" || log "could not remove $DOCKER_DIR"
	fi
	[ -z "$WORK" ] || rm -rf --one-file-system "$WORK" || log "could not remove $WORK"
	[ -z "$NEW" ] || rm -rf "$NEW" || true
	exit "$rc"
}

dk() { "$DOCKER_CLI" "$@"; }

# rootfs_build FILE MIRROR LOGDIR: the Debian rootfs tarball at FILE.
rootfs_build() {
	local f=$1 mirror=$2 logs=$3 tmp=${1%.tar}.tmp$$.tar
	rm -f "$tmp"
	progress "mmdebstrap $DEBIAN_SUITE ($DEBIAN_VARIANT + $DEBIAN_INCLUDE) from $mirror" "$logs/mmdebstrap.log" \
		mmdebstrap --mode=root --format=tar --variant="$DEBIAN_VARIANT" --include="$DEBIAN_INCLUDE" \
		--customize-hook="$DEBIAN_HOOK" \
		"$DEBIAN_SUITE" "$tmp" "$mirror" || { rm -f "$tmp"; die "mmdebstrap failed (log: $logs/mmdebstrap.log)"; }
	py check-rootfs "$tmp" || { rm -f "$tmp"; die "the Debian rootfs $tmp is not as expected"; }
	mv "$tmp" "$f"
}

docker_up() {
	DOCKER_DIR=$(mktemp -d /tmp/interlink-images.XXXXXX)
	# 9>&-: dockerd and containerd must not inherit the cache lock.
	.ci/docker.sh up "$DOCKER_DIR" >/dev/null 9>&- || die "could not start a dockerd in $DOCKER_DIR"
	export DOCKER_HOST=unix://$DOCKER_DIR/docker.sock
}

# docker_build REF CONTEXT LOGDIR
docker_build() {
	local ref=$1 ctx=$2 log_
	log_=$3/build-$(ch_name "$1").log
	progress "docker build $ref" "$log_" dk build --network none --force-rm -t "$ref" "$ctx" ||
		die "docker build of $ref failed (log: $log_)"
}

# expect WHAT WANT CMD...: CMD's output must be WANT.
expect() {
	local what=$1 want=$2 got
	shift 2
	got=$("$@" 2>&1) || die "$what: '$*' failed: $got"
	[ "$got" = "$want" ] || die "$what: '$*' printed '$got', not '$want'"
}

docker_images() {
	local work=$1 rootfs=$2 logs=$3 f
	mkdir -p "$work/busybox/etc" "$work/debian" "$work/links"
	for f in hosts resolv.conf hostname; do : >"$work/busybox/etc/$f"; done
	dockerfile_busybox >"$work/busybox/Dockerfile"
	docker_build busybox:latest "$work/busybox" "$logs"
	ln "$rootfs" "$work/debian/rootfs.tar"
	dockerfile_debian >"$work/debian/Dockerfile"
	docker_build interlink-test/debian:bookworm "$work/debian" "$logs"
	dockerfile_links >"$work/links/Dockerfile"
	docker_build interlink-test/links:1 "$work/links" "$logs"
}

# shellcheck disable=SC2016 # the $(...) run in the containers
docker_check() {
	local run=(dk run --rm --network none)
	expect "busybox:latest" ok "${run[@]}" busybox:latest sh -c 'test -s /etc/passwd && test -s /etc/group && echo ok'
	expect "busybox:latest" '["sh"]' dk image inspect -f '{{json .Config.Cmd}}' busybox:latest
	expect "interlink-test/debian:bookworm" "entrypoint from-cmd" "${run[@]}" interlink-test/debian:bookworm
	expect "interlink-test/debian:bookworm" 1 "${run[@]}" --entrypoint /usr/bin/python3 interlink-test/debian:bookworm -c 'print(1)'
	expect "interlink-test/debian:bookworm" "/srv/app /run from the image" "${run[@]}" --entrypoint /bin/sh \
		interlink-test/debian:bookworm -c 'echo $(pwd) $(readlink /var/run) "$IMAGE_VAR"'
	expect "interlink-test/links:1" "/var/tmp /run /opt/app" "${run[@]}" interlink-test/links:1 sh -c \
		'test -d /var/tmp/ && test -d /run/ && test -d /opt/app/ && echo $(readlink /tmp) $(readlink /var/run) $(readlink /etc/app)'
}

# ch_images IMAGES_TAR CH: each image as ch-image pull leaves it, in the
# ch-image storage directory CH (version 5, as written by 0.31).
ch_images() {
	local tar=$1 ch=$2 ref dir cid d
	for d in bucache bularge dlcache img ulcache; do mkdir -p "$ch/$d"; done
	echo 5 >"$ch/version"
	for ref in "${REFS[@]}"; do
		dir=$ch/img/$(ch_name "$ref")
		mkdir "$dir"
		cid=$(dk create --network none "$ref") || die "docker create $ref failed"
		# dev/ holds only what docker adds and ch-image drops: no mknod.
		dk export "$cid" | tar -C "$dir" -x --numeric-owner --anchored --exclude='dev/?*' --exclude='./dev/?*' ||
			die "docker export of $ref into $dir failed"
		dk rm "$cid" >/dev/null || die "docker rm $cid ($ref) failed"
		py ch-image "$tar" "$ref" "$dir" || die "could not make $dir a ch-image directory"
	done
}

# shellcheck disable=SC2016 # the $(...) run in the containers
ch_check() {
	local ch=$1 run
	if ! command -v ch-run >/dev/null 2>&1; then
		log "no ch-run; not trying the ch-image directories (run '.ci/images.sh install')"
		return 0
	fi
	run=(env USER=root ch-run)
	expect "ch-run busybox+latest" ok "${run[@]}" "$ch/img/busybox+latest" -- /bin/sh -c 'echo ok'
	expect "ch-run interlink-test%debian+bookworm" ok "${run[@]}" "$ch/img/interlink-test%debian+bookworm" -- \
		/usr/bin/python3 -c 'print("ok")'
	# ch-image makes absolute symlinks relative.
	expect "ch-run interlink-test%links+1" "var/tmp ../run ../opt/app" "${run[@]}" "$ch/img/interlink-test%links+1" -- \
		/bin/sh -c 'echo $(readlink /tmp) $(readlink /var/run) $(readlink /etc/app)'
}

# prune CACHE: remove the entries no run used for 14 days (a run touches its
# entry's done file), then the Debian rootfs tarballs no entry links to.
prune() {
	local cache=$1 d
	find "$cache" -mindepth 2 -maxdepth 2 -name 'done' -mtime +14 -printf '%h\n' | while IFS= read -r d; do
		log "removing $d (unused for 14 days)"
		rm -rf --one-file-system "$d"
	done
	find "$cache" -maxdepth 1 -name 'rootfs-*.tar' -links 1 -mtime +14 -delete
}

# deliver SRC OUT: hardlink (or, across file systems, copy) the images of the
# cache entry SRC into OUT, replacing what an earlier run left there.
deliver() {
	local src=$1 out=$2 e cp=(cp -al)
	mkdir -p "$out"
	rm -rf "$out"/.images.tmp.*
	[ "$(stat -c %d "$src")" = "$(stat -c %d "$out")" ] || cp=(cp -a)
	NEW=$(mktemp -d "$out/.images.tmp.XXXXXX")
	"${cp[@]}" "$src/images.tar" "$src/ch" "$src/rootfs" "$NEW/" || die "could not copy $src into $out"
	for e in images.tar ch rootfs; do
		rm -rf "${out:?}/$e"
		mv "$NEW/$e" "$out/$e"
	done
	rmdir "$NEW"
	NEW=
}

build() {
	local out=$1 cache=$INTERLINK_CACHE/images src mirror_ver mirror release rkey rootfs key t0=$SECONDS
	exec >&2 # nothing on stdout
	case $out in /*) ;; *) out=$CALLER_PWD/$out ;; esac
	[ "$(id -u)" -eq 0 ] || die "'.ci/images.sh build' needs root (dockerd, mmdebstrap, image owners)"
	if ! command -v mmdebstrap >/dev/null || [ ! -x "$PYTHON" ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
		die "mmdebstrap, python3 or busybox-static is missing; run '.ci/images.sh install' as root"
	fi
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	mirror_ver=$(debian_source)
	mirror=${mirror_ver% *} release=${mirror_ver#* }
	rkey=$(printf '%s\n' "$DEBIAN_SUITE" "$DEBIAN_VARIANT" "$DEBIAN_INCLUDE" "$DEBIAN_HOOK" "$mirror" "$release" \
		"$(dpkg --print-architecture)" | sha)
	rootfs=$cache/rootfs-$rkey.tar
	key=$({
		sha256sum <.ci/images.sh
		dpkg-query -W -f='${Version}\n' busybox-static
		printf '%s\n' "$rkey"
	} | sha)
	src=$cache/$key
	if [ ! -f "$src/done" ]; then
		mkdir -p "$cache/logs"
		exec 9>"$cache/.lock"
		if ! flock -n 9; then
			log "waiting for another .ci/images.sh build to release $cache/.lock"
			flock 9
		fi
	fi
	if [ -f "$src/done" ]; then
		log "images $key are in the cache ($src)"
	else
		# Under the lock, no other build runs: what is left of one was killed.
		rm -rf --one-file-system "$cache"/tmp.*
		prune "$cache"
		if [ -f "$rootfs" ]; then
			log "Debian rootfs in the cache: $rootfs ($DEBIAN_SUITE $release from $mirror)"
		else
			step "building the Debian $DEBIAN_SUITE rootfs $rootfs" rootfs_build "$rootfs" "$mirror" "$cache/logs"
		fi
		WORK=$(mktemp -d "$cache/tmp.$key.XXXXXX")
		mkdir -p "$WORK/out/rootfs" "$WORK/out/ch"
		ln "$rootfs" "$WORK/out/rootfs/debian-bookworm.tar"
		step "starting a private dockerd" docker_up
		step "building the docker images" docker_images "$WORK" "$rootfs" "$cache/logs"
		step "checking the docker images" docker_check
		progress "docker save" "$cache/logs/save.log" dk save -o "$WORK/out/images.tar" "${REFS[@]}" ||
			die "docker save of ${REFS[*]} failed (log: $cache/logs/save.log)"
		chmod 644 "$WORK/out/images.tar"
		py tags "$WORK/out/images.tar" "${REFS[@]}" || die "$WORK/out/images.tar lacks an image"
		step "making the ch-image directories" ch_images "$WORK/out/images.tar" "$WORK/out/ch"
		step "stopping the private dockerd" .ci/docker.sh down "$DOCKER_DIR"
		rm -rf --one-file-system "$DOCKER_DIR"
		DOCKER_DIR=
		step "trying the ch-image directories with ch-run" ch_check "$WORK/out/ch"
		chmod 755 "$WORK/out" "$WORK/out/ch" "$WORK/out/ch/img" "$WORK/out/rootfs"
		date -u +%FT%TZ >"$WORK/out/done"
		rm -rf --one-file-system "$src" # a complete entry has done
		mv -T "$WORK/out" "$src" || die "could not move $WORK/out to $src"
		rm -rf --one-file-system "$WORK"
		WORK=
		log "images $key cached in $src"
	fi
	touch "$src/done"
	step "linking the images into $out" deliver "$src" "$out"
	log "images ready in $out ($((SECONDS - t0))s): $(du -sh "$out/images.tar" | cut -f1) images.tar," \
		"$(du -sh "$out/ch" | cut -f1) ch/, $(du -sh "$out/rootfs" | cut -f1) rootfs/"
}

usage() { sed -n '2,15p' .ci/images.sh; exit 2; }
[ $# -ge 1 ] || usage
case $1 in
install) [ $# -eq 1 ] || usage; install ;;
build) [ $# -eq 2 ] || usage; build "$2" ;;
*) usage ;;
esac
