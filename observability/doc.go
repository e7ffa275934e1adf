// Package observability holds the operational helpers every interLink binary
// shares: configuration loading (config), structured logging (logging), and,
// as they grow, metrics and tracing.
package observability
