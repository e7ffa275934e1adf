# sbatch --parsable --job-name=team-a-web --comment=interlink-pod=0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a --output=/data/interlink/jobs/team-a-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a.out --chdir=/data/interlink/jobs --cpus-per-task=2 --mem=1024M --gres=gpu:1
#!/bin/bash
# Job of pod team-a/web, written by interlink-slurm. The containers' output goes to
# containers/NAME.log, their exit codes to containers/NAME.exit.
umask 077
IL_DIR=/data/interlink/jobs/team-a-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a
IL_ENVEXEC=/opt/interlink/bin/interlink-envexec
IL_PROBER=/opt/interlink/bin/interlink-prober
# Compute nodes do not share the pod directory's data: it is embedded below
# and written to node-local storage for the job's lifetime.
IL_DATA=$(mktemp -d "${TMPDIR:-/tmp}/interlink-XXXXXXXX") || exit 1
mkdir -p "$IL_DIR"/containers "$IL_DATA" && cd "$IL_DIR" || exit 1
il_cleanup() {
	[[ -n ${IL_SSH_PID-} ]] && kill "$IL_SSH_PID" 2>/dev/null
	[[ -n ${IL_PROBER_PID-} ]] && kill "$IL_PROBER_PID" 2>/dev/null
	rm -rf -- "$IL_DATA"
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
il_file() { mkdir -p -- "$(dirname -- "$IL_DATA/$2")" && base64 -d >"$IL_DATA/$2" && chmod "$1" "$IL_DATA/$2"; }
mkdir -p -- "$IL_DATA"/volumes/config
il_file 0644 volumes/config/app.yaml <<'IL_EOF'
cG9ydDogODA4MAo=
IL_EOF
il_file 0644 volumes/config/nested/dir.conf <<'IL_EOF'
eD0x
IL_EOF
mkdir -p -- "$IL_DATA"/volumes/creds
il_file 0600 volumes/creds/password <<'IL_EOF'
czNjcjN0
IL_EOF
mkdir -p -- "$IL_DATA"/volumes/token
il_file 0600 volumes/token/token <<'IL_EOF'
ZXlKLnRva2Vu
IL_EOF
mkdir -p -- "$IL_DATA"/volumes/work
mkdir -p -- "$IL_DATA"/env
il_file 0600 env/setup.env <<'IL_EOF'

IL_EOF
mkdir -p -- "$IL_DATA"/.interlink/setup
mkdir -p -- "$IL_DATA"/.interlink/setup/msg
il_file 0600 .interlink/setup/env <<'IL_EOF'

IL_EOF
il_file 0600 env/main.env <<'IL_EOF'
R1JFRVRJTkc9J2hlbGxvIHdvcmxkJwpFTVBUWT0nJwo=
IL_EOF
mkdir -p -- "$IL_DATA"/.interlink/main
mkdir -p -- "$IL_DATA"/.interlink/main/msg
il_file 0600 .interlink/main/env <<'IL_EOF'

IL_EOF
mkdir -p -- "$IL_DATA"/volumes/work/logs
il_file 0600 env/sidecar.env <<'IL_EOF'

IL_EOF
# CommandPrefix (from the sidecar's config)
module load apptainer

# container setup, image docker://busybox:1.36
il_c0() {
	rm -f -- "$IL_DATA"/.interlink/setup/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/setup/envexec || return
	il_pid setup || return
	exec singularity --quiet exec --containall --no-home --no-eval --env-file "$IL_DATA"/env/setup.env --bind "$IL_DATA"/volumes/work:/work --bind "$IL_DATA"/.interlink/setup:/.interlink:ro --bind "$IL_DATA"/.interlink/setup/msg:/.interlink/msg docker://busybox:1.36 /.interlink/envexec -t '/dev/termination-log=/.interlink/msg/termination-log' /.interlink/env -- /bin/sh -c 'echo init > /work/ready'
}

# container main, image docker://ghcr.io/acme/app:v1
il_c1() {
	rm -f -- "$IL_DATA"/.interlink/main/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/main/envexec || return
	il_pid main || return
	exec singularity --quiet exec --containall --no-home --nv --no-eval --env-file "$IL_DATA"/env/main.env --bind "$IL_DATA"/volumes/config:/etc/app:ro --bind "$IL_DATA"/volumes/creds:/etc/creds:ro --bind "$IL_DATA"/volumes/token:/var/run/secrets/tokens:ro --bind "$IL_DATA"/volumes/work:/work --bind "$IL_DATA"/.interlink/main:/.interlink:ro --bind "$IL_DATA"/.interlink/main/msg:/.interlink/msg --pwd /srv docker://ghcr.io/acme/app:v1 /.interlink/envexec -t '/dev/termination-log=/.interlink/msg/termination-log' /.interlink/env -- /app --serve "it's ok"
}

# container sidecar, image /images/tools.sif
il_c2() {
	il_pid sidecar || return
	exec "$IL_ENVEXEC" bind 9 "$IL_DATA"/volumes/work logs 1 '' :/work -- singularity --quiet run --containall --no-home --no-eval --env-file "$IL_DATA"/env/sidecar.env --bind :/work /images/tools.sif watch
}
base64 -d >"$IL_DIR"/probes.json <<'IL_EOF' || exit 1
eyJncmFjZVBlcmlvZFNlY29uZHMiOjMwLCJzYW1wbGVkIjpbeyJuYW1lIjoic2V0dXAiLCJpbnNp
ZGUiOiIvLmludGVybGluay9lbnZleGVjIn0seyJuYW1lIjoibWFpbiIsImluc2lkZSI6Ii8uaW50
ZXJsaW5rL2VudmV4ZWMifSx7Im5hbWUiOiJzaWRlY2FyIn1dfQ==
IL_EOF
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
