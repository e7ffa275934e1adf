# shellcheck shell=bash
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
	# shellcheck disable=SC1007 # "last=" is an empty local on purpose, as the scripts in testdata/golden have it
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
