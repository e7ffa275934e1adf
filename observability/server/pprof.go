package server

import (
	"net/http"
	"net/http/pprof" //nolint:gosec // mounted only on listeners that ask for it (DefaultServeMux is never served)
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
