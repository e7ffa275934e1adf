// Package sidecars is the SDK for interLink sidecars (plugins): the Plugin
// interface a backend implements, NewHandler which serves it over the wire
// protocol with the same validation and error mapping as interLink, and
// Client, which calls any sidecar (ours or an original interLink plugin) and
// itself implements Plugin.
//
// It imports only functions/api of this project.
package sidecars
