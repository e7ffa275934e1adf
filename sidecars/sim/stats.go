package sim

import (
	"encoding/json"
	"net/http"
)

// PathStats serves Stats as JSON, beside the protocol's paths.
const PathStats = "/sim/stats"

// Handler serves the wire protocol (protocol, from sidecars.NewHandler) and
// PathStats.
func (s *Sim) Handler(protocol http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", protocol)
	mux.HandleFunc(PathStats, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
	return mux
}
