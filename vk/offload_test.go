package vk

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/seed-3f807049/interlink/functions/api"
)

func envOf(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

// TestKubernetesAPIEnv: with KubernetesApiAddr and KubernetesApiPort, every
// offloaded container and init container gets the Kubernetes service
// variables pointing there; the cluster's (added by the env resolution)
// are replaced, and a variable the container's spec sets wins.
func TestKubernetesAPIEnv(t *testing.T) {
	written := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init"}},
		Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "mine"}}},
			{Name: "b", Env: []corev1.EnvVar{{Name: "X", Value: "1"}}}}}}
	resolved := written.DeepCopy()
	resolved.Spec.Containers[1].Env = append(resolved.Spec.Containers[1].Env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "10.96.0.1"}, corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: "443"})
	d := newData(t)
	f := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	_ = f.Core().V1().Pods().Informer().GetStore().Add(written)
	d.pods = f.Core().V1().Pods().Lister()
	d.kubeAPIHost, d.kubeAPIPort = "k8s.example.org", "6443"
	req, err := d.request(context.Background(), resolved)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST": "k8s.example.org", "KUBERNETES_SERVICE_PORT": "6443", "KUBERNETES_SERVICE_PORT_HTTPS": "6443",
		"KUBERNETES_PORT": "tcp://k8s.example.org:6443", "KUBERNETES_PORT_443_TCP": "tcp://k8s.example.org:6443",
		"KUBERNETES_PORT_443_TCP_ADDR": "k8s.example.org", "KUBERNETES_PORT_443_TCP_PORT": "6443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
	}
	if diff := cmp.Diff(want, envOf(req.Pod.Spec.InitContainers[0])); diff != "" {
		t.Errorf("init container env (-want +got):\n%s", diff)
	}
	b := envOf(req.Pod.Spec.Containers[1])
	want["X"] = "1"
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("container b env (-want +got):\n%s", diff)
	}
	if n := len(req.Pod.Spec.Containers[1].Env); n != len(want) {
		t.Errorf("container b has %d env entries, want %d (no duplicates)", n, len(want))
	}
	if a := envOf(req.Pod.Spec.Containers[0]); a["KUBERNETES_SERVICE_HOST"] != "mine" || a["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("container a env %v", a)
	}
	if envOf(resolved.Spec.Containers[1])["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" {
		t.Error("the pod given was changed")
	}
	// Without both keys nothing is added.
	d.kubeAPIPort = ""
	req, _ = d.request(context.Background(), written)
	if _, ok := envOf(req.Pod.Spec.InitContainers[0])["KUBERNETES_SERVICE_HOST"]; ok {
		t.Error("variables added without KubernetesApiPort")
	}
}

// TestOriginalCreateRequest: KubernetesApiCaCrt, DisableProjectedVolumes
// and JobScriptBuilderURL shape the create request as in the original.
func TestOriginalCreateRequest(t *testing.T) {
	const ca = "-----BEGIN CERTIFICATE-----\nremote\n-----END CERTIFICATE-----\n"
	root := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "ns"}, Data: map[string]string{"ca.crt": "cluster"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}}}}}},
			{Name: "whole", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}}}}}},
			{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		Containers: []corev1.Container{{Name: "c", VolumeMounts: []corev1.VolumeMount{
			{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}, {Name: "info", MountPath: "/info"}, {Name: "scratch", MountPath: "/s"}}}}}}
	t.Run("KubernetesApiCaCrt", func(t *testing.T) {
		d := newData(t, root)
		d.kubeRootCA = ca
		req, err := d.request(context.Background(), pod)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range req.ProjectedVolumeMaps {
			if m.Name != "info" && m.Data["ca.crt"] != ca {
				t.Errorf("volume %s: ca.crt %q", m.Name, m.Data["ca.crt"])
			}
		}
	})
	t.Run("DisableProjectedVolumes", func(t *testing.T) {
		d := newData(t, root)
		d.noProjected = true
		req, err := d.request(context.Background(), pod)
		if err != nil {
			t.Fatal(err)
		}
		if len(req.ProjectedVolumeMaps) != 0 || len(req.Pod.Spec.Volumes) != 1 || len(req.Pod.Spec.Containers[0].VolumeMounts) != 1 {
			t.Errorf("maps %d, volumes %+v, mounts %+v", len(req.ProjectedVolumeMaps), req.Pod.Spec.Volumes, req.Pod.Spec.Containers[0].VolumeMounts)
		}
		if len(pod.Spec.Volumes) != 4 {
			t.Error("the pod given was changed")
		}
	})
	t.Run("JobScriptBuilderURL", func(t *testing.T) {
		d := newData(t, root)
		d.jobScriptURL = "http://builder/build"
		req, err := d.request(context.Background(), pod)
		if err != nil || req.JobScriptURL != "http://builder/build" {
			t.Errorf("jobscriptURL %q %v", req.JobScriptURL, err)
		}
	})
}

// recordingIL records the pods sent to interLink.
type recordingIL struct {
	*fakeIL
	createdPods, statusPods, deletedPods []*corev1.Pod
}

func (r *recordingIL) Create(ctx context.Context, req *api.PodCreateRequests) (api.CreateResult, error) {
	r.createdPods = append(r.createdPods, req.Pod.DeepCopy())
	return r.fakeIL.Create(ctx, req)
}

func (r *recordingIL) Status(ctx context.Context, pods []*corev1.Pod) ([]api.PodStatus, error) {
	r.statusPods = append(r.statusPods, pods...)
	return r.fakeIL.Status(ctx, pods)
}

func (r *recordingIL) StatusEach(ctx context.Context, pods []*corev1.Pod, fn func(json.RawMessage) error) error {
	r.statusPods = append(r.statusPods, pods...)
	return r.fakeIL.StatusEach(ctx, pods, fn)
}

func (r *recordingIL) Delete(ctx context.Context, pod *corev1.Pod) error {
	r.deletedPods = append(r.deletedPods, pod)
	return r.fakeIL.Delete(ctx, pod)
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestDisableOffloadAnnotations: the containers the annotations name are
// left out of the pods sent to /create, /status and /delete; they wait
// with reason NotOffloaded, and the phase follows the others.
func TestDisableOffloadAnnotations(t *testing.T) {
	il := &recordingIL{fakeIL: &fakeIL{statuses: map[string]api.PodStatus{}}}
	p, pushed := testProvider(t, il.fakeIL)
	p.il = il
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", UID: "u1", Annotations: map[string]string{
		AnnotationDisableOffloadContainers: " proxy , ,istio", AnnotationDisableOffloadInitContainers: "setup"}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: "setup"}, {Name: "fetch"}},
			Containers:     []corev1.Container{{Name: "proxy"}, {Name: "main"}, {Name: "istio"}}}}
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if len(il.createdPods) != 1 {
		t.Fatalf("created %d pods", len(il.createdPods))
	}
	sent := il.createdPods[0]
	if diff := cmp.Diff([]string{"main"}, containerNames(sent.Spec.Containers)); diff != "" {
		t.Errorf("containers sent to /create (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"fetch"}, containerNames(sent.Spec.InitContainers)); diff != "" {
		t.Errorf("init containers sent to /create (-want +got):\n%s", diff)
	}
	if len(pod.Spec.Containers) != 3 {
		t.Error("the pod given was changed")
	}
	check := func(phase corev1.PodPhase, ready corev1.ConditionStatus) {
		t.Helper()
		got := (*pushed)[len(*pushed)-1]
		if got.Status.Phase != phase || got.Status.Conditions[3].Status != ready {
			t.Errorf("phase %s ready %s, want %s %s", got.Status.Phase, got.Status.Conditions[3].Status, phase, ready)
		}
		for _, cs := range append(slices.Clone(got.Status.InitContainerStatuses), got.Status.ContainerStatuses...) {
			kept := cs.Name == "setup" || cs.Name == "proxy" || cs.Name == "istio"
			isNot := cs.State.Waiting != nil && cs.State.Waiting.Reason == ReasonNotOffloaded
			if kept != isNot {
				t.Errorf("container %s: %+v", cs.Name, cs.State)
			}
			if isNot && !strings.Contains(cs.State.Waiting.Message, "annotation interlink.eu/disable-offload") {
				t.Errorf("container %s: message %q", cs.Name, cs.State.Waiting.Message)
			}
		}
	}
	il.statuses["u1"] = api.PodStatus{PodUID: "u1", JobID: "job-u1",
		InitContainers: []corev1.ContainerStatus{{Name: "fetch", State: exited(0)}},
		Containers:     []corev1.ContainerStatus{{Name: "main", State: running()}}}
	p.syncStatus(ctx)
	// Running, never Ready: containers of it never run.
	check(corev1.PodRunning, corev1.ConditionFalse)
	if len(il.statusPods) != 1 || !slices.Equal(containerNames(il.statusPods[0].Spec.Containers), []string{"main"}) {
		t.Errorf("pods sent to /status: %+v", il.statusPods)
	}
	il.statuses["u1"] = api.PodStatus{PodUID: "u1", JobID: "job-u1",
		InitContainers: []corev1.ContainerStatus{{Name: "fetch", State: exited(0)}},
		Containers:     []corev1.ContainerStatus{{Name: "main", State: exited(0)}}}
	p.syncStatus(ctx)
	check(corev1.PodSucceeded, corev1.ConditionFalse)
	if err := p.DeletePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if len(il.deletedPods) != 1 || !slices.Equal(containerNames(il.deletedPods[0].Spec.Containers), []string{"main"}) {
		t.Errorf("pods sent to /delete: %+v", il.deletedPods)
	}
}

// TestEveryContainerNotOffloaded: a pod with no container left to send
// fails with a reason, and is never sent.
func TestEveryContainerNotOffloaded(t *testing.T) {
	il := &fakeIL{}
	p, pushed := testProvider(t, il)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", UID: "u1",
		Annotations: map[string]string{AnnotationDisableOffloadContainers: "a,b"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
	if err := p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if len(il.created) != 0 || len(*pushed) != 1 {
		t.Fatalf("created %v, pushed %d", il.created, len(*pushed))
	}
	st := (*pushed)[0].Status
	if st.Phase != corev1.PodFailed || st.Reason != ReasonNothingToOffload || !strings.Contains(st.Message, AnnotationDisableOffloadContainers) {
		t.Errorf("status %s %s %q", st.Phase, st.Reason, st.Message)
	}
	if err := p.DeletePod(context.Background(), pod); err != nil || len(il.deleted) != 0 {
		t.Errorf("a pod never sent was deleted remotely: %v %v", il.deleted, err)
	}
}

// TestPodIPAnnotations: interlink.eu/pod-ip is the pod's IP;
// interlink.eu/pod-vpn (an address from PodCIDR) fails the pod with a
// reason; the tunnel and mesh annotations change nothing.
func TestPodIPAnnotations(t *testing.T) {
	_, podNet, _ := net.ParseCIDR("10.7.0.0/16")
	for ip, ok := range map[string]bool{"10.7.0.9": true, "10.8.0.9": false, "127.0.0.1": false, "169.254.169.254": false,
		"10.7.0.0": false, "0.0.0.0": false, "x": false} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationPodIP: ip}}}
		got, err := annotatedPodIP(pod, podNet)
		if (err == nil) != ok || ok && got != ip {
			t.Errorf("pod-ip %s: %q %v, want accepted %v", ip, got, err, ok)
		}
		if _, err := annotatedPodIP(pod, nil); err == nil {
			t.Errorf("pod-ip %s accepted on a node without PodCIDR.Subnet", ip)
		}
	}
	il := &fakeIL{statuses: map[string]api.PodStatus{}}
	p, pushed := testProvider(t, il)
	p.podNet = podNet
	ipPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ip", Namespace: "ns", UID: "u0", Annotations: map[string]string{AnnotationPodIP: "10.7.0.9"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	if err := p.CreatePod(context.Background(), ipPod); err != nil {
		t.Fatal(err)
	}
	il.statuses["u0"] = api.PodStatus{PodUID: "u0", PodIP: "10.0.0.1", Containers: []corev1.ContainerStatus{{Name: "a", State: running()}}}
	p.syncStatus(context.Background())
	if got, _ := p.GetPod(context.Background(), "ns", "ip"); got == nil || got.Status.PodIP != "10.7.0.9" {
		t.Errorf("pod IP %+v, want the annotation's 10.7.0.9", got)
	}
	spoof := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "spoof", Namespace: "ns", UID: "u9", Annotations: map[string]string{AnnotationPodIP: "10.96.0.1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	n := len(*pushed)
	if err := p.CreatePod(context.Background(), spoof); err != nil {
		t.Fatal(err)
	}
	if len(*pushed) != n+1 || (*pushed)[n].Status.Reason != ReasonPodIPNotAllowed {
		t.Errorf("a pod claiming 10.96.0.1: pushed %+v, want it failed with %s", (*pushed)[n:], ReasonPodIPNotAllowed)
	}
	*pushed, il.created = nil, nil
	vpn := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "v", Namespace: "ns", UID: "u1", Annotations: map[string]string{AnnotationPodVPN: ""}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	if err := p.CreatePod(context.Background(), vpn); err != nil {
		t.Fatal(err)
	}
	if len(il.created) != 0 || len(*pushed) != 1 || (*pushed)[0].Status.Reason != ReasonPodVPNNotSupported {
		t.Errorf("pod-vpn: created %v, pushed %+v", il.created, *pushed)
	}
	tunnel := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns", UID: "u2", Annotations: map[string]string{
		"interlink.eu/shadow-same-ns": "true", "interlink.eu/wstunnel-extra-ports": "8080", "interlink.eu/mesh-network": "disabled",
		"interlink.virtual-kubelet.io/wstunnel-timeout": "1m"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	if err := p.CreatePod(context.Background(), tunnel); err != nil || len(il.created) != 1 {
		t.Errorf("a pod with tunnel annotations was not sent: %v %v", il.created, err)
	}
}

// TestPprofServer: Pprof.Enabled serves Go's profiles on its address.
func TestPprofServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- servePprof(ctx, addr, slog.New(slog.DiscardHandler)) }()
	var body []byte
	for range 50 {
		res, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
		if err == nil {
			body, _ = io.ReadAll(res.Body)
			_ = res.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(body) == 0 {
		t.Error("no profile served")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
