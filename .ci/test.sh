#!/usr/bin/env bash
# Runs every check of `make test`, one tier after another, printing each
# tier's time, and a closing line "tiers: N passed, N failed".
# TIERS="lint unit" limits the run to some tiers.
set -uo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

TIERS=${TIERS:-"lint verify unit e2e-api e2e-auth e2e-vk e2e-slurm hostile behavior e2e-docker demo streams observability faults fuzz installer e2e-chart"}
passed=0 failed=0 summary=()

# need_apptainer: Apptainer's packages installed and Apptainer built (once
# into the cache, about 10-15 minutes cold; a second or so warm), saying how
# long that took.
need_apptainer() {
	local t0=$SECONDS
	.ci/apptainer.sh install && .ci/apptainer.sh build >/dev/null || return 1
	log "Apptainer ready in $((SECONDS - t0))s (.ci/apptainer.sh build)"
}

tier_lint() { "$(golangci_lint)" run ./...; }
tier_verify() {
	# Generated files and go.mod must be up to date; code must be gofmt'ed.
	local out
	out=$(gofmt -l $(git ls-files '*.go')) || return 1
	[ -z "$out" ] || { echo "not gofmt'ed: $out"; return 1; }
	go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; return 1; }
	# The fixed functions of every SLURM job script (sidecars/slurm/prelude.sh,
	# embedded in the sidecar): bash -n, then Debian's shellcheck (installed
	# with apt-get when missing, as root; under CI=true it must be there).
	bash -n sidecars/slurm/prelude.sh || return 1
	if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		log "installing shellcheck"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >&2
	fi
	if command -v shellcheck >/dev/null 2>&1; then
		shellcheck sidecars/slurm/prelude.sh || return 1
	elif [ "${CI:-}" = true ]; then
		echo "shellcheck is missing and could not be installed (apt-get install shellcheck, as root)"
		return 1
	else
		log "shellcheck is missing (apt-get install shellcheck, as root): sidecars/slurm/prelude.sh is not checked"
	fi
	go test -count=1 ./docs/ -run 'TestConfigDocIsFresh|TestMetricsDocIsFresh|TestDashboardsAndAlertsUseDeclaredMetrics|TestLinks' -v
}
tier_unit() { go test -race -count=1 ./...; }
# The API tier: interlink and interlink-sim as real processes, driven over HTTP.
tier_e2e-api() { go test -count=1 -tags e2e -run 'TestE2E' -v ./functions/; }
# The auth tier: interlink's embedded proxy against real access tokens from
# Ory Hydra, side by side with a standalone oauth2-proxy v7.15.4 (both built
# once from their Go modules into the cache, about 6 minutes cold).
tier_e2e-auth() {
	.ci/hydra.sh build >/dev/null || return 1
	.ci/oauth2-proxy.sh build >/dev/null || return 1
	go test -count=1 -timeout 10m -tags e2e -run 'TestE2E' -v ./proxy/
}
# The virtual-node tier: a real control plane (built once from the Kubernetes
# Go modules into the cache, about 8 minutes cold), interlink-vk, interlink and
# interlink-sim as real processes, driven with kubectl and client-go.
tier_e2e-vk() {
	examples/cluster/build.sh >/dev/null || return 1
	go test -count=1 -timeout 20m -tags e2e -run 'TestE2E' -v ./vk/
}

# The observability tier: alert rules checked and unit-tested with promtool
# (Debian's prometheus, installed when missing), scrapes checked with
# promtool check metrics, and a real Prometheus scraping the whole stack
# (control plane, VK, interlink, sim, SLURM and Docker sidecars) while pods
# run and fail: every dashboard panel's query must return data.
tier_observability() {
	.ci/prometheus.sh install || return 1
	.ci/slurm.sh install || return 1
	.ci/docker.sh install || return 1
	examples/cluster/build.sh >/dev/null || return 1
	go test -count=1 -timeout 15m -tags e2e -v ./observability/
}
# The SLURM tier: a private slurm-wlm (installed with apt when missing, as
# root) on free loopback ports, jobs running busybox with Charliecloud, with
# Podman (Debian's, .ci/podman.sh) on a private storage, and with Apptainer
# from a config file in the original SLURM plugin's shape.
tier_e2e-slurm() {
	.ci/slurm.sh install && .ci/podman.sh install && need_apptainer || return 1
	# The original plugin's config file runs its jobs with Apptainer
	# (ContainerRuntime: singularity), as a second Unix account.
	INTERLINK_E2E_APPTAINER="$(.ci/apptainer.sh build)/apptainer" \
		go test -count=1 -timeout 15m -tags e2e -run 'TestE2E' -v ./sidecars/slurm/
}
# The hostile tier: make demo's whole stack (control plane, VK, interlink,
# the SLURM sidecar on a private slurm-wlm, Apptainer, Charliecloud then
# Podman in real jobs: HOSTILE_RUNTIMES) fed hostile pods with kubectl: annotations,
# sbatch and mpiexec flags and container env that try to run commands on the
# host. Each is refused or runs confined, and a long-running pod of another
# namespace lives on.
tier_hostile() {
	.ci/slurm.sh install && .ci/images.sh install && .ci/podman.sh install && need_apptainer || return 1
	go test -count=1 -timeout 45m -tags e2e -run 'TestE2EHostilePods' -v ./examples/demo/
}

# The pod-behavior tier: one suite of ordinary pods (command/args over the
# image's ENTRYPOINT/CMD, exact env and files, readOnly, subPath, init
# containers, exit codes and OOM, restarts, logs, symlinked image paths,
# localhost, image references) applied with kubectl to make demo's stack on
# each backend: SLURM with Charliecloud, SLURM with Apptainer, SLURM with
# Podman (Debian's, .ci/podman.sh), and the Docker sidecar. The test images
# are built locally (.ci/images.sh: mmdebstrap, docker build).
tier_behavior() {
	.ci/slurm.sh install && .ci/docker.sh install && .ci/images.sh install && .ci/podman.sh install && need_apptainer || return 1
	# -parallel: every case's check waits on the pods at once (Go's default,
	# GOMAXPROCS, would hold most back until the first end).
	go test -count=1 -timeout 45m -parallel 64 -tags e2e -run 'TestE2EPodBehavior' -v ./examples/demo/
}

# The Docker tier: a private dockerd and containerd (Debian's docker.io,
# installed with apt when missing, as root) with busybox imported from a
# tarball, and a loopback registry requiring basic auth.
tier_e2e-docker() {
	.ci/docker.sh install || return 1
	go test -count=1 -timeout 15m -tags e2e -run 'TestE2E' -v ./sidecars/docker/
}

# The installer tier: interlink-installer run as a user would; its systemd
# units pass systemd-analyze verify (Debian's systemd, installed when
# missing), the commands in them, started directly, give a working remote
# side (the Docker sidecar with an OIDC device-code login against an
# in-process issuer; the SLURM sidecar with a static token), and its Helm
# values install on a real control plane.
tier_installer() {
	.ci/systemd.sh install && .ci/docker.sh install && .ci/slurm.sh install || return 1
	examples/cluster/build.sh >/dev/null || return 1
	go test -count=1 -timeout 15m -tags e2e -run 'TestE2E' -v ./functions/installer/
}
# The demo tier: make demo as a user runs it (SLURM + Apptainer + Hydra;
# then Docker against an existing cluster), every example applied to it, and
# every block of the docs marked runnable run against it.
tier_demo() {
	.ci/slurm.sh install && .ci/docker.sh install && .ci/images.sh install && need_apptainer || return 1
	.ci/hydra.sh build >/dev/null || return 1
	go test -p 1 -count=1 -timeout 25m -tags e2e -run 'TestE2E' -skip 'TestE2EHostilePods|TestE2EPodBehavior|TestE2EStreams' -v ./examples/demo/ ./docs/
}

# The streams tier: kubectl port-forward (100 connections at once, on SLURM
# through the node and through the job), exec -it on a pty, exec -i,
# attach, RBAC refusals, the idle timeout, and no remote process left by a
# client gone, on make demo's SLURM and Docker stacks.
tier_streams() {
	.ci/slurm.sh install && .ci/docker.sh install && .ci/images.sh install && need_apptainer || return 1
	go test -count=1 -timeout 30m -tags e2e -run 'TestE2EStreams' -v ./examples/demo/
}

# The fault tier: the whole chain (a real control plane, the VK, interlink
# accepting Ory Hydra's JWTs from the token refresher, the sim) through a
# VK SIGKILL, 60 s without interlink, sidecar, API server and etcd restarts,
# token renewals and a slow then failing sidecar, each in the middle of a
# burst of 200 pods, counting pods, jobs and finished pods after each; then
# two interlink replicas behind a TCP balancer, one killed mid-burst.
tier_faults() {
	examples/cluster/build.sh >/dev/null || return 1
	.ci/hydra.sh build >/dev/null || return 1
	go test -count=1 -timeout 20m -tags e2e -run 'TestFaults|TestTwoReplicas' -v ./vk/chain/
}
# The fuzz tier: each fuzz target of the API's and the sidecar SDK's
# decoders for a few seconds (make fuzz runs them longer).
tier_fuzz() { FUZZTIME=${FUZZTIME:-4s} .ci/fuzz.sh; }

# The chart tier: helm lint/template of every scenario, schema refusals,
# server-side dry-runs (chart and kustomize) and a real helm install on a
# real control plane, the VK run with the chart's ServiceAccount, and the
# compose file brought up on a private dockerd (Debian's docker-compose).
tier_e2e-chart() {
	examples/cluster/build.sh >/dev/null || return 1
	.ci/docker.sh install || return 1
	go test -count=1 -timeout 20m -tags e2e -v ./charts/
}

# digest LOG: what the failed tests of a tier's output said: with go test
# -v the lines each failed leaf test (one with no failed subtest) printed
# under its === headers; without -v the indented lines after its --- FAIL.
# At most 25 lines a test and 200 in all, so that the end of a long run
# tells why it failed.
digest() {
	awk '
		FNR == 1 { pass++ }
		pass == 2 && FNR == 1 {
			for (n in failed) { leaf[n] = 1 }
			for (n in failed) {
				p = n
				while (sub(/\/[^\/]*$/, "", p)) { delete leaf[p] }
			}
		}
		/^[[:space:]]*--- FAIL: / {
			if (pass == 1) { failed[$3] = 1 }
			if (pass == 2 && ($3 in leaf) && total < 200) { print; total++; after = 1 }
			next
		}
		pass == 2 && after && /^[[:space:]]+/ && !/^[[:space:]]*--- (PASS|SKIP)/ && total < 200 { print; total++; next }
		{ after = 0 }
		/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
		pass == 2 && cur != "" && (cur in leaf) && lines[cur] < 25 && total < 200 &&
			!/^[[:space:]]*(--- (PASS|SKIP)|PASS$|FAIL$|ok |FAIL\t)/ {
			if (!(cur in said)) { print "[" cur "]"; said[cur] = 1 }
			print; lines[cur]++; total++
		}
		pass == 2 && /^(panic:|fatal error:)/ && total < 200 { print; total++ }
	' "$1" "$1"
}

# bridges: the host's bridge interfaces, one a line. A tier that leaves one
# behind (a private dockerd's network, not deleted at its down) fails: each
# holds one of dockerd's 31 default address pools until the machine reboots.
bridges() {
	local b
	for b in /sys/class/net/*/bridge; do [ -e "$b" ] && basename "$(dirname "$b")"; done | sort
}

# left_bridges BEFORE: say which bridges the tier left, delete them, fail.
left_bridges() {
	local left name
	left=$(comm -13 "$1" <(bridges))
	[ -z "$left" ] && return 0
	echo "--- FAIL: the tier left host bridge interfaces (a dockerd's networks not deleted at .ci/docker.sh down): ${left//$'\n'/ }"
	for name in $left; do ip link delete "$name" type bridge 2>/dev/null || true; done
	return 1
}

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failures=()
for tier in $TIERS; do
	log "tier $tier"
	start=$(date +%s)
	bridges >"$logs/$tier.bridges"
	if { "tier_$tier" && left_bridges "$logs/$tier.bridges"; } 2>&1 | tee "$logs/$tier.log"; then
		status=passed; passed=$((passed + 1))
	else
		status=FAILED; failed=$((failed + 1)); failures+=("$tier")
	fi
	secs=$(( $(date +%s) - start ))
	summary+=("$(printf '%-10s %-7s %4ds' "$tier" "$status" "$secs")")
	log "tier $tier $status in ${secs}s"
done

echo
echo "tier       result   time"
printf '%s\n' "${summary[@]}"
echo "tiers: $passed passed, $failed failed"

# Why, last: CI shows the end of the output.
for tier in "${failures[@]}"; do
	echo
	log "why tier $tier failed (its failed tests' output; the whole of it is above)"
	d=$(digest "$logs/$tier.log")
	if [ -n "$d" ]; then printf '%s\n' "$d"; else tail -n 40 "$logs/$tier.log"; fi
done
[ "$failed" -eq 0 ]
