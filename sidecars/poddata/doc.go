// Package poddata lays out a pod's data (ConfigMaps, Secrets, projected
// volumes, emptyDirs) as files for a sidecar to bind into its containers:
// every path checked to stay inside its volume, every file written through
// an os.Root so that nothing lands outside the sidecar's data directory,
// secrets never readable by group or others.
package poddata
