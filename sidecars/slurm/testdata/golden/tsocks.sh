# sbatch --parsable --job-name=team-a-web --comment=interlink-pod=0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a --output=/data/interlink/jobs/team-a-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a.out --chdir=/data/interlink/jobs --cpus-per-task=2 --mem=1024M --gres=gpu:1
# dir  volumes/config
# file volumes/config/app.yaml -rw-r--r-- port: 8080\n
# file volumes/config/nested/dir.conf -rw-r--r-- x=1
# dir  volumes/creds
# file volumes/creds/password -rw------- s3cr3t
# dir  volumes/token
# file volumes/token/token -rw------- eyJ.token
# dir  volumes/work
# dir  env
# file env/setup.env -rw------- LD_PRELOAD=/opt/interlink-tsocks/libtsocks.so\nTSOCKS_CONF_FILE=/etc/interlink-tsocks/tsocks.conf\n
# dir  .interlink/setup
# dir  .interlink/setup/msg
# file .interlink/setup/env -rw------- 
# file env/main.env -rw------- GREETING='hello world'\nEMPTY=''\nLD_PRELOAD=/opt/interlink-tsocks/libtsocks.so\nTSOCKS_CONF_FILE=/etc/interlink-tsocks/tsocks.conf\n
# dir  .interlink/main
# dir  .interlink/main/msg
# file .interlink/main/env -rw------- 
# dir  volumes/work/logs
# file env/sidecar.env -rw------- LD_PRELOAD=/opt/interlink-tsocks/libtsocks.so\nTSOCKS_CONF_FILE=/etc/interlink-tsocks/tsocks.conf\n
# file probes.json {"gracePeriodSeconds":30,"sampled":[{"name":"setup","inside":"/.interlink/envexec"},{"name":"main","inside":"/.interlink/envexec"},{"name":"sidecar"}]}
#!/bin/bash
# Job of pod team-a/web, written by interlink-slurm. The containers' output goes to
# containers/NAME.log, their exit codes to containers/NAME.exit.
umask 077
IL_DIR=/data/interlink/jobs/team-a-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a
IL_ENVEXEC=/opt/interlink/bin/interlink-envexec
IL_PROBER=/opt/interlink/bin/interlink-prober
IL_DATA="$IL_DIR"/data
mkdir -p "$IL_DIR"/containers "$IL_DATA" && cd "$IL_DIR" || exit 1
il_cleanup() {
	[[ -n ${IL_SSH_PID-} ]] && kill "$IL_SSH_PID" 2>/dev/null
	[[ -n ${IL_PROBER_PID-} ]] && kill "$IL_PROBER_PID" 2>/dev/null
	return 0
}
trap il_cleanup EXIT
# il_now [SECONDS] sets IL_NOW to the time (SECONDS from now), in UTC.
il_now() {
	if [[ -n ${EPOCHREALTIME-} ]]; then
		local t=${EPOCHREALTIME/,/.} s
		TZ=UTC printf -v s '%(%Y-%m-%dT%H:%M:%S)T' "$((${t%.*} + ${1:-0}))"
		IL_NOW="$s.${t#*.}Z"
	else
		IL_NOW=$(date -u -d "+${1:-0} seconds" +%Y-%m-%dT%H:%M:%S.%NZ)
	fi
}
# il_pid NAME records the pid of this (sub)shell, which then execs the
# container's runtime: NAME.pid is the run's pid.
il_pid() {
	echo "$BASHPID" >"$IL_DIR/containers/$1.pid.tmp" && mv -f -- "$IL_DIR/containers/$1.pid.tmp" "$IL_DIR/containers/$1.pid"
}
# il_run NAME FUNCTION POLICY [CLEANUP] runs a container, recording its start,
# output and exit code, then CLEANUP. POLICY tells whether it starts again:
# Never, OnFailure (after a non-zero exit code) or Always, unless the pod is
# being deleted (containers/.stopping). Restarts back off as the kubelet's do:
# 10 s, doubled each time up to 5 min, 10 s again after a run of 10 min.
# NAME.exit is "CODE TIME", and "CODE TIME DUE SECONDS" when the container
# starts again at DUE; once restarted, NAME.started is "TIME COUNT CODE STARTED
# FINISHED": the restarts so far and how the previous run ended. The previous
# run's NAME.pid and NAME.probe (the prober's) become NAME.pid.last and
# NAME.probe.last.
il_run() {
	local base=$IL_DIR/containers/$1 code started ended last= backoff since delay=0 restarts=0
	while :; do
		rm -f -- "$base.exit" "$base.pid.last" "$base.probe.last"
		[[ ! -e $base.pid ]] || mv -f -- "$base.pid" "$base.pid.last"
		[[ ! -e $base.probe ]] || mv -f -- "$base.probe" "$base.probe.last"
		il_now
		started=$IL_NOW since=$SECONDS
		printf '%s%s\n' "$started" "$last" >"$base.started.tmp"
		mv -f "$base.started.tmp" "$base.started"
		# The helper's log mode prefixes each line with the time it was read, and
		# splits a line longer than 16 KiB into pieces, as the CRI does.
		"$2" 2>&1 | "$IL_ENVEXEC" log >>"$base.log"
		code=${PIPESTATUS[0]} backoff=
		if [[ ! -e $IL_DIR/containers/.stopping && ( $3 == Always || ( $3 == OnFailure && $code != 0 ) ) ]]; then
			if ((delay == 0 || SECONDS - since >= 600)); then delay=10; else delay=$((delay * 2 < 300 ? delay * 2 : 300)); fi
			il_now "$delay"
			backoff=" $IL_NOW $delay"
		fi
		il_now
		ended=$IL_NOW
		printf '%s %s%s\n' "$code" "$ended" "$backoff" >"$base.exit.tmp"
		mv -f "$base.exit.tmp" "$base.exit"
		[[ -z ${4-} ]] || "$4"
		[[ -n $backoff ]] || return "$code"
		sleep "$delay"
		[[ ! -e $IL_DIR/containers/.stopping ]] || return "$code"
		restarts=$((restarts + 1)) last=" $restarts $code $started $ended"
	done
}
# Tsocks: the containers' TCP goes through an SSH SOCKS tunnel to the login node.
for _ in 1 2 3 4 5; do
	IL_SOCKS_PORT=$((20000 + RANDOM % 30000))
	ssh -N -o BatchMode=yes -o ExitOnForwardFailure=yes -D 127.0.0.1:"$IL_SOCKS_PORT" user@login01 &
	IL_SSH_PID=$!
	for _ in $(seq 50); do
		(exec 3<>/dev/tcp/127.0.0.1/"$IL_SOCKS_PORT") 2>/dev/null && break 2
		kill -0 "$IL_SSH_PID" 2>/dev/null || break
		sleep 0.2
	done
	kill "$IL_SSH_PID" 2>/dev/null; unset IL_SSH_PID
done
[[ -n ${IL_SSH_PID-} ]] || { printf 'interlink: the SSH tunnel to %s did not start\n' user@login01 >&2; exit 1; }
mkdir -p "$IL_DATA/tsocks"
printf 'server = 127.0.0.1\nserver_port = %s\nserver_type = 5\n' "$IL_SOCKS_PORT" >"$IL_DATA/tsocks/tsocks.conf"
chmod 0755 "$IL_DATA/tsocks"; chmod 0644 "$IL_DATA/tsocks/tsocks.conf"

# container setup, image docker://busybox:1.36
il_c0() {
	rm -f -- "$IL_DATA"/.interlink/setup/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/setup/envexec || return
	il_pid setup || return
	exec singularity --quiet exec --containall --no-home --no-eval --env-file "$IL_DATA"/env/setup.env --bind "$IL_DATA"/volumes/work:/work --bind /usr/lib/x86_64-linux-gnu:/opt/interlink-tsocks:ro --bind "$IL_DATA"/tsocks:/etc/interlink-tsocks:ro --bind "$IL_DATA"/.interlink/setup:/.interlink:ro --bind "$IL_DATA"/.interlink/setup/msg:/.interlink/msg docker://busybox:1.36 /.interlink/envexec -t '/dev/termination-log=/.interlink/msg/termination-log' /.interlink/env -- /bin/sh -c 'echo init > /work/ready'
}

# container main, image docker://ghcr.io/acme/app:v1
il_c1() {
	rm -f -- "$IL_DATA"/.interlink/main/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/main/envexec || return
	il_pid main || return
	exec singularity --quiet exec --containall --no-home --nv --no-eval --env-file "$IL_DATA"/env/main.env --bind "$IL_DATA"/volumes/config:/etc/app:ro --bind "$IL_DATA"/volumes/creds:/etc/creds:ro --bind "$IL_DATA"/volumes/token:/var/run/secrets/tokens:ro --bind "$IL_DATA"/volumes/work:/work --bind /usr/lib/x86_64-linux-gnu:/opt/interlink-tsocks:ro --bind "$IL_DATA"/tsocks:/etc/interlink-tsocks:ro --bind "$IL_DATA"/.interlink/main:/.interlink:ro --bind "$IL_DATA"/.interlink/main/msg:/.interlink/msg --pwd /srv docker://ghcr.io/acme/app:v1 /.interlink/envexec -t '/dev/termination-log=/.interlink/msg/termination-log' /.interlink/env -- /app --serve "it's ok"
}

# container sidecar, image /images/tools.sif
il_c2() {
	il_pid sidecar || return
	exec "$IL_ENVEXEC" bind 9 "$IL_DATA"/volumes/work logs 1 '' :/work -- singularity --quiet run --containall --no-home --no-eval --env-file "$IL_DATA"/env/sidecar.env --bind :/work --bind /usr/lib/x86_64-linux-gnu:/opt/interlink-tsocks:ro --bind "$IL_DATA"/tsocks:/etc/interlink-tsocks:ro /images/tools.sif watch
}
# The prober samples the containers' usage for the job's life.
"$IL_PROBER" run "$IL_DIR"/probes.json &
IL_PROBER_PID=$!

# Init containers run in order; the first that fails ends the job.
il_run setup il_c0 Never || exit $?
# Containers run side by side (restartPolicy Never); the job's exit code is the first non-zero one.
il_pids=()
il_run main il_c1 Never &
il_pids+=($!)
il_run sidecar il_c2 Never &
il_pids+=($!)
il_exit=0
for pid in "${il_pids[@]}"; do
	wait "$pid" || { code=$?; [[ $il_exit -eq 0 ]] && il_exit=$code; }
done
exit "$il_exit"
