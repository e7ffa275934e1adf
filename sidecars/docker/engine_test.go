package docker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// engine is a fake Docker Engine API: images it has (others are missing,
// their pulls fail with pullError), and one container that Docker cannot
// start (command not found) under a given restart policy.
type engine struct {
	images     map[string]bool
	inspectErr int // status of every image inspect, when set
	pullStatus int
	pullError  string
	policy     container.RestartPolicyMode

	mu       sync.Mutex
	inspects []string
	pulls    []string
	starts   atomic.Int32
}

const cannotRunMsg = `failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/no/such": stat /no/such: no such file or directory: unknown`

func (e *engine) serve(t *testing.T) *Sidecar {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		p := r.URL.Path
		switch {
		case p == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(p, "/containers/json"):
			_, _ = w.Write([]byte("[]"))
		case strings.Contains(p, "/images/") && strings.HasSuffix(p, "/json"):
			name := p[strings.Index(p, "/images/")+len("/images/") : len(p)-len("/json")]
			e.mu.Lock()
			e.inspects = append(e.inspects, name)
			e.mu.Unlock()
			switch {
			case e.inspectErr != 0:
				http.Error(w, `{"message":"daemon trouble"}`, e.inspectErr)
			case e.images[name]:
				_, _ = w.Write([]byte(`{"Id":"sha256:0123","Config":{}}`))
			default:
				http.Error(w, `{"message":"No such image: `+name+`"}`, http.StatusNotFound)
			}
		case strings.HasSuffix(p, "/images/create"):
			e.mu.Lock()
			e.pulls = append(e.pulls, r.URL.Query().Get("fromImage")+":"+r.URL.Query().Get("tag"))
			e.mu.Unlock()
			msg, _ := json.Marshal(map[string]string{"message": e.pullError})
			http.Error(w, string(msg), e.pullStatus)
		case strings.HasSuffix(p, "/start"):
			e.starts.Add(1)
			http.Error(w, `{"message":"`+strings.ReplaceAll(cannotRunMsg, `"`, `\"`)+`"}`, http.StatusBadRequest)
		case strings.HasSuffix(p, "/wait"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case strings.Contains(p, "/containers/") && strings.HasSuffix(p, "/json"):
			state := container.State{Status: container.StateCreated, StartedAt: "0001-01-01T00:00:00Z"}
			if e.starts.Load() > 0 {
				state.ExitCode, state.Error = 127, cannotRunMsg
			}
			_ = json.NewEncoder(w).Encode(container.InspectResponse{ID: "0123456789abcdef", State: &state,
				HostConfig: &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: e.policy}}})
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	d := onEngine(t, srv)
	return d
}

// TestMissingImage: an image that is neither on the Docker host nor
// pullable is ImageNotFound (the VK keeps the pod Pending, ErrImagePull,
// and retries), naming the image and the pull's error; a Docker Engine
// in trouble is Unavailable.
func TestMissingImage(t *testing.T) {
	const pullErr = `Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host`
	for _, tc := range []struct {
		name       string
		e          *engine
		image      string
		policy     corev1.PullPolicy
		reason     api.Reason
		want       []string
		wantPulls  int
		wantNoPull bool
	}{
		{name: "Present", e: &engine{images: map[string]bool{"busybox": true}}, image: "busybox", wantNoPull: true},
		{name: "PresentNever", e: &engine{images: map[string]bool{"docker.io/library/busybox:latest": true}}, image: "docker.io/library/busybox:latest",
			policy: corev1.PullNever, wantNoPull: true},
		{name: "MissingNotPullable", e: &engine{pullStatus: 500, pullError: pullErr}, image: "example.org/team/app:1",
			reason: api.ReasonImageNotFound, want: []string{`image "example.org/team/app:1" is not on the Docker host and could not be pulled`, "no such host"}, wantPulls: 1},
		{name: "MissingUnknownToTheRegistry", e: &engine{pullStatus: 404, pullError: "manifest for app:1 not found: manifest unknown"}, image: "app:1",
			reason: api.ReasonImageNotFound, want: []string{`image "app:1"`, "manifest unknown"}, wantPulls: 1},
		{name: "MissingNever", e: &engine{}, image: "app:1", policy: corev1.PullNever,
			reason: api.ReasonImageNotFound, want: []string{`image "app:1" is not on the Docker host and its pull policy is Never`}, wantNoPull: true},
		{name: "AlwaysNotPullable", e: &engine{images: map[string]bool{"busybox": true}, pullStatus: 401, pullError: "unauthorized"}, image: "busybox",
			policy: corev1.PullAlways, reason: api.ReasonImageNotFound, want: []string{`image "busybox" could not be pulled (imagePullPolicy Always)`, "unauthorized"}, wantPulls: 1},
		{name: "EngineInTrouble", e: &engine{inspectErr: 500}, image: "busybox",
			reason: api.ReasonUnavailable, want: []string{`inspect image "busybox"`, "daemon trouble"}, wantNoPull: true},
		{name: "BadReference", e: &engine{}, image: "BusyBox", reason: api.ReasonInvalid, want: []string{`image "BusyBox"`, "must be lowercase"}, wantNoPull: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.e.serve(t)
			err := d.pullImages(context.Background(), []spec{{image: tc.image, policy: tc.policy}}, nil)
			if api.ReasonOf(err) != tc.reason {
				t.Fatalf("%v (%q), want reason %q", err, api.ReasonOf(err), tc.reason)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v, want it to say %q", err, w)
				}
			}
			tc.e.mu.Lock()
			defer tc.e.mu.Unlock()
			if tc.wantNoPull && len(tc.e.pulls) > 0 || !tc.wantNoPull && len(tc.e.pulls) != tc.wantPulls {
				t.Errorf("pulls %v", tc.e.pulls)
			}
		})
	}
}

// TestCannotRun: a container Docker cannot start is started once under
// restartPolicy Never (its status then tells it), and retried with backoff,
// each retry counted, when its pod restarts it.
func TestCannotRun(t *testing.T) {
	app := container.Summary{ID: "0123456789abcdef", Labels: map[string]string{LabelContainer: "c0", LabelRole: roleApp}}
	t.Run("Never", func(t *testing.T) {
		e := &engine{}
		d := e.serve(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := d.startApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		ok, err := d.runInit(ctx, app)
		if err != nil || ok {
			t.Errorf("init container: %v %v, want it failed for good", ok, err)
		}
		if n := e.starts.Load(); n != 1 || d.retried(app.ID) != 0 {
			t.Errorf("%d starts, %d retries; want 1 start", n, d.retried(app.ID))
		}
	})
	for _, policy := range []container.RestartPolicyMode{container.RestartPolicyAlways, container.RestartPolicyOnFailure} {
		t.Run(string(policy), func(t *testing.T) {
			e := &engine{policy: policy}
			d := e.serve(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
			defer cancel()
			if err := d.startApp(ctx, app); err == nil {
				t.Fatal("startApp returned while its container cannot run")
			}
			// starts at 0 s, 1 s (backoff 1 s), then 3 s (2 s): 2 within 2.5 s
			if n := e.starts.Load(); n != 2 || d.retried(app.ID) != 1 {
				t.Errorf("%d starts, %d retries; want 2 starts, 1 retry", n, d.retried(app.ID))
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for i := range 9 {
		got = append(got, backoff(i))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Errorf("backoff %v, want %v seconds", got, want)
			break
		}
	}
}

// onEngine is a Docker sidecar (default config, its data in a temporary
// directory) on the fake Engine srv, closed when the test ends.
func onEngine(t *testing.T, srv *httptest.Server) *Sidecar {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DockerHost = "tcp://" + srv.Listener.Addr().String()
	cfg.DataRootFolder = t.TempDir()
	d, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}
