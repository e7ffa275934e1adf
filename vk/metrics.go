package vk

import (
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// vkMetrics are the virtual kubelet's own metrics, served on the kubelet
// API's /metrics (authenticated and authorized like the rest of it).
type vkMetrics struct {
	pollDuration prometheus.Histogram
	pollErrors   prometheus.Counter
	statuses     *prometheus.CounterVec
	resends      prometheus.Counter
	nodeReady    prometheus.Gauge
	// createToRunning is from the pod's creation in the API server to the
	// VK first seeing it Running.
	createToRunning prometheus.Histogram
	writeErrors     prometheus.Counter
	// apiRequests counts the VK's own requests to the API server.
	apiRequests *prometheus.CounterVec
	streams     *streamMetrics
}

// newAPIRequests makes the counter of the VK's API server requests; it is
// made before the Kubernetes client that feeds it.
func newAPIRequests() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_vk_apiserver_requests_total",
		Help: "Requests of the VK to the API server, by HTTP method and resource (pods, pods/status, nodes/status, leases, events, ...; watches included)."},
		[]string{"method", "resource"})
}

// newVKMetrics makes the VK's metrics and registers them on reg; the
// gauges that read the provider's pods are registered by
// registerPodMetrics once it is built.
func newVKMetrics(reg prometheus.Registerer, tokenFile string, apiRequests *prometheus.CounterVec) *vkMetrics {
	m := &vkMetrics{
		pollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "interlink_vk_status_poll_duration_seconds",
			Help: "Duration of one batched status call for all of the node's pods.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "interlink_vk_status_poll_errors_total",
			Help: "Batched status calls that failed (pods kept their last status)."}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_vk_statuses_total",
			Help: "Pod statuses read by the status polls, by how: decoded and applied, or unchanged (byte for byte the last one of the same pod, not decoded again)."}, []string{"how"}),
		resends: prometheus.NewCounter(prometheus.CounterOpts{Name: "interlink_vk_status_resends_total",
			Help: "Pod statuses the VK wrote itself because the API server still showed another state 60 s after the pod controller was handed it (a status write the pod controller dropped)."}),
		nodeReady: prometheus.NewGauge(prometheus.GaugeOpts{Name: "interlink_vk_node_ready",
			Help: "1 when interLink answers the node's pings, else 0."}),
		createToRunning: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "interlink_vk_create_to_running_seconds",
			Help:    "Time from a pod's creation to the VK seeing it Running.",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600}}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "interlink_vk_apiserver_write_errors_total",
			Help: "Writes of the VK to the API server that failed (node taints, lagging pod statuses; the pod controller's own status writes are retried by it)."}),
		apiRequests: apiRequests,
	}
	reg.MustRegister(m.pollDuration, m.pollErrors, m.statuses, m.resends, m.nodeReady, m.createToRunning, m.writeErrors, m.apiRequests)
	m.streams = newStreamMetrics(reg)
	if tokenFile != "" {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_vk_token_expiry_seconds",
			Help: "Seconds until the VK's bearer token (a JWT) expires; negative once expired, NaN when it is not a JWT."},
			func() float64 { return tokenExpiry(tokenFile, time.Now()) }))
	}
	return m
}

// registerPodMetrics registers on reg the gauges read from p: the
// staleness of its pods' status and how many pods it runs, by phase.
func registerPodMetrics(reg prometheus.Registerer, p *Provider) {
	staleness := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_vk_status_staleness_seconds",
		Help: "Seconds since the VK last read its pods' status from interLink."},
		func() float64 {
			last := p.lastPoll.Load()
			if last == 0 {
				return time.Since(p.started).Seconds()
			}
			return time.Since(time.Unix(0, last)).Seconds()
		})
	pods := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_vk_pods", Help: "Pods the virtual node runs (all phases)."},
		func() float64 { p.mu.Lock(); defer p.mu.Unlock(); return float64(len(p.pods)) })
	phases := []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed}
	byPhase := make([]prometheus.Collector, 0, len(phases))
	for _, ph := range phases {
		byPhase = append(byPhase, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "interlink_vk_pods_by_phase",
			Help: "Pods of the virtual node by phase.", ConstLabels: prometheus.Labels{"phase": string(ph)}},
			func() float64 { return float64(p.countPhase(ph)) }))
	}
	reg.MustRegister(staleness, pods)
	reg.MustRegister(byPhase...)
}

func (p *Provider) countPhase(ph corev1.PodPhase) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.pods {
		if t.pod.Status.Phase == ph {
			n++
		}
	}
	return n
}

// tokenExpiry reads the exp claim of the JWT in file (unverified: it is our
// own token, read only to warn before it expires).
func tokenExpiry(file string, now time.Time) float64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return nan()
	}
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}
	tok, err := jwt.ParseSigned(strings.TrimSpace(string(b)), algs)
	if err != nil {
		return nan()
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil || c.Expiry == nil {
		return nan()
	}
	return c.Expiry.Time().Sub(now).Seconds()
}

func nan() float64 { return math.NaN() }

// countingTransport counts each request to the API server by method and
// resource before passing it on.
type countingTransport struct {
	next  http.RoundTripper
	count func(method, resource string)
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.count(r.Method, apiResource(r.URL.Path))
	return c.next.RoundTrip(r)
}

// apiResource names the resource of an API path: /api/v1/namespaces/N/pods/P/status
// is pods/status, /apis/coordination.k8s.io/v1/namespaces/N/leases/L is
// leases. Names never become labels.
func apiResource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "other"
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "discovery"
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}
