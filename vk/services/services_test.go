package services

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// echoForwarder answers every connection with where it was carried to.
type echoForwarder struct{}

func (echoForwarder) Forward(_ context.Context, ns, pod string, port int32, conn io.ReadWriteCloser) error {
	_, err := fmt.Fprintf(conn, "%s/%s:%d\n", ns, pod, port)
	return err
}

func exposedPod(name string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", UID: types.UID("uid-" + name),
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{AnnotationExpose: "true"}},
		Spec: corev1.PodSpec{NodeName: "vk", Containers: []corev1.Container{{Name: "web",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9090}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func webService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "metrics", Port: 9090},                                  // targetPort unset: 9090
			{Name: "absent", Port: 81, TargetPort: intstr.FromInt32(7777)}, // not declared: left out
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},          // not TCP: left out
		}},
	}
}

type harness struct {
	cs  *fake.Clientset
	c   *Controller
	reg *prometheus.Registry
}

func start(t *testing.T, objs ...any) *harness {
	t.Helper()
	cs := fake.NewClientset()
	ctx := t.Context()
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Pod:
			if _, err := cs.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case *corev1.Service:
			if _, err := cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case *discoveryv1.EndpointSlice:
			if _, err := cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	pods, svcs := f.Core().V1().Pods().Informer(), f.Core().V1().Services().Informer()
	reg := prometheus.NewRegistry()
	c, err := New(Config{NodeName: "vk", Address: "127.0.0.1", Client: cs, Pods: pods, Services: svcs, Forwarder: echoForwarder{}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return &harness{cs: cs, c: c, reg: reg}
}

// slices waits until the namespace's slices satisfy ok.
func (h *harness) slices(t *testing.T, what string, ok func([]discoveryv1.EndpointSlice) bool) []discoveryv1.EndpointSlice {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := h.cs.DiscoveryV1().EndpointSlices("team").List(t.Context(), metav1.ListOptions{})
		if err == nil && ok(l.Items) {
			return l.Items
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: slices %+v %v", what, l, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string, port int32) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestSliceReachesThePod(t *testing.T) {
	quiet := exposedPod("quiet", true)
	quiet.Annotations = nil // not exposed: no endpoint
	h := start(t, exposedPod("web-1", true), exposedPod("web-2", false), quiet, webService())
	got := h.slices(t, "two slices", func(s []discoveryv1.EndpointSlice) bool { return len(s) == 2 })
	byPod := map[string]discoveryv1.EndpointSlice{}
	for _, s := range got {
		if s.Labels[discoveryv1.LabelServiceName] != "web" || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy || s.Labels[LabelNode] != "vk" {
			t.Errorf("labels %v", s.Labels)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-uid" {
			t.Errorf("owner %v", s.OwnerReferences)
		}
		if len(s.Endpoints) != 1 || s.Endpoints[0].TargetRef == nil {
			t.Fatalf("endpoints %+v", s.Endpoints)
		}
		byPod[s.Endpoints[0].TargetRef.Name] = s
	}
	for pod, ready := range map[string]bool{"web-1": true, "web-2": false} {
		s, ok := byPod[pod]
		if !ok {
			t.Fatalf("no slice for %s", pod)
		}
		ep := s.Endpoints[0]
		if *ep.Conditions.Ready != ready || *ep.Conditions.Serving != ready || *ep.Conditions.Terminating || ep.Addresses[0] != "127.0.0.1" || *ep.NodeName != "vk" {
			t.Errorf("%s: endpoint %+v, want ready=%v", pod, ep, ready)
		}
		if len(s.Ports) != 2 {
			t.Fatalf("%s: ports %+v, want http and metrics", pod, s.Ports)
		}
		for _, p := range s.Ports {
			want := map[string]int32{"http": 8080, "metrics": 9090}[*p.Name]
			if got := dial(t, "127.0.0.1", *p.Port); got != fmt.Sprintf("team/%s:%d\n", pod, want) {
				t.Errorf("%s port %s: %q", pod, *p.Name, got)
			}
		}
	}
	if n := testutil.ToFloat64(h.c.m.listeners); n != 4 {
		t.Errorf("forwarders %v, want 4 (2 TCP ports of 2 pods)", n)
	}

	// Readiness follows the pod; a pod gone takes its slice and forwarders.
	p2 := exposedPod("web-2", true)
	if _, err := h.cs.CoreV1().Pods("team").UpdateStatus(t.Context(), p2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.slices(t, "web-2 ready", func(s []discoveryv1.EndpointSlice) bool {
		for _, x := range s {
			if x.Endpoints[0].TargetRef.Name == "web-2" {
				return *x.Endpoints[0].Conditions.Ready
			}
		}
		return false
	})
	old := byPod["web-1"].Ports[0].Port
	if err := h.cs.CoreV1().Pods("team").Delete(t.Context(), "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.slices(t, "web-1's slice deleted", func(s []discoveryv1.EndpointSlice) bool { return len(s) == 1 })
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(*old))), time.Second); err == nil {
		_ = c.Close()
		t.Errorf("web-1's forwarder still listens")
	}
	// The Service gone: no slice.
	if err := h.cs.CoreV1().Services("team").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.slices(t, "no slice", func(s []discoveryv1.EndpointSlice) bool { return len(s) == 0 })
}

// TestSliceRepaired: a slice the node no longer wants (left from before a
// restart) goes, one deleted by someone else comes back, and another
// node's slice is never touched, even when the watch delivers it (the fake
// API server's watch ignores the informer's label selector).
func TestSliceRepaired(t *testing.T) {
	stale := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-il-stale", Namespace: "team",
		Labels: map[string]string{discoveryv1.LabelManagedBy: ManagedBy, LabelNode: "vk", discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4}
	other := stale.DeepCopy()
	other.Name, other.Labels[LabelNode] = "web-il-other-node", "vk2"
	h := start(t, exposedPod("web-1", true), webService(), stale)
	names := func(s []discoveryv1.EndpointSlice) map[string]bool {
		n := map[string]bool{}
		for _, x := range s {
			n[x.Name] = true
		}
		return n
	}
	got := h.slices(t, "the pod's slice, the stale one gone", func(s []discoveryv1.EndpointSlice) bool {
		return len(s) == 1 && !names(s)["web-il-stale"]
	})
	mine := got[0].Name
	// The other node's slice arrives by watch, after the first sync.
	if _, err := h.cs.DiscoveryV1().EndpointSlices("team").Create(t.Context(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.cs.DiscoveryV1().EndpointSlices("team").Delete(t.Context(), mine, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.slices(t, "recreated", func(s []discoveryv1.EndpointSlice) bool { return names(s)[mine] })
	// Both events were synced (the recreate proves the delete's was, the
	// create came first); the other node's slice is still there.
	time.Sleep(100 * time.Millisecond)
	l, err := h.cs.DiscoveryV1().EndpointSlices("team").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(l.Items); len(l.Items) != 2 || !n["web-il-other-node"] || !n[mine] {
		t.Fatalf("slices %v, want %s and web-il-other-node", n, mine)
	}
}

func TestExposed(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "1": true, "false": false, "": false, "yes please": false} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationExpose: v}}}
		if Exposed(p) != want {
			t.Errorf("%q: %v", v, !want)
		}
	}
}

// TestPortsPerPodCapped: a pod declaring many ports gets MaxPortsPerPod
// forwarders, no more.
func TestPortsPerPodCapped(t *testing.T) {
	p := exposedPod("many", true)
	p.Spec.Containers[0].Ports = nil
	for i := range 100 {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: int32(20000 + i)})
	}
	h := start(t, p, webService())
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(h.c.m.listeners) != MaxPortsPerPod {
		if time.Now().After(deadline) {
			t.Fatalf("forwarders %v, want %d", testutil.ToFloat64(h.c.m.listeners), MaxPortsPerPod)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := testutil.ToFloat64(h.c.m.listeners); n != MaxPortsPerPod {
		t.Fatalf("forwarders %v, want %d", n, MaxPortsPerPod)
	}
}
