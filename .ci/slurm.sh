#!/usr/bin/env bash
# A private single-node SLURM (Debian slurm-wlm) with munge on its own socket
# and free loopback ports, a busybox image for Charliecloud, and a loopback
# sshd for SOCKS tunnelling tests. Everything lives under DIR.
#
#   .ci/slurm.sh install            apt-get what is missing (root only)
#   .ci/slurm.sh image DIR          busybox image: DIR/busybox (ch-run), DIR/busybox.tar
#   .ci/slurm.sh up DIR             start munged, slurmctld, slurmd; writes DIR/env
#                                   (SLURM_NODE_CPUS: the node's CPUs, default 2)
#   .ci/slurm.sh down DIR           stop them by PID
#   .ci/slurm.sh restart-ctld DIR   restart slurmctld only (state is kept)
#   .ci/slurm.sh sshd-up DIR        sshd on 127.0.0.1; writes DIR/ssh.env, DIR/ssh_config (Host login)
#   .ci/slurm.sh sshd-down DIR      stop it by PID
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

export DEBIAN_FRONTEND=noninteractive

# package:command pairs; a package counts as present when its command is.
# mpich's mpiexec runs pods with the slurm-job.vk.io/mpi-flags annotation.
PACKAGES=(slurm-wlm:slurmctld munge:munged charliecloud-runtime:ch-run busybox-static:
	tsocks:tsocks openssh-server:sshd openssh-client:ssh wget:wget mpich:mpiexec)

install() {
	local missing=() p pkg cmd
	for p in "${PACKAGES[@]}"; do
		pkg=${p%%:*} cmd=${p#*:}
		if [ -n "$cmd" ]; then
			PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 && continue
		else
			# busybox-static: the dynamic busybox would not run in the image
			dpkg -s "$pkg" >/dev/null 2>&1 && continue
		fi
		missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; run '.ci/slurm.sh install' as root"
	log "installing ${missing[*]}"
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# image DIR: a busybox directory image at DIR/busybox for ch-run and the same
# tree as DIR/busybox.tar for other runtimes. ch-run (0.31) binds over dev,
# proc, sys, tmp, etc/passwd and etc/group and fails when one is missing;
# etc/hosts and etc/resolv.conf are bound when present. It needs $USER set.
image() {
	local dir=$1 root=$1/busybox d
	mkdir -p "$dir"
	if [ ! -e "$root/bin/sh" ]; then
		[ -f /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1 || die "busybox-static is missing; run '.ci/slurm.sh install' as root"
		log "building the busybox image in $root"
		rm -rf "$root.tmp"
		for d in bin proc sys dev tmp etc usr/bin sbin usr/sbin home root; do mkdir -p "$root.tmp/$d"; done
		chmod 1777 "$root.tmp/tmp"
		cp /bin/busybox "$root.tmp/bin/busybox"
		chroot "$root.tmp" /bin/busybox --install -s
		for d in passwd group hosts resolv.conf; do : >"$root.tmp/etc/$d"; done
		mv "$root.tmp" "$root"
	fi
	[ -f "$dir/busybox.tar" ] || tar -C "$root" -cf "$dir/busybox.tar" .
	printf '%s\n' "$root"
}

# wait_pidfile FILE NAME LOG: wait up to 10 s for a daemon to write FILE.
wait_pidfile() {
	for _ in $(seq 100); do
		[ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && return 0
		sleep 0.1
	done
	tail -20 "$3" >&2 || true
	die "$2 did not start (no PID in $1)"
}

# wait_sinfo DIR STATE: wait up to 20 s until the node's state is STATE
# (empty: until sinfo answers at all).
wait_sinfo() {
	local dir=$1 want=${2:-} st f
	for _ in $(seq 200); do
		if st=$(SLURM_CONF="$dir/slurm.conf" sinfo -h -o %T 2>/dev/null | sort -u); then
			[ -z "$want" ] || [ "$st" = "$want" ] && return 0
		fi
		sleep 0.1
	done
	for f in "$dir/munge/munged.log" "$dir/slurmctld.log" "$dir/slurmd.log"; do
		printf '%s\n' "--- $f" >&2
		tail -20 "$f" >&2 || true
	done
	die "SLURM in $dir not ${want:-answering} after 20 s (sinfo: ${st:-no answer})"
}

start_ctld() {
	local dir=$1
	SLURM_CONF="$dir/slurm.conf" slurmctld -f "$dir/slurm.conf" || die "slurmctld failed: $(tail -5 "$dir/slurmctld.log")"
	wait_pidfile "$dir/slurmctld.pid" slurmctld "$dir/slurmctld.log"
}

up() {
	local dir=$1 ctld_port d_port mem i
	install
	dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
	[ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null && die "SLURM already runs in $dir; run '.ci/slurm.sh down $dir' first"
	chmod 755 "$dir"
	mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
	# munged runs as user munge and insists that its key, socket and log
	# directories belong to munge (or root) and are not writable by others.
	chown munge:munge "$dir/munge"
	chmod 755 "$dir/munge"
	if [ ! -f "$dir/munge/munge.key" ]; then
		runuser -u munge -- mungekey --create --keyfile="$dir/munge/munge.key" ||
			die "mungekey failed"
	fi
	chmod 400 "$dir/munge/munge.key"
	runuser -u munge -- munged --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
		--pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
		--seed-file="$dir/munge/munged.seed" || die "munged failed: $(tail -5 "$dir/munge/munged.log" 2>/dev/null)"
	wait_pidfile "$dir/munge/munged.pid" munged "$dir/munge/munged.log"

	# Two fake GPUs (/dev/null's numbers) for --gres=gpu:N.
	for i in 0 1; do
		[ -e "$dir/fakegpu$i" ] || mknod "$dir/fakegpu$i" c 1 3
	done
	ctld_port=$(free_port)
	d_port=$(free_port)
	while [ "$d_port" = "$ctld_port" ]; do d_port=$(free_port); done
	# Memory the node offers: the machine's, capped at 20000 MB.
	cpus=${SLURM_NODE_CPUS:-2}
	[[ $cpus =~ ^[1-9][0-9]{0,3}$ ]] || die "SLURM_NODE_CPUS=$cpus is not a number of CPUs"
	mem=$(awk '/^MemTotal:/ { m = int($2 / 1024); print (m > 20000 ? 20000 : m) }' /proc/meminfo)
	cat >"$dir/slurm.conf" <<CONF
# Written by .ci/slurm.sh up: a private single-node SLURM under $dir.
ClusterName=interlink
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# Start batch jobs within about a second of their submission.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node is what this file says, whatever the machine has.
SlurmdParameters=config_overrides
ReturnToService=2
DefMemPerCPU=1000
# Finished jobs stay visible to squeue for 10 minutes.
MinJobAge=600
# Jobs over a partition's limits wait (PENDING) instead of being refused.
EnforcePartLimits=NO
KillWait=5
GresTypes=gpu
# Without cgroups, memory limits are enforced by polling every 2 s.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherParams=OverMemoryKill
JobAcctGatherFrequency=task=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
NodeName=localhost CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=localhost MaxTime=1 State=UP
CONF
	printf 'NodeName=localhost Name=gpu File=%s/fakegpu[0-1]\n' "$dir" >"$dir/gres.conf"
	cat >"$dir/env" <<ENV
export SLURM_CONF=$dir/slurm.conf
export SLURM_BIN_DIR=$(dirname "$(command -v sbatch)")
export SLURM_PARTITION=debug
export SLURM_SHORT_PARTITION=short
export MUNGE_SOCKET=$dir/munge/munge.sock
ENV
	start_ctld "$dir"
	SLURM_CONF="$dir/slurm.conf" slurmd -f "$dir/slurm.conf" -N localhost || die "slurmd failed: $(tail -5 "$dir/slurmd.log")"
	wait_pidfile "$dir/slurmd.pid" slurmd "$dir/slurmd.log"
	wait_sinfo "$dir" idle
}

# scancel_all DIR: cancel every job still running so that no slurmstepd
# outlives slurmd; waits up to 10 s.
scancel_all() {
	local conf=$1/slurm.conf ids
	[ -f "$1/slurmctld.pid" ] || return 0
	ids=$(SLURM_CONF=$conf timeout 5 squeue -h -t running,pending,suspended,completing -o %i 2>/dev/null) || return 0
	[ -n "$ids" ] || return 0
	# shellcheck disable=SC2086
	SLURM_CONF=$conf timeout 5 scancel $ids 2>/dev/null || true
	for _ in $(seq 100); do
		[ -z "$(SLURM_CONF=$conf timeout 5 squeue -h -t running,completing -o %i 2>/dev/null)" ] && return 0
		sleep 0.1
	done
}

down() {
	local dir=$1
	[ -d "$dir" ] || return 0
	scancel_all "$dir"
	stop_pid "$dir/slurmd.pid" slurmd
	stop_pid "$dir/slurmctld.pid" slurmctld
	stop_pid "$dir/munge/munged.pid" munged
	reap_stepds "$dir"
}

# reap_stepds DIR: kill any slurmstepd left by this SLURM (slurmd started it
# with SLURM_CONF=DIR/slurm.conf in its environment), and its job processes.
reap_stepds() {
	local want="SLURM_CONF=$1/slurm.conf" p pid c
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
		grep -qzxF "$want" "$p/environ" 2>/dev/null || continue
		log "killing leftover slurmstepd $pid and its processes"
		# each job step runs in its own process group, led by the stepd's child
		for c in $(pgrep -P "$pid"); do kill -KILL -- "-$c" 2>/dev/null || kill -KILL "$c" 2>/dev/null || true; done
		kill -KILL "$pid" 2>/dev/null || true
	done
}

restart_ctld() {
	local dir=$1
	[ -f "$dir/slurm.conf" ] || die "no SLURM in $dir; run '.ci/slurm.sh up $dir' first"
	stop_pid "$dir/slurmctld.pid" slurmctld
	start_ctld "$dir"
	wait_sinfo "$dir"
}

# sshd-up DIR: an sshd for root on 127.0.0.1 with private keys under DIR, for
# SSH and SOCKS (ssh -D) tests. Writes DIR/ssh_config (Host login), DIR/ssh.env
# and DIR/tsocks.conf (SOCKS 5 at 127.0.0.1:SOCKS_PORT, for a tunnel that the
# caller starts with: ssh -F DIR/ssh_config -N -D 127.0.0.1:$SOCKS_PORT login).
# tsocks never tunnels 127.0.0.0/8 (it always treats it as local): reach
# services through the tunnel on HOST_IP, the machine's non-loopback address.
sshd_up() {
	local dir=$1 port socks lib ip
	install
	dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
	[ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null && die "sshd already runs in $dir; run '.ci/slurm.sh sshd-down $dir' first"
	chmod 700 "$dir"
	mkdir -p /run/sshd # privilege separation directory, required by sshd
	[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C sshd-host -f "$dir/host_key"
	[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C sshd-client -f "$dir/id_ed25519"
	cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
	chmod 600 "$dir/authorized_keys"
	port=$(free_port)
	socks=$(free_port)
	while [ "$socks" = "$port" ]; do socks=$(free_port); done
	# StrictModes no: DIR may sit under a world-writable /tmp, which sshd
	# otherwise refuses for AuthorizedKeysFile. LogLevel DEBUG logs each
	# forwarded connection ("channel N: connected to HOST port P").
	cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel DEBUG
CONF
	cat >"$dir/ssh_config" <<CONF
Host login
	HostName 127.0.0.1
	Port $port
	User root
	IdentityFile $dir/id_ed25519
	IdentitiesOnly yes
	StrictHostKeyChecking no
	UserKnownHostsFile /dev/null
	BatchMode yes
	LogLevel ERROR
	ExitOnForwardFailure yes
CONF
	printf 'server = 127.0.0.1\nserver_port = %s\nserver_type = 5\n' "$socks" >"$dir/tsocks.conf"
	lib=$(dpkg -L tsocks | grep '/libtsocks\.so$' | head -1)
	ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -1 || true)
	cat >"$dir/ssh.env" <<ENV
export SSH_HOST=127.0.0.1
export SSH_PORT=$port
export SSH_USER=root
export SSH_KEY=$dir/id_ed25519
export SSH_CONFIG=$dir/ssh_config
export SOCKS_PORT=$socks
export TSOCKS_CONF_FILE=$dir/tsocks.conf
export TSOCKS_LIB=$lib
export HOST_IP=$ip
ENV
	/usr/sbin/sshd -t -f "$dir/sshd_config" || die "bad sshd config $dir/sshd_config"
	setsid /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1 &
	for _ in $(seq 100); do
		ssh -F "$dir/ssh_config" login true 2>/dev/null && break
		sleep 0.1
	done
	ssh -F "$dir/ssh_config" login true || { tail -20 "$dir/sshd.log" >&2; die "sshd in $dir does not accept logins"; }
	cat "$dir/ssh.env"
}

# sshd-down DIR: stop the connections' sshd processes, then the listener.
sshd_down() {
	local f=$1/sshd.pid pid c
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]; then
		for c in $(pgrep -P "$pid"); do kill -TERM "$c" 2>/dev/null || true; done
	fi
	stop_pid "$f" sshd
}

usage() { sed -n '2,12p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
[ "$1" = install ] || [ $# -eq 2 ] || usage
case $1 in
install) install ;;
image) image "$2" ;;
up) up "$2" ;;
down) down "$2" ;;
restart-ctld) restart_ctld "$2" ;;
sshd-up) sshd_up "$2" ;;
sshd-down) sshd_down "$2" ;;
*) usage ;;
esac
