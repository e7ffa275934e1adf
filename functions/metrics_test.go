package functions

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	hpc, cloud := testPod("a", ""), testPod("b", "cloud")
	for _, p := range []corev1.Pod{hpc, cloud} {
		if code, body := do(t, http.MethodPost, e.url+api.PathCreate, api.PodCreateRequests{Pod: p}, true); code != 200 {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	do(t, http.MethodGet, e.url+api.PathStatus, []corev1.Pod{hpc, cloud}, true)
	do(t, http.MethodPost, e.url+api.PathPing, nil, true)
	do(t, http.MethodPost, e.url+api.PathCreate, `{"pod":`, true)
	e.hpcSrv.Close() // the hpc sidecar goes away
	do(t, http.MethodPost, e.url+api.PathPing, nil, true)

	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP interlink_sidecar_up 1 when the sidecar answered interLink's last ping, else 0.
# TYPE interlink_sidecar_up gauge
interlink_sidecar_up{sidecar="cloud"} 1
interlink_sidecar_up{sidecar="hpc"} 0
# HELP interlink_http_requests_total Requests to the interLink API by path, status code and sidecar (empty when none or several).
# TYPE interlink_http_requests_total counter
interlink_http_requests_total{code="200",path="/create",sidecar="cloud"} 1
interlink_http_requests_total{code="200",path="/create",sidecar="hpc"} 1
interlink_http_requests_total{code="400",path="/create",sidecar=""} 1
interlink_http_requests_total{code="200",path="/status",sidecar=""} 1
interlink_http_requests_total{code="200",path="/pinglink",sidecar=""} 2
`), "interlink_sidecar_up", "interlink_http_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(e.metrics.sidecarErrors.WithLabelValues("hpc", string(api.ReasonUnavailable))); n < 1 {
		t.Errorf("no sidecar error counted for hpc's failed ping")
	}
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}
