// Package sim is a simulated sidecar: it runs no containers. Each pod goes
// Pending -> Running -> Succeeded (or Failed) on configurable delays and
// writes synthetic logs. It is the backend of scale benchmarks and fault
// tests, as kwok is for the kubelet; it is never a real backend.
//
// The annotation interlink.io/sim-outcome chooses a pod's fate: "succeeded"
// (the default), "failed" (exit code 1), "running" (never ends) or
// "create-error" (the create call fails with an Unavailable error).
//
// For fault tests the sim can answer slowly or with 503 for a while
// (Config.Faults, from INTERLINK_SIM_FAULT_* or POST /sim/faults), and it
// counts every call (GET /sim/stats): jobs created, calls by path, calls
// per second, the most served at once, and the jobs it holds.
package sim
