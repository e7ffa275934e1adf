package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
)

// DefaultMaxBodyBytes is the default cap of a request body, at interLink
// and at the sidecars (a /status batch of 10,000 full pods is about 40 MiB).
const DefaultMaxBodyBytes = 128 << 20

// DecodeJSON decodes one JSON value from r into v. Every failure is an
// Invalid error naming the problem (or a too-large error from a capped body).
// Unknown fields are accepted: peers may be newer than us.
func DecodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			return NewError(ReasonTooLarge, "request body larger than %d bytes", tooLarge.Limit)
		case errors.Is(err, io.EOF):
			return Invalid("request body is empty, want JSON")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return Invalid("request body is truncated JSON")
		case errors.As(err, &syntax):
			return Invalid("malformed JSON at byte %d: %v", syntax.Offset, err)
		case errors.As(err, &typ):
			return Invalid("field %q: JSON %s cannot be decoded into %s", typ.Field, typ.Value, typ.Type)
		default:
			return Invalid("decode JSON body: %v", err)
		}
	}
	if dec.More() {
		return Invalid("request body has data after the JSON value")
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return NewError(ReasonTooLarge, "request body larger than %d bytes", tooLarge.Limit)
		}
		return Invalid("request body has data after the JSON value: %v", err)
	}
	return nil
}

// ReadJSON caps r's body at limit bytes and decodes it into v.
func ReadJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if r.Body == nil {
		return Invalid("request body is empty, want JSON")
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	defer func() { _ = body.Close() }()
	if err := DecodeJSON(body, v); err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	return nil
}

// ReadPod decodes a body that is one pod (a /delete or /updateCache) and
// validates it with ValidatePod.
func ReadPod(w http.ResponseWriter, r *http.Request, limit int64) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := ReadJSON(w, r, limit, &pod); err != nil {
		return nil, err
	}
	if err := ValidatePod(&pod); err != nil {
		return nil, err
	}
	return &pod, nil
}

// ReadLogRequest decodes and validates a /getLogs body.
func ReadLogRequest(w http.ResponseWriter, r *http.Request, limit int64) (*LogRequest, error) {
	var req LogRequest
	if err := ReadJSON(w, r, limit, &req); err != nil {
		return nil, err
	}
	return &req, ValidateLogRequest(&req)
}

// ReadExecRequest decodes and validates an /exec body.
func ReadExecRequest(w http.ResponseWriter, r *http.Request, limit int64) (*ExecRequest, error) {
	var req ExecRequest
	if err := ReadJSON(w, r, limit, &req); err != nil {
		return nil, err
	}
	return &req, ValidateExecRequest(&req)
}
