// Package chain holds the whole-chain tests of interLink: the scale
// benchmark (BenchmarkWholeChain, `make bench-chain`) and the fault suite
// (TestFault*, the `faults` tier of `make test`). Both run a real control
// plane (examples/cluster/cluster.sh), interlink-vk, interlink with its
// embedded proxy and the simulated sidecar as separate processes, on free
// loopback ports, and stop them by PID. They sit behind the e2e build tag.
package chain
