// Package envexec is the small helper that starts a SLURM pod's container
// command inside the container: it reads the container's environment from a
// file of NUL-separated NAME=VALUE entries (0600, written by the sidecar),
// sets it, and execs the command. Pod values therefore never pass through
// the job's shell, a runtime's quoting rules or a host program's
// environment: they reach the container byte for byte.
//
// Before it execs the command, it makes the container's read-only binds
// read-only (-r PATH: a runtime such as Charliecloud binds only
// read-write) and drops every capability outside Docker's default set
// (never CAP_SYS_ADMIN), with no_new_privs, so that the command can undo
// neither (confine.go).
//
// The helper is a static binary (it imports no cgo package), bound into the
// container by the job; it must never run on the host with pod data.
package envexec
