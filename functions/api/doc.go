// Package api defines the interLink wire protocol: the JSON types exchanged by
// the virtual kubelet, the interLink API server and the sidecars, the request
// paths and headers, and the typed errors with their one mapping to HTTP
// status codes.
//
// The JSON field names are exactly those of the original interLink (0.6.x), so
// peers of either implementation interoperate. Extensions (the API version
// header, typed JSON errors, per-pod status errors, sidecar health in a ping)
// are optional fields that an original peer ignores and never receives unless
// it declared our API version.
//
// This package is a leaf: it imports only the Kubernetes API types.
package api
