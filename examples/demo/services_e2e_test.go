//go:build e2e

package demo

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// servicesManagedBy is vk/services.ManagedBy, as a user sees it.
const servicesManagedBy = "interlink-vk.interlink.io"

// services applies examples/pods/web-service.yaml (a Deployment of
// offloaded web servers behind a Service) with replicas pods, and checks
// what the issue asks: each EndpointSlice address and port, dialed from
// this machine, answers with the pod's page; no other endpoint is
// published for the pods; an unready pod's endpoint is not ready.
func (s *stack) services(t *testing.T, replicas int) {
	src, err := os.ReadFile(filepath.Join(repoDir, "examples/pods/web-service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "replicas: 2\n") {
		t.Fatal("examples/pods/web-service.yaml no longer says replicas: 2")
	}
	f := filepath.Join(t.TempDir(), "web-service.yaml")
	if err := os.WriteFile(f, []byte(strings.Replace(string(src), "replicas: 2\n", fmt.Sprintf("replicas: %d\n", replicas), 1)), 0o600); err != nil { //nolint:gosec // a file of the test's own temporary directory
		t.Fatal(err)
	}
	s.mustKubectl(t, "apply", "-f", f)
	defer func() { _, _ = s.kubectlRun(t, "delete", "-f", f, "--wait=true", "--timeout=90s") }()
	s.mustKubectl(t, "rollout", "status", "deployment/web-svc", "--timeout=180s")

	var eps []endpoint
	eventually(t, fmt.Sprintf("%d ready endpoints of web-svc", replicas), 60*time.Second, func() error {
		var err error
		eps, err = s.serviceEndpoints(t, "web-svc")
		if err != nil {
			return err
		}
		ready := 0
		for _, e := range eps {
			if e.ready {
				ready++
			}
		}
		if ready != replicas || len(eps) != replicas {
			return fmt.Errorf("%d endpoints, %d ready: %+v", len(eps), ready, eps)
		}
		return nil
	})
	t.Logf("$ kubectl get endpointslices -l kubernetes.io/service-name=web-svc\n%s",
		s.mustKubectl(t, "get", "endpointslices", "-l", "kubernetes.io/service-name=web-svc"))
	before := s.vkMetric(t, "interlink_vk_stream_bytes_total", "kind", "service")
	pages := map[string]bool{}
	for _, e := range eps {
		url := "http://" + net.JoinHostPort(e.address, strconv.Itoa(int(e.port))) + "/"
		body, err := get(url)
		if err != nil || !strings.HasPrefix(body, "served by") {
			t.Fatalf("GET %s (the endpoint of pod %s): %q %v, want the pod's page", url, e.pod, body, err)
		}
		t.Logf("$ curl %s\n%s", url, body)
		pages[e.pod] = true
	}
	if len(pages) != replicas {
		t.Errorf("pages from %d pods, want %d", len(pages), replicas)
	}
	if after := s.vkMetric(t, "interlink_vk_stream_bytes_total", "kind", "service"); after <= before {
		t.Errorf("interlink_vk_stream_bytes_total{kind=service} %v, was %v: the connections were not counted", after, before)
	}

	// Unready: the pod's readiness probe fails once healthz is gone.
	unready := eps[0].pod
	s.mustKubectl(t, "exec", unready, "--", "rm", "/tmp/www/healthz")
	eventually(t, "pod "+unready+"'s endpoint not ready", 60*time.Second, func() error {
		eps, err := s.serviceEndpoints(t, "web-svc")
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.pod == unready {
				if e.ready {
					return fmt.Errorf("still ready: %+v", e)
				}
				return nil
			}
		}
		return fmt.Errorf("no endpoint for %s: %+v", unready, eps)
	})
}

// endpoint is one endpoint of a Service, as the slices say.
type endpoint struct {
	pod, address string
	port         int32
	ready        bool
}

// serviceEndpoints reads the Service's slices: every one must be the
// node's (an exposed pod publishes no address the cluster cannot reach).
func (s *stack) serviceEndpoints(t *testing.T, svc string) ([]endpoint, error) {
	t.Helper()
	var l discoveryv1.EndpointSliceList
	s.getJSON(t, &l, "get", "endpointslices", "-l", "kubernetes.io/service-name="+svc)
	var out []endpoint
	for _, sl := range l.Items {
		for _, e := range sl.Endpoints {
			if sl.Labels[discoveryv1.LabelManagedBy] != servicesManagedBy {
				return nil, fmt.Errorf("slice %s (managed by %s) has endpoint %v: only the node's forwarders should be endpoints", sl.Name, sl.Labels[discoveryv1.LabelManagedBy], e.Addresses)
			}
			if len(sl.Ports) != 1 || sl.Ports[0].Port == nil || e.TargetRef == nil || len(e.Addresses) != 1 {
				return nil, fmt.Errorf("slice %s: ports %+v, endpoint %+v", sl.Name, sl.Ports, e)
			}
			out = append(out, endpoint{pod: e.TargetRef.Name, address: e.Addresses[0], port: *sl.Ports[0].Port,
				ready: e.Conditions.Ready != nil && *e.Conditions.Ready})
		}
	}
	return out, nil
}

// get is one bounded HTTP GET: the body, or an error.
func get(url string) (string, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url) //nolint:noctx // bounded by the client's timeout
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s", resp.Status)
	}
	return string(b), err
}

// vkMetric sums the VK's samples of a metric family whose label has value.
func (s *stack) vkMetric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	f, ok := s.vkMetrics(t)[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				sum += valueOf(m)
			}
		}
	}
	return sum
}

func valueOf(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}
