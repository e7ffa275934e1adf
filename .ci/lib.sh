# Shared shell helpers of the project's scripts. Source it; do not run it.
# shellcheck shell=bash

# Cache of heavy builds, outside the repository, keyed by version.
: "${INTERLINK_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/interlink}"
export INTERLINK_CACHE

GOLANGCI_LINT_VERSION=v2.15.0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# golangci_lint prints the path of golangci-lint, building it once per version.
golangci_lint() {
	local dir="$INTERLINK_CACHE/tools/golangci-lint-$GOLANGCI_LINT_VERSION"
	if [ ! -x "$dir/golangci-lint" ]; then
		log "building golangci-lint $GOLANGCI_LINT_VERSION into $dir (once; about 3 minutes)"
		mkdir -p "$dir"
		(cd "$dir" && GOBIN="$dir" GOFLAGS=-buildvcs=false go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION") >&2 ||
			die "could not build golangci-lint"
	fi
	printf '%s\n' "$dir/golangci-lint"
}

# free_port prints a free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# progress WHAT LOG CMD...: run a long step with its output in LOG, showing
# what is happening and for how long (a live counter on a terminal, a line
# every 30 s otherwise), then how long it took; on failure the log's tail.
# With EXPECT=SECONDS in its environment (EXPECT=720 progress ...), the
# elapsed time is shown against that expected time (measured on a 2-core
# machine, README).
progress() {
	local what=$1 logf=$2 pid t0 secs rc=0 of=""
	shift 2
	[ -n "${EXPECT:-}" ] && of=" of about ${EXPECT}s"
	t0=$(date +%s)
	"$@" >"$logf" 2>&1 &
	pid=$!
	if [ -t 2 ]; then
		while kill -0 "$pid" 2>/dev/null; do
			printf '\r    %s ... %ds%s ' "$what" $(($(date +%s) - t0)) "$of" >&2
			sleep 1
		done
		printf '\r\033[K' >&2
	else
		printf '    %s ...\n' "$what" >&2
		while kill -0 "$pid" 2>/dev/null; do
			for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null && sleep 1; done
			kill -0 "$pid" 2>/dev/null && printf '    %s: still working, %ds%s (log: %s)\n' "$what" $(($(date +%s) - t0)) "$of" "$logf" >&2
		done
	fi
	wait "$pid" || rc=$?
	secs=$(($(date +%s) - t0))
	if [ "$rc" -ne 0 ]; then
		printf '    %s failed after %ds; the end of %s:\n' "$what" "$secs" "$logf" >&2
		tail -n 20 "$logf" >&2
		return "$rc"
	fi
	[ -n "$of" ] && of=" (expected about ${EXPECT}s)"
	printf '    %s: done in %ds%s\n' "$what" "$secs" "$of" >&2
}

# alive PID: the process exists and is no zombie (PID 1 here reaps late).
alive() {
	local st
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# stop_pid FILE NAME [SECONDS]: SIGTERM the process whose PID is in FILE if it
# is still NAME (its comm, which the kernel cuts to 15 characters; a recycled
# PID is left alone), SIGKILL after SECONDS (10); FILE is removed.
stop_pid() {
	local f=$1 name=$2 secs=${3:-10} pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${name:0:15}" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq $((secs * 10))); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			log "$name ($pid) ignored SIGTERM for $secs s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 50); do
				alive "$pid" || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$f"
}
