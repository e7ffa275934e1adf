package server

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof" //nolint:gosec // mounted only on listeners that ask for it (DefaultServeMux is never served)
	"strconv"
	"strings"
)

// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/, for a
// listener of their own (the original interLink's Pprof block).
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// PprofConfig is the original interLink's Pprof block (of its VK and its
// API server alike): Go's profiles on a listener of their own, without
// authentication.
type PprofConfig struct {
	Enabled bool   `json:"Enabled" env:"ENABLE_PPROF" doc:"Serve Go's profiles (net/http/pprof), without authentication, on Address:Port (original key and env)."`
	Address string `json:"Address" env:"PPROF_ADDRESS" doc:"Listen host of the profiles; a non-loopback one is logged as a warning (original key and env)."`
	Port    string `json:"Port" env:"PPROF_PORT" doc:"Listen port of the profiles (original key and env)."`
}

// PprofAddress is where the profiles are served when Address is empty:
// loopback, as they are not authenticated (the original's default).
const PprofAddress = "127.0.0.1"

// Listen is the profiling server's host:port (an empty Port is
// defaultPort, the binary's), or why Address and Port make none.
func (p *PprofConfig) Listen(defaultPort string) (string, error) {
	host, port := p.Address, p.Port
	if host == "" {
		host = PprofAddress
	}
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("Pprof.Port %q (PPROF_PORT): want a port number", port)
	}
	if strings.ContainsAny(host, "/ ") || strings.Contains(host, "://") {
		return "", fmt.Errorf("Pprof.Address %q (PPROF_ADDRESS): want a host name or IP, without scheme or port", host)
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port), nil
}

// Warning says when the profiles are served beyond loopback ("" if not,
// or when they are not served); who names the binary.
func (p *PprofConfig) Warning(who, defaultPort string) string {
	l, err := p.Listen(defaultPort)
	if !p.Enabled || err != nil {
		return ""
	}
	if host, _, _ := net.SplitHostPort(l); Loopback(host) {
		return ""
	}
	return fmt.Sprintf("Pprof serves profiles without authentication on %s, not on loopback: anyone who reaches it can read %s's memory", l, who)
}

// Loopback tells whether host (a name or an IP) is this machine's loopback.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
