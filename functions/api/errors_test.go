package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReasonAndStatus(t *testing.T) {
	tests := []struct {
		err    error
		reason Reason
		code   int
	}{
		{Invalid("bad %s", "x"), ReasonInvalid, 400},
		{fmt.Errorf("wrap: %w", NotFound("pod")), ReasonNotFound, 404},
		{Unavailable("down"), ReasonUnavailable, 503},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), ReasonTimeout, 504},
		{&http.MaxBytesError{Limit: 10}, ReasonTooLarge, 413},
		{fmt.Errorf("plain"), ReasonInternal, 500},
	}
	for _, tt := range tests {
		if got := ReasonOf(tt.err); got != tt.reason {
			t.Errorf("ReasonOf(%v) = %s, want %s", tt.err, got, tt.reason)
		}
		if got := HTTPStatus(ReasonOf(tt.err)); got != tt.code {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tt.err, got, tt.code)
		}
		// Every reason survives a trip over HTTP.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(HeaderAPIVersion, APIVersion)
		WriteError(rec, req, tt.err)
		back := ErrorFromReply(rec.Code, rec.Body.Bytes())
		if ReasonOf(back) != tt.reason || !strings.Contains(back.Error(), tt.err.Error()) {
			t.Errorf("round trip of %v gave %v (%s)", tt.err, back, ReasonOf(back))
		}
		// A plain-text reply of an original peer maps by status code.
		if got := ReasonOf(ErrorFromReply(tt.code, []byte("text"))); got != tt.reason {
			t.Errorf("plain %d -> %s, want %s", tt.code, got, tt.reason)
		}
	}
}

func TestWriteErrorNegotiates(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), NotFound("pod x not found"))
	if rec.Code != 404 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") || rec.Body.String() != "pod x not found\n" {
		t.Errorf("old client got %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept", "application/json")
	WriteError(rec, req, NotFound("pod x not found"))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Reason != ReasonNotFound || st.Message != "pod x not found" {
		t.Errorf("JSON client got %q (%v)", rec.Body.String(), err)
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name, body, want string
		reason           Reason
	}{
		{"empty", "", "empty", ReasonInvalid},
		{"syntax", `{"pod": {`, "truncated", ReasonInvalid},
		{"garbage", `{"pod": x}`, "malformed JSON", ReasonInvalid},
		{"wrong type", `{"pod": {"metadata": {"name": 7}}}`, `"pod.metadata.name"`, ReasonInvalid},
		{"trailing", `{} {}`, "after the JSON value", ReasonInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v PodCreateRequests
			err := DecodeJSON(strings.NewReader(tt.body), &v)
			if ReasonOf(err) != tt.reason || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v (%s), want %q (%s)", err, ReasonOf(err), tt.want, tt.reason)
			}
		})
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/create", strings.NewReader(`{"pod":{"metadata":{"name":"`+strings.Repeat("a", 100)+`"}}}`))
	var v PodCreateRequests
	if err := ReadJSON(rec, req, 32, &v); ReasonOf(err) != ReasonTooLarge {
		t.Errorf("oversized body: %v (%s)", err, ReasonOf(err))
	}
}

func TestValidateLogRequest(t *testing.T) {
	ok := LogRequest{Namespace: "default", PodUID: "5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d", PodName: "p", ContainerName: "main"}
	tests := []struct {
		name string
		mod  func(*LogRequest)
		want string
	}{
		{"valid", func(*LogRequest) {}, ""},
		{"namespace", func(l *LogRequest) { l.Namespace = "Bad_NS" }, "Namespace"},
		{"container", func(l *LogRequest) { l.ContainerName = "../etc" }, "ContainerName"},
		{"uid", func(l *LogRequest) { l.PodUID = "not-a-uuid" }, "PodUID"},
		{"tail and bytes", func(l *LogRequest) { l.Opts.Tail, l.Opts.LimitBytes = 1, 1 }, "Tail and Bytes"},
		{"since both", func(l *LogRequest) { l.Opts.SinceSeconds, l.Opts.SinceTime = 1, time.Now() }, "SinceSeconds and SinceTime"},
		{"negative", func(l *LogRequest) { l.Opts.Tail = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ok
			tt.mod(&l)
			err := ValidateLogRequest(&l)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if ReasonOf(err) != ReasonInvalid || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want Invalid mentioning %q", err, tt.want)
			}
		})
	}
}
