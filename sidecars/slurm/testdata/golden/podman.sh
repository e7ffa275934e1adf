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
# file .interlink/setup/env -rw------- 
# dir  .interlink/main
# file .interlink/main/env -rw------- GREETING=hello world\0EMPTY=\0
# dir  volumes/work/logs
# dir  .interlink/sidecar
# file .interlink/sidecar/env -rw------- 
#!/bin/bash
# Job of pod team-a/web, written by interlink-slurm. The containers' output goes to
# containers/NAME.log, their exit codes to containers/NAME.exit.
umask 077
IL_DIR=/data/interlink/jobs/team-a-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a
IL_ENVEXEC=/opt/interlink/bin/interlink-envexec
IL_DATA="$IL_DIR"/data
mkdir -p "$IL_DIR"/containers "$IL_DATA" && cd "$IL_DIR" || exit 1
il_cleanup() {
	[[ -n ${IL_SSH_PID-} ]] && kill "$IL_SSH_PID" 2>/dev/null
	return 0
}
trap il_cleanup EXIT
il_now() {
	if [[ -n ${EPOCHREALTIME-} ]]; then
		local t=${EPOCHREALTIME/,/.} s
		TZ=UTC printf -v s '%(%Y-%m-%dT%H:%M:%S)T' "${t%.*}"
		IL_NOW="$s.${t#*.}Z"
	else
		IL_NOW=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	fi
}
# il_run NAME FUNCTION runs a container, recording its start, output and exit code.
il_run() {
	local name=$1 code
	il_now
	printf '%s\n' "$IL_NOW" >"$IL_DIR/containers/$name.started"
	# The helper's log mode prefixes each line with the time it was read, and
	# splits a line longer than 16 KiB into pieces, as the CRI does.
	"$2" 2>&1 | "$IL_ENVEXEC" log >>"$IL_DIR/containers/$name.log"
	code=${PIPESTATUS[0]}
	il_now
	printf '%s %s\n' "$code" "$IL_NOW" >"$IL_DIR/containers/$name.exit.tmp"
	mv -f "$IL_DIR/containers/$name.exit.tmp" "$IL_DIR/containers/$name.exit"
	return "$code"
}

# container setup, image busybox:1.36
il_c0() {
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/setup/envexec || return
	podman run --rm '--name=il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-setup' '--network=host' '--volume='"$IL_DATA"/volumes/work:/work '--volume='"$IL_DATA"/.interlink/setup:/.interlink:ro '--entrypoint=["/.interlink/envexec","/.interlink/env","--"]' busybox:1.36 /bin/sh -c 'echo init > /work/ready'
}
il_c0_cleanup() {
	podman rm --force --ignore il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-setup >/dev/null 2>&1
	return 0
}

# container main, image ghcr.io/acme/app:v1
il_c1() {
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/main/envexec || return
	podman run --rm '--name=il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main' '--network=host' '--volume='"$IL_DATA"/volumes/config:/etc/app:ro '--volume='"$IL_DATA"/volumes/creds:/etc/creds:ro '--volume='"$IL_DATA"/volumes/token:/var/run/secrets/tokens:ro '--volume='"$IL_DATA"/volumes/work:/work '--volume='"$IL_DATA"/.interlink/main:/.interlink:ro '--workdir=/srv' '--device=nvidia.com/gpu=all' '--entrypoint=["/.interlink/envexec","/.interlink/env","--"]' ghcr.io/acme/app:v1 /app --serve "it's ok"
}
il_c1_cleanup() {
	podman rm --force --ignore il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-main >/dev/null 2>&1
	return 0
}

# container sidecar, image /images/tools.sif
il_c2() {
	cp -- "$IL_ENVEXEC" "$IL_DATA"/.interlink/sidecar/envexec || return
	podman image exists -- /images/tools.sif >/dev/null 2>&1 || podman pull -q -- /images/tools.sif >/dev/null || return
	local il_ep il_cmd
	mapfile -d '' -t il_ep < <(podman image inspect --format '{{range .Config.Entrypoint}}{{.}}{{"\x00"}}{{end}}' -- /images/tools.sif)
	mapfile -d '' -t il_cmd < <(podman image inspect --format '{{range .Config.Cmd}}{{.}}{{"\x00"}}{{end}}' -- /images/tools.sif)
	"$IL_ENVEXEC" bind 5 "$IL_DATA"/volumes/work logs 1 '--volume=' :/work -- podman run --rm '--name=il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-sidecar' '--network=host' '--volume=:/work' '--volume='"$IL_DATA"/.interlink/sidecar:/.interlink:ro '--entrypoint=["/.interlink/envexec","/.interlink/env","--"]' /images/tools.sif "${il_ep[@]}" watch
}
il_c2_cleanup() {
	podman rm --force --ignore il-0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a-sidecar >/dev/null 2>&1
	return 0
}

# Init containers run in order; the first that fails ends the job.
il_run setup il_c0; il_code=$?; il_c0_cleanup; (exit $il_code) || exit $?
# Containers run side by side; the job's exit code is the first non-zero one.
il_pids=()
{ il_run main il_c1; il_code=$?; il_c1_cleanup; exit $il_code; } &
il_pids+=($!)
{ il_run sidecar il_c2; il_code=$?; il_c2_cleanup; exit $il_code; } &
il_pids+=($!)
il_exit=0
for pid in "${il_pids[@]}"; do
	wait "$pid" || { code=$?; [[ $il_exit -eq 0 ]] && il_exit=$code; }
done
exit "$il_exit"
