package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Reason classifies an error. It is the "reason" of a typed JSON error.
type Reason string

// Reasons, each mapped to one HTTP status by HTTPStatus.
const (
	ReasonInvalid          Reason = "Invalid"
	ReasonNotFound         Reason = "NotFound"
	ReasonUnavailable      Reason = "Unavailable"
	ReasonTimeout          Reason = "Timeout"
	ReasonTooLarge         Reason = "RequestEntityTooLarge"
	ReasonMethodNotAllowed Reason = "MethodNotAllowed"
	ReasonUnauthorized     Reason = "Unauthorized"
	ReasonForbidden        Reason = "Forbidden"
	ReasonNotImplemented   Reason = "NotImplemented"
	ReasonInternal         Reason = "Internal"
	// ReasonImageNotFound: a container's image is neither at the site nor
	// pullable. The VK leaves the pod Pending, its containers waiting with
	// ErrImagePull then ImagePullBackOff, and submits it again later, as a
	// kubelet retries a pull.
	ReasonImageNotFound Reason = "ImageNotFound"
)

// Status is the body of a typed JSON error, and the per-pod error of a
// batched status reply.
type Status struct {
	Message string `json:"error"`
	Reason  Reason `json:"reason"`
}

// Error is an error with a Reason. Create one with Invalid, NotFound,
// Unavailable or NewError, and read it back with ReasonOf.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// NewError returns an error of the given reason.
func NewError(reason Reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Invalid reports bad input from the caller.
func Invalid(format string, args ...any) error { return NewError(ReasonInvalid, format, args...) }

// NotFound reports an unknown pod, container or sidecar.
func NotFound(format string, args ...any) error { return NewError(ReasonNotFound, format, args...) }

// Unavailable reports a backend that cannot be reached or is failing.
func Unavailable(format string, args ...any) error {
	return NewError(ReasonUnavailable, format, args...)
}

// ImageNotFound reports an image the backend does not have and cannot pull.
func ImageNotFound(format string, args ...any) error {
	return NewError(ReasonImageNotFound, format, args...)
}

// ReasonOf classifies err.
func ReasonOf(err error) Reason {
	var e *Error
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Reason
	case errors.As(err, &tooLarge):
		return ReasonTooLarge
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	default:
		return ReasonInternal
	}
}

// IsNotFound tells whether err has ReasonNotFound.
func IsNotFound(err error) bool { return ReasonOf(err) == ReasonNotFound }

// HTTPStatus maps a reason to its HTTP status code. This is the only place
// where that mapping is made.
func HTTPStatus(r Reason) int {
	switch r {
	case ReasonInvalid:
		return http.StatusBadRequest
	case ReasonNotFound, ReasonImageNotFound:
		// A peer that reads no typed body sees a 404, which it retries.
		return http.StatusNotFound
	case ReasonUnavailable:
		return http.StatusServiceUnavailable
	case ReasonTimeout:
		return http.StatusGatewayTimeout
	case ReasonTooLarge:
		return http.StatusRequestEntityTooLarge
	case ReasonMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case ReasonUnauthorized:
		return http.StatusUnauthorized
	case ReasonForbidden:
		return http.StatusForbidden
	case ReasonNotImplemented:
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}

// reasonFromStatus is the inverse of HTTPStatus for replies without a typed body.
func reasonFromStatus(code int) Reason {
	switch code {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return ReasonInvalid
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusTooManyRequests:
		return ReasonUnavailable
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return ReasonTimeout
	case http.StatusRequestEntityTooLarge:
		return ReasonTooLarge
	case http.StatusMethodNotAllowed:
		return ReasonMethodNotAllowed
	case http.StatusUnauthorized:
		return ReasonUnauthorized
	case http.StatusForbidden:
		return ReasonForbidden
	case http.StatusNotImplemented:
		return ReasonNotImplemented
	default:
		return ReasonInternal
	}
}

// StatusOf returns the typed body describing err.
func StatusOf(err error) Status {
	return Status{Message: err.Error(), Reason: ReasonOf(err)}
}

// WriteError writes err with its HTTP status. Peers that declared
// HeaderAPIVersion or accept JSON get a typed JSON body; others (the original
// clients, which log the body as text) get plain text.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	st := StatusOf(err)
	code := HTTPStatus(st.Reason)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r != nil && (r.Header.Get(HeaderAPIVersion) != "" || strings.Contains(r.Header.Get("Accept"), "application/json")) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, st.Message)
}

// ErrorFromReply rebuilds a typed error from a non-2xx reply: its typed JSON
// body when there is one, else its text and status code.
func ErrorFromReply(code int, body []byte) error {
	var st Status
	if json.Unmarshal(body, &st) == nil && st.Reason != "" {
		if st.Message == "" { // a typed reply without a message still says what failed
			st.Message = fmt.Sprintf("status %d: %s", code, string(st.Reason))
		}
		return &Error{Reason: st.Reason, Err: errors.New(st.Message)}
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		msg = http.StatusText(code)
	}
	return &Error{Reason: reasonFromStatus(code), Err: fmt.Errorf("status %d: %s", code, msg)}
}
