// Package functions is the interLink API server: stateless HTTP handlers for
// the VK -> interLink protocol that route each pod to a sidecar (by the
// interlink.io/sidecar annotation or the configured default), fan batched
// status calls out to the sidecars concurrently, aggregate their pings and
// stream their logs. It keeps no state, so several replicas can run behind a
// load balancer.
package functions
