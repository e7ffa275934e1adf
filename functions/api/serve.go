package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// Route returns the handler of one API path, shared by interLink and the
// sidecars. A method not in allowed is a 405 (MethodNotAllowed) with an
// Allow header listing allowed; any other request runs fn, and fn's error is
// passed to onErr (to log it; nil skips that) and written with WriteError.
func Route(path string, fn func(http.ResponseWriter, *http.Request) error, onErr func(*http.Request, error), allowed ...string) http.HandlerFunc {
	allow := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(allowed, r.Method) {
			w.Header().Set("Allow", allow)
			WriteError(w, r, NewError(ReasonMethodNotAllowed, "method %s not allowed on %s", r.Method, path))
			return
		}
		if err := fn(w, r); err != nil {
			if onErr != nil {
				onErr(r, err)
			}
			if !IsWritten(err) { // a stream's refusal went on the stream
				WriteError(w, r, err)
			}
		}
	}
}

// WriteJSON writes v as a JSON reply (status 200 unless already written).
func WriteJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
