package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoute(t *testing.T) {
	var logged []error
	onErr := func(_ *http.Request, err error) { logged = append(logged, err) }
	ran := 0
	h := Route("/create", func(w http.ResponseWriter, r *http.Request) error {
		ran++
		switch r.Header.Get("X-Fail") {
		case "invalid":
			return Invalid("bad pod")
		case "plain":
			return errors.New("boom")
		}
		_, err := w.Write([]byte("done"))
		return err
	}, onErr, http.MethodPost, http.MethodPut)

	tests := []struct {
		name, method, fail string
		versioned          bool
		code               int
		allow, body        string
		ran                bool
		logged             bool
	}{
		{"allowed", http.MethodPost, "", false, 200, "", "done", true, false},
		{"second method", http.MethodPut, "", false, 200, "", "done", true, false},
		{"wrong method", http.MethodGet, "", false, 405, "POST, PUT", "method GET not allowed on /create\n", false, false},
		{"wrong method, typed", http.MethodDelete, "", true, 405, "POST, PUT",
			`{"error":"method DELETE not allowed on /create","reason":"MethodNotAllowed"}` + "\n", false, false},
		{"fn fails", http.MethodPost, "invalid", false, 400, "", "bad pod\n", true, true},
		{"fn fails, untyped", http.MethodPost, "plain", true, 500, "", `{"error":"boom","reason":"Internal"}` + "\n", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran, logged = 0, nil
			req := httptest.NewRequest(tt.method, "/create", nil)
			req.Header.Set("X-Fail", tt.fail)
			if tt.versioned {
				req.Header.Set(HeaderAPIVersion, APIVersion)
			}
			rec := httptest.NewRecorder()
			h(rec, req)
			if rec.Code != tt.code || rec.Body.String() != tt.body || rec.Header().Get("Allow") != tt.allow {
				t.Errorf("got %d %q Allow=%q, want %d %q Allow=%q", rec.Code, rec.Body, rec.Header().Get("Allow"), tt.code, tt.body, tt.allow)
			}
			if (ran == 1) != tt.ran {
				t.Errorf("fn ran %d times, want ran=%v", ran, tt.ran)
			}
			if (len(logged) == 1) != tt.logged {
				t.Errorf("onErr saw %v, want logged=%v", logged, tt.logged)
			}
		})
	}

	// A nil onErr still writes the error.
	rec := httptest.NewRecorder()
	Route("/x", func(http.ResponseWriter, *http.Request) error { return NotFound("no pod") }, nil, http.MethodGet)(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != 404 || rec.Body.String() != "no pod\n" {
		t.Errorf("nil onErr: %d %q", rec.Code, rec.Body)
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := WriteJSON(rec, CreateResult{PodUID: "u", PodJID: "j"}); err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got CreateResult
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got != (CreateResult{PodUID: "u", PodJID: "j"}) {
		t.Errorf("body %q: %+v (%v)", rec.Body, got, err)
	}
}

const testUID = "5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d"

func TestReadPod(t *testing.T) {
	tests := []struct {
		name, body string
		reason     Reason
		want       string // part of the error, or the pod's name when valid
	}{
		{"valid", `{"metadata":{"name":"p","namespace":"default","uid":"` + testUID + `"}}`, "", "p"},
		{"no UID", `{"metadata":{"name":"p","namespace":"default"}}`, ReasonInvalid, "invalid pod default/p: metadata.uid is empty"},
		{"bad names", `{"metadata":{"name":"P_","namespace":"-","uid":"u"}}`, ReasonInvalid, `metadata.name "P_"`},
		{"not a pod", `[]`, ReasonInvalid, "POST /delete: field"},
		{"empty", ``, ReasonInvalid, "POST /delete: request body is empty, want JSON"},
		{"too large", `{"metadata":{"name":"` + strings.Repeat("a", 200) + `"}}`, ReasonTooLarge, "larger than 128 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/delete", strings.NewReader(tt.body))
			pod, err := ReadPod(httptest.NewRecorder(), req, 128)
			if tt.reason == "" {
				if err != nil || pod == nil || pod.Name != tt.want || pod.UID != testUID {
					t.Fatalf("got %+v, %v", pod, err)
				}
				return
			}
			if pod != nil || ReasonOf(err) != tt.reason || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, %v (%s), want %s containing %q", pod, err, ReasonOf(err), tt.reason, tt.want)
			}
		})
	}
	// A request without a body at all (as a server never gives, but a
	// handler called directly may) is Invalid too.
	req := httptest.NewRequest(http.MethodPost, "/delete", nil)
	req.Body = nil
	if _, err := ReadPod(httptest.NewRecorder(), req, 128); ReasonOf(err) != ReasonInvalid {
		t.Errorf("nil body: %v", err)
	}
}

func TestReadLogAndExecRequest(t *testing.T) {
	post := func(body string) *http.Request {
		return httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body))
	}
	l, err := ReadLogRequest(httptest.NewRecorder(), post(`{"Namespace":"default","PodUID":"`+testUID+`","PodName":"p","ContainerName":"main","Opts":{"Tail":3}}`), 1<<10)
	want := &LogRequest{Namespace: "default", PodUID: testUID, PodName: "p", ContainerName: "main", Opts: ContainerLogOpts{Tail: 3}}
	if err != nil || !cmp.Equal(l, want) {
		t.Errorf("log request: %v, diff (-got +want):\n%s", err, cmp.Diff(l, want))
	}
	// An invalid request is returned with its error, as decoded.
	l, err = ReadLogRequest(httptest.NewRecorder(), post(`{"Namespace":"default","PodUID":"123","PodName":"p","ContainerName":"main"}`), 1<<10)
	if ReasonOf(err) != ReasonInvalid || !strings.Contains(err.Error(), `PodUID "123" is not a UUID`) || l == nil || l.PodUID != "123" {
		t.Errorf("bad log request: %+v, %v", l, err)
	}
	if l, err = ReadLogRequest(httptest.NewRecorder(), post(`{`), 1<<10); l != nil || ReasonOf(err) != ReasonInvalid {
		t.Errorf("malformed log request: %+v, %v", l, err)
	}

	e, err := ReadExecRequest(httptest.NewRecorder(), post(`{"namespace":"default","podUID":"`+testUID+`","podName":"p","containerName":"main","command":["ls","-l"]}`), 1<<10)
	wantExec := &ExecRequest{Namespace: "default", PodUID: testUID, PodName: "p", ContainerName: "main", Command: []string{"ls", "-l"}}
	if err != nil || !cmp.Equal(e, wantExec) {
		t.Errorf("exec request: %v, diff (-got +want):\n%s", err, cmp.Diff(e, wantExec))
	}
	if _, err = ReadExecRequest(httptest.NewRecorder(), post(`{"namespace":"default","podUID":"`+testUID+`","podName":"p","containerName":"main"}`), 1<<10); ReasonOf(err) != ReasonInvalid || !strings.Contains(err.Error(), "command is empty") {
		t.Errorf("exec without command: %v", err)
	}
	if _, err = ReadExecRequest(httptest.NewRecorder(), post(strings.Repeat(" ", 2<<10)+`{}`), 1<<10); ReasonOf(err) != ReasonTooLarge {
		t.Errorf("oversized exec request: %v", err)
	}
}
