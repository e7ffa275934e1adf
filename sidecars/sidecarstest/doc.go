// Package sidecarstest is the conformance suite every sidecar's tests run:
// Run(t, plugin, cfg) serves the plugin with sidecars.NewHandler on a
// loopback server and drives it through sidecars.Client, so the wire layer
// is checked together with the plugin.
package sidecarstest
