// Package e2eenv holds what the end-to-end tests share: the repository's
// root, our binaries built once, the control plane's binaries (built and
// cached by examples/cluster/build.sh), Ory Hydra started by .ci/hydra.sh,
// and the rule that a missing prerequisite fails under CI and skips
// elsewhere. Only tests import it.
package e2eenv
