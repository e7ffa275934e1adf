// Package docker is the Docker sidecar: each pod becomes a set of
// containers on a Docker Engine, driven through its API (the moby client,
// never the docker CLI). A pause container holds the pod's network
// namespace, which every container of the pod joins; init containers run in
// order before the others start. Every container carries the pod's labels,
// so all state is read back from Docker itself: a restarted sidecar knows
// every pod, and a create of a known UID returns the existing pod.
package docker
