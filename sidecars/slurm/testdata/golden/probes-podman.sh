# sbatch --parsable --job-name=team-a-web --comment=interlink-pod=0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a --output=/data/interlink/jobs/team-a-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a.out --chdir=/data/interlink/jobs --cpus-per-task=2 --mem=1024M --gres=gpu:1
# dir  volumes/config
# file volumes/config/app.yaml -rw-r--r-- port: 8080\n
# file volumes/config/nested/dir.conf -rw-r--r-- x=1
# dir  volumes/creds
# file volumes/creds/password -rw------- s3cr3t
# dir  volumes/token
# file volumes/token/token -rw------- eyJ.token
# dir  volumes/work
# dir  .interlink/setup
# dir  .interlink/setup/msg
# file .interlink/setup/env -rw------- 
# dir  .interlink/main
# dir  .interlink/main/msg
# file .interlink/main/env -rw------- GREETING=hello world\0EMPTY=\0
# dir  volumes/work/logs
# dir  .interlink/sidecar
# dir  .interlink/sidecar/msg
# file .interlink/sidecar/env -rw------- 
# file probes.json {"containers":[{"name":"main","startupProbe":{"tcpSocket":{"port":"http"},"periodSeconds":1},"livenessProbe":{"exec":{"command":["/bin/sh","-c","test -e /tmp/alive; echo $(id)"]},"failureThreshold":2},"readinessProbe":{"httpGet":{"path":"/ready","port":8080}},"lifecycle":{"postStart":{"exec":{"command":["touch","/tmp/alive"]}},"preStop":{"exec":{"command":["/bin/sh","-c","echo bye \u003e /work/bye"]}}},"ports":[{"name":"http","containerPort":8080}],"host":"127.0.0.1","exec":["podman","exec","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main"],"running":["podman","container","inspect","--format","{{.State.Running}}","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main"],"execStdin":["podman","exec","--interactive","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main"],"execTTY":["podman","exec","--interactive","--tty","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main"],"inner":["/.interlink/envexec","-C","/srv","/.interlink/env","--"]}],"gracePeriodSeconds":20,"sampled":[{"name":"setup","pidOf":["podman","container","inspect","--format","{{.State.Pid}}","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-setup"]},{"name":"main","pidOf":["podman","container","inspect","--format","{{.State.Pid}}","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main"]},{"name":"sidecar","pidOf":["podman","container","inspect","--format","{{.State.Pid}}","il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-sidecar"]}]}
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

# container setup, image docker.io/library/busybox:1.36
il_c0() {
	rm -f -- "$IL_DATA"/.interlink/setup/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/setup/envexec || return
	podman rm --force --ignore '--time=0' -- il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-setup >/dev/null 2>&1
	il_pid setup || return
	exec "$IL_ENVEXEC" reap -- podman run --rm --replace '--name=il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-setup' '--network=host' '--log-driver=passthrough' '--volume='"$IL_DATA"/volumes/work:/work '--volume='"$IL_DATA"/.interlink/setup:/.interlink:ro '--volume='"$IL_DATA"/.interlink/setup/msg:/.interlink/msg '--entrypoint=["/.interlink/envexec","-t","/dev/termination-log=/.interlink/msg/termination-log","/.interlink/env","--"]' docker.io/library/busybox:1.36 /bin/sh -c 'echo init > /work/ready'
}
il_c0_cleanup() {
	podman rm --force --ignore il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-setup >/dev/null 2>&1
	return 0
}

# container main, image ghcr.io/acme/app:v1
il_c1() {
	rm -f -- "$IL_DATA"/.interlink/main/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/main/envexec || return
	podman rm --force --ignore '--time=0' -- il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main >/dev/null 2>&1
	il_pid main || return
	exec "$IL_ENVEXEC" reap -- podman run --rm --replace '--name=il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main' '--network=host' '--log-driver=passthrough' '--volume='"$IL_DATA"/volumes/config:/etc/app:ro '--volume='"$IL_DATA"/volumes/creds:/etc/creds:ro '--volume='"$IL_DATA"/volumes/token:/var/run/secrets/tokens:ro '--volume='"$IL_DATA"/volumes/work:/work '--volume='"$IL_DATA"/.interlink/main:/.interlink:ro '--volume='"$IL_DATA"/.interlink/main/msg:/.interlink/msg '--device=nvidia.com/gpu=all' '--entrypoint=["/.interlink/envexec","-C","/srv","-t","/tmp/termination-log=/.interlink/msg/termination-log","/.interlink/env","--"]' ghcr.io/acme/app:v1 /app --serve "it's ok"
}
il_c1_cleanup() {
	podman rm --force --ignore il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main >/dev/null 2>&1
	return 0
}

# container sidecar, image docker.io/acme/tools:latest
il_c2() {
	rm -f -- "$IL_DATA"/.interlink/sidecar/msg/termination-log
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/sidecar/envexec || return
	podman rm --force --ignore '--time=0' -- il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-sidecar >/dev/null 2>&1
	podman image exists -- docker.io/acme/tools:latest >/dev/null 2>&1 || podman pull -q -- docker.io/acme/tools:latest >/dev/null || return
	local il_ep il_cmd
	mapfile -d '' -t il_ep < <(podman image inspect --format '{{range .Config.Entrypoint}}{{.}}{{"\x00"}}{{end}}' -- docker.io/acme/tools:latest) && wait $! || return
	mapfile -d '' -t il_cmd < <(podman image inspect --format '{{range .Config.Cmd}}{{.}}{{"\x00"}}{{end}}' -- docker.io/acme/tools:latest) && wait $! || return
	((${#il_ep[@]})) && [[ ${il_ep[-1]} == $'\n' ]] && unset 'il_ep[-1]'
	((${#il_cmd[@]})) && [[ ${il_cmd[-1]} == $'\n' ]] && unset 'il_cmd[-1]'
	il_pid sidecar || return
	exec "$IL_ENVEXEC" bind 10 "$IL_DATA"/volumes/work logs 1 '--volume=' :/work -- "$IL_ENVEXEC" reap -- podman run --rm --replace '--name=il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-sidecar' '--network=host' '--log-driver=passthrough' '--volume=:/work' '--volume='"$IL_DATA"/.interlink/sidecar:/.interlink:ro '--volume='"$IL_DATA"/.interlink/sidecar/msg:/.interlink/msg '--entrypoint=["/.interlink/envexec","-t","/dev/termination-log=/.interlink/msg/termination-log","/.interlink/env","--"]' docker.io/acme/tools:latest "${il_ep[@]}" watch
}
il_c2_cleanup() {
	podman rm --force --ignore il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-sidecar >/dev/null 2>&1
	return 0
}
# il_signal SIG NAME... sends SIG to the running containers among NAMEs; false
# when none runs.
il_signal() {
	local sig=$1 n pid none=1
	shift
	for n; do
		[[ -e $IL_DIR/containers/$n.exit || ! -s $IL_DIR/containers/$n.pid ]] && continue
		read -r pid <"$IL_DIR/containers/$n.pid" && [[ $pid =~ ^[1-9][0-9]*$ ]] && kill -"$sig" "$pid" 2>/dev/null && none=0
	done
	return "$none"
}
# il_stop runs on SIGUSR1, which the sidecar sends to this shell alone when the
# pod is deleted: no container starts again; the prober runs the preStop hooks
# and stops their containers, the others get SIGTERM at once; what still runs
# after the grace period (20 s) gets SIGKILL, and the job ends.
il_stop() {
	trap '' USR1
	: >"$IL_DIR"/containers/.stopping
	local deadline=$((SECONDS + 20))
	il_signal TERM setup sidecar
	"$IL_PROBER" stop "$IL_DIR"/probes.json
	il_signal TERM setup main sidecar
	while ((SECONDS < deadline)) && il_signal 0 setup main sidecar; do sleep 0.2; done
	il_signal KILL setup main sidecar
	exit 143
}
trap il_stop USR1
# The prober runs the containers' probes and hooks, and samples their usage, for the job's life.
"$IL_PROBER" run "$IL_DIR"/probes.json &
IL_PROBER_PID=$!

# Init containers run in order; the first that fails ends the job.
il_run setup il_c0 Never il_c0_cleanup &
wait $! || exit $?
# Containers run side by side (restartPolicy Never); the job's exit code is the first non-zero one.
il_pids=()
il_run main il_c1 Never il_c1_cleanup &
il_pids+=($!)
il_run sidecar il_c2 Never il_c2_cleanup &
il_pids+=($!)
il_exit=0
for pid in "${il_pids[@]}"; do
	wait "$pid" || { code=$?; [[ $il_exit -eq 0 ]] && il_exit=$code; }
done
exit "$il_exit"
