package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// decoders are every JSON body of the wire protocol, each with the check a
// server makes after decoding it.
var decoders = []struct {
	name  string
	check func(body []byte) error
}{
	{"PodCreateRequests", func(b []byte) error {
		var v PodCreateRequests
		if err := DecodeJSON(bytes.NewReader(b), &v); err != nil {
			return err
		}
		return ValidatePod(&v.Pod)
	}},
	{"RetrievedPodData", func(b []byte) error {
		var v RetrievedPodData
		if err := DecodeJSON(bytes.NewReader(b), &v); err != nil {
			return err
		}
		return ValidatePod(&v.Pod)
	}},
	{"Pod", func(b []byte) error {
		var v corev1.Pod
		if err := DecodeJSON(bytes.NewReader(b), &v); err != nil {
			return err
		}
		return ValidatePod(&v)
	}},
	{"[]PodStatus", func(b []byte) error { var v []PodStatus; return DecodeJSON(bytes.NewReader(b), &v) }},
	{"LogRequest", func(b []byte) error {
		var v LogRequest
		if err := DecodeJSON(bytes.NewReader(b), &v); err != nil {
			return err
		}
		return ValidateLogRequest(&v)
	}},
	{"ExecRequest", func(b []byte) error {
		var v ExecRequest
		if err := DecodeJSON(bytes.NewReader(b), &v); err != nil {
			return err
		}
		return ValidateExecRequest(&v)
	}},
	{"PingResponse", func(b []byte) error { var v PingResponse; return DecodeJSON(bytes.NewReader(b), &v) }},
	{"CreateResult", func(b []byte) error { var v CreateResult; return DecodeJSON(bytes.NewReader(b), &v) }},
}

// FuzzDecode feeds arbitrary bodies to every decoder and its validation: it
// must never panic, and every failure must be a client error (Invalid or
// TooLarge), never an internal one. Seeds are in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), []byte(`{"pod":{"metadata":{"name":"a","namespace":"b","uid":"c"},"spec":{"containers":[{"name":"m"}]}},"configmaps":[],"secrets":null}`))
	f.Add(uint8(3), []byte(`[{"name":"a","UID":"u","namespace":"n","JID":"1","containers":[{"name":"m","state":{"running":{}}}]}]`))
	f.Add(uint8(4), []byte(`{"Namespace":"a","PodUID":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d","PodName":"p","ContainerName":"m","Opts":{"Tail":1,"Bytes":2}}`))
	f.Add(uint8(5), []byte(`{"namespace":"a","podUID":"5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d","podName":"p","containerName":"m","command":[]}`))
	f.Add(uint8(6), []byte(`{"status":"ok","resources":{"cpu":"1","pods":"x"},"taints":[]}`))
	f.Add(uint8(1), []byte(strings.Repeat("[", 10000)))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		d := decoders[int(which)%len(decoders)]
		err := d.check(body)
		if err == nil {
			return
		}
		switch r := ReasonOf(err); r {
		case ReasonInvalid, ReasonTooLarge:
		default:
			t.Errorf("%s with %q: reason %q (%v), want Invalid", d.name, body, r, err)
		}
	})
}

// FuzzErrorFromReply reads arbitrary error replies: it must never panic,
// and the error must keep a reason and a message.
func FuzzErrorFromReply(f *testing.F) {
	f.Add(404, []byte(`{"error":"pod not found","reason":"NotFound"}`))
	f.Add(503, []byte("plain text from an original plugin\n"))
	f.Add(500, []byte(`{"error":`))
	f.Add(418, []byte(`{"reason":"Bogus"}`))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		err := ErrorFromReply(code, body)
		if err == nil {
			t.Fatalf("status %d with %q gave no error", code, body)
		}
		var e *Error
		if !errors.As(err, &e) || ReasonOf(err) == "" || err.Error() == "" {
			t.Errorf("status %d with %q: %#v", code, body, err)
		}
	})
}
