# interLink. `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

BINARIES := functions/cmd/interlink sidecars/sim/cmd/interlink-sim sidecars/slurm/cmd/interlink-slurm sidecars/slurm/cmd/interlink-envexec sidecars/slurm/cmd/interlink-prober sidecars/docker/cmd/interlink-docker vk/cmd/interlink-vk vk/cmd/interlink-token-refresher proxy/cmd/interlink-proxy functions/cmd/interlink-installer
BIN := bin

## help: list the targets
.PHONY: help
help:
	@grep -hE '^## [a-z0-9-]+:' $(MAKEFILE_LIST) | sed -e 's/^## //' | awk -F': ' '{printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

## build: build every binary into bin/ (static, CGO_ENABLED=0)
.PHONY: build
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/ $(addprefix ./,$(BINARIES))

## test: every check CI runs (lint, verify, go test -race, e2e tiers), timed per tier
.PHONY: test
test:
	@.ci/test.sh

## lint: golangci-lint (built once into the cache)
.PHONY: lint
lint:
	@TIERS=lint .ci/test.sh

## verify: gofmt, go mod tidy, generated docs and links are up to date
.PHONY: verify
verify:
	@TIERS=verify .ci/test.sh

## unit: go test -race ./...
.PHONY: unit
unit:
	@TIERS=unit .ci/test.sh

## e2e: the end-to-end tiers (real processes)
.PHONY: e2e
e2e:
	@TIERS="e2e-api e2e-auth e2e-vk e2e-slurm hostile behavior e2e-docker demo observability faults installer e2e-chart" .ci/test.sh

## fuzz: every fuzz target of the API and sidecar SDK decoders, FUZZTIME each (default 2m)
.PHONY: fuzz
fuzz:
	@FUZZTIME=$${FUZZTIME:-2m} .ci/fuzz.sh

## chart: the Helm chart, kustomize and compose checks on a real control plane and dockerd (tier e2e-chart)
.PHONY: chart
chart:
	@TIERS=e2e-chart .ci/test.sh

## behavior: the pod-behavior suite on Charliecloud, Apptainer, Podman and Docker (tier behavior); INTERLINK_UPDATE_DOCS=1 rewrites docs/slurm.md's table
.PHONY: behavior
behavior:
	@TIERS=behavior .ci/test.sh

## hostile: hostile pods (annotations, sbatch and mpiexec flags, env) against make demo's SLURM stack on Apptainer, Charliecloud and Podman (tier hostile)
.PHONY: hostile
hostile:
	@TIERS=hostile .ci/test.sh

## generate: rewrite generated files (docs/config.md, docs/metrics.md, golden job scripts, installer golden files, the chart's values table, dashboard copies and kustomize base)
.PHONY: generate
generate:
	go test ./docs/ -run 'TestConfigDocIsFresh|TestMetricsDocIsFresh' -update
	go test ./charts/ -run 'TestReadmeValuesTableIsFresh|TestChartFilesAreFresh' -update
	examples/cluster/build.sh >/dev/null && go test -tags e2e ./charts/ -run TestE2EKustomizeBaseIsFresh -update
	go test ./sidecars/slurm/ -run TestGoldenScripts -update
	go test ./functions/installer/ -run TestGolden -update

## bench: every benchmark (status of 10,000 pods, sim memory, the whole chain, auth, SLURM, Docker)
.PHONY: bench
bench:
	go test -run '^$$' -bench . -benchmem -benchtime 10x ./functions/ ./sidecars/...
	go test -run '^$$' -bench . -benchmem ./proxy/
	@$(MAKE) --no-print-directory bench-chain
	@$(MAKE) --no-print-directory bench-auth
	@$(MAKE) --no-print-directory bench-slurm
	@$(MAKE) --no-print-directory bench-docker

## bench-chain: the whole chain at scale (1,000 and 10,000 pods, 50 pods/s, 10,000 pods in front of an original plugin, the node Ready after a start, 10 nodes x 1,000 pods, a VK restarted with 10,000 pods); writes docs/bench/ and docs/benchmarks.md
.PHONY: bench-chain
bench-chain:
	examples/cluster/build.sh >/dev/null
	INTERLINK_BENCH_OUT=$(CURDIR)/docs/bench go test -tags e2e -run '^$$' -bench WholeChain -benchtime 1x -timeout 40m -v ./vk/chain/
	INTERLINK_BENCH_OUT=$(CURDIR)/docs/bench go test -tags e2e -run '^$$' -bench OriginalPluginChain -benchtime 1x -timeout 40m -v ./vk/chain/
	INTERLINK_BENCH_OUT=$(CURDIR)/docs/bench go test -tags e2e -run '^$$' -bench NodeReady -benchtime 1x -timeout 10m -v ./vk/chain/
	INTERLINK_BENCH_OUT=$(CURDIR)/docs/bench go test -tags e2e -run '^$$' -bench 'ManyNodes|VKRestart10k|APIServerBaseline' -benchtime 1x -timeout 40m -v ./vk/chain/
	@$(MAKE) --no-print-directory bench-compare

## bench-compare: the last bench-chain run beside the earlier ones on the same CPU model (docs/bench/history.jsonl), as ratios
.PHONY: bench-compare
bench-compare:
	@go test -count=1 -run TestBenchHistory -v ./docs/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok'

## bench-docker: 100 pods through the Docker sidecar vs docker run -d (real dockerd)
.PHONY: bench-docker
bench-docker:
	.ci/docker.sh install
	go test -tags e2e -run '^$$' -bench 'Start100' -benchtime 1x -timeout 20m ./sidecars/docker/

## bench-slurm: 500 pods through the SLURM sidecar vs plain sbatch; a status poll of 1,000 jobs (real SLURM)
.PHONY: bench-slurm
bench-slurm:
	.ci/slurm.sh install
	go test -tags e2e -run '^$$' -bench 'Submit500|Status1000' -benchtime 1x -timeout 20m ./sidecars/slurm/

## bench-auth: interlink with no auth, its embedded proxy, and oauth2-proxy, side by side (real Hydra)
.PHONY: bench-auth
bench-auth:
	.ci/hydra.sh build >/dev/null && .ci/oauth2-proxy.sh build >/dev/null
	go test -tags e2e -run '^$$' -bench AuthFronts -benchtime 3000x ./proxy/

## demo: the main job on loopback: control plane, SLURM + Apptainer (RUNTIME=charliecloud|podman, SIDECAR=docker), Hydra (AUTH=static), kubectl
.PHONY: demo
demo: build
	@examples/demo/run.sh

## demo-down: stop what make demo started
.PHONY: demo-down
demo-down:
	@examples/demo/down.sh

## images: container images of every binary (FROM scratch; needs a Docker daemon)
.PHONY: images
images: build
	@for b in $(BINARIES); do [ -f $$b/Dockerfile ] || continue; n=$$(basename $$b); echo "docker build $$n"; docker build -q -t interlink/$$n:dev -f $$b/Dockerfile $(BIN)/ || exit 1; done

## cluster-up: start a local control plane in $$CLUSTER_DIR (default /tmp/interlink-cluster)
.PHONY: cluster-up
cluster-up:
	@examples/cluster/cluster.sh up $${CLUSTER_DIR:-/tmp/interlink-cluster}

## cluster-down: stop it
.PHONY: cluster-down
cluster-down:
	@examples/cluster/cluster.sh down $${CLUSTER_DIR:-/tmp/interlink-cluster}

## clean: remove build output
.PHONY: clean
clean:
	rm -rf $(BIN)
