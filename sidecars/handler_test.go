package sidecars_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

// recorder is a Plugin that records the calls that reach it.
type recorder struct {
	calls []string
}

func (p *recorder) Create(_ context.Context, d *api.RetrievedPodData) (api.CreateResult, error) {
	p.calls = append(p.calls, "create "+d.Pod.Name)
	return api.CreateResult{PodUID: string(d.Pod.UID), PodJID: "j1"}, nil
}

func (p *recorder) Delete(_ context.Context, pod *corev1.Pod) error {
	p.calls = append(p.calls, "delete "+pod.Name)
	return nil
}

func (p *recorder) Status(_ context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	p.calls = append(p.calls, "status")
	return nil, nil
}

func (p *recorder) Logs(_ context.Context, req *api.LogRequest) (io.ReadCloser, error) {
	p.calls = append(p.calls, "logs "+req.PodName)
	return io.NopCloser(strings.NewReader("line\n")), nil
}

const uid = "5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d"

// TestHandlerRequests pins the replies of the sidecar side of the protocol:
// what reaches the plugin, and the status and message of what does not.
func TestHandlerRequests(t *testing.T) {
	pod := `{"metadata":{"name":"p","namespace":"default","uid":"` + uid + `"},"spec":{"containers":[{"name":"main"}]}}`
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string // the whole body
		allow                    string
		call                     string // "" when the plugin must not be called
	}{
		{"create", http.MethodPost, api.PathCreate, `{"pod":` + pod + `}`, 200, `{"PodUID":"` + uid + `","PodJID":"j1"}` + "\n", "", "create p"},
		{"create invalid pod", http.MethodPut, api.PathCreate, `{"pod":{"metadata":{"name":"p","namespace":"default"}}}`, 400,
			"invalid pod default/p: metadata.uid is empty\n", "", ""},
		{"create wrong method", http.MethodGet, api.PathCreate, `{}`, 405, "method GET not allowed on /create\n", "POST, PUT", ""},
		{"delete", http.MethodDelete, api.PathDelete, pod, 200, "pod default/p deleted\n", "", "delete p"},
		{"delete invalid pod", http.MethodPost, api.PathDelete, `{"metadata":{"name":"p","uid":"` + uid + `"}}`, 400,
			"invalid pod /p: metadata.namespace is empty\n", "", ""},
		{"delete truncated", http.MethodPost, api.PathDelete, `{"metadata":`, 400, "POST /delete: request body is truncated JSON\n", "", ""},
		{"delete too large", http.MethodPost, api.PathDelete, `{"metadata":{"name":"` + strings.Repeat("a", 1<<12) + `"}}`, 413,
			"POST /delete: request body larger than 1024 bytes\n", "", ""},
		{"delete wrong method", http.MethodPut, api.PathDelete, pod, 405, "method PUT not allowed on /delete\n", "POST, DELETE", ""},
		{"status", http.MethodGet, api.PathStatus, `[` + pod + `]`, 200, "[]\n", "", "status"},
		{"status is a ping when empty", http.MethodGet, api.PathStatus, `[]`, 200, `{"status":"ok"}` + "\n", "", ""},
		{"status without UIDs", http.MethodPost, api.PathStatus, `[` + pod + `,{"metadata":{"name":"q","namespace":"n"}},{}]`, 400,
			"invalid status request: pod 1 (n/q) has no metadata.uid; pod 2 (/) has no metadata.uid\n", "", ""},
		{"logs", http.MethodGet, api.PathLogs, `{"Namespace":"default","PodUID":"` + uid + `","PodName":"p","ContainerName":"main"}`, 200, "line\n", "", "logs p"},
		{"logs invalid", http.MethodPost, api.PathLogs, `{"Namespace":"default","PodUID":"` + uid + `","PodName":"p","ContainerName":"main","Opts":{"Tail":1,"Bytes":1}}`, 400,
			"invalid log request: Tail and Bytes are mutually exclusive\n", "", ""},
		{"exec not offered", http.MethodPost, api.PathExec, `{"namespace":"default","podUID":"` + uid + `","podName":"p","containerName":"main","command":["ls"]}`, 501,
			"this sidecar does not offer exec\n", "", ""},
		{"exec wrong method", http.MethodGet, api.PathExec, `{}`, 405, "method GET not allowed on /exec\n", "POST", ""},
		{"unknown path", http.MethodGet, "/nope", ``, 404, "no such path \"/nope\"\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &recorder{}
			h := sidecars.NewHandler(p, sidecars.HandlerConfig{MaxBodyBytes: 1 << 10, Logger: slog.New(slog.DiscardHandler)})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.code || rec.Body.String() != tt.want {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body, tt.code, tt.want)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if got := rec.Header().Get(api.HeaderAPIVersion); got != api.APIVersion {
				t.Errorf("%s %q, want %q", api.HeaderAPIVersion, got, api.APIVersion)
			}
			var want []string
			if tt.call != "" {
				want = []string{tt.call}
			}
			if strings.Join(p.calls, ",") != strings.Join(want, ",") {
				t.Errorf("plugin calls %q, want %q", p.calls, want)
			}
		})
	}
}

// TestHandlerTypedErrors: a peer that declared our API version gets typed
// JSON errors.
func TestHandlerTypedErrors(t *testing.T) {
	h := sidecars.NewHandler(&recorder{}, sidecars.HandlerConfig{})
	req := httptest.NewRequest(http.MethodPatch, api.PathStatus, nil)
	req.Header.Set(api.HeaderAPIVersion, api.APIVersion)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var st api.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 405 || st.Reason != api.ReasonMethodNotAllowed ||
		st.Message != "method PATCH not allowed on /status" {
		t.Errorf("got %d %q (%v)", rec.Code, rec.Body, err)
	}
}
