// Package charts holds the checks of the ways interLink's virtual node is
// deployed: the Helm chart (charts/interlink), the kustomize base and overlays
// rendered from it (charts/kustomize), and the Docker Compose file of the
// remote side (examples/compose). Its tests keep the chart's generated parts
// fresh (the values table of its README, the dashboard and alert copies, the
// kustomize base; `make generate` rewrites them) and, with the e2e build tag,
// install the chart into a real control plane.
package charts
