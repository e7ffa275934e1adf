package vk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/seed-3f807049/interlink/functions/api"
)

var now = metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
}

func exited(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, StartedAt: now, FinishedAt: now}}
}

func TestPodStatusPhases(t *testing.T) {
	pod := func(policy corev1.RestartPolicy) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: policy,
			InitContainers: []corev1.Container{{Name: "init", Image: "i"}},
			Containers:     []corev1.Container{{Name: "a", Image: "a"}, {Name: "b", Image: "b"}}}}
	}
	cs := func(name string, s corev1.ContainerState) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: s}
	}
	backingOff := func(name string, code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, RestartCount: 1, LastTerminationState: exited(code),
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
	}
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		init   []corev1.ContainerStatus
		main   []corev1.ContainerStatus
		phase  corev1.PodPhase
		ready  corev1.ConditionStatus
	}{
		{"nothing reported", corev1.RestartPolicyNever, nil, nil, corev1.PodPending, corev1.ConditionFalse},
		{"init running", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("init", running())}, nil, corev1.PodPending, corev1.ConditionFalse},
		{"init failed", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("init", exited(2))}, nil, corev1.PodFailed, corev1.ConditionFalse},
		{"one running", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", running())}, corev1.PodRunning, corev1.ConditionFalse},
		{"all running", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", running()), cs("b", running())}, corev1.PodRunning, corev1.ConditionTrue},
		{"all succeeded", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", exited(0)), cs("b", exited(0))}, corev1.PodSucceeded, corev1.ConditionFalse},
		{"one failed, Never", corev1.RestartPolicyNever, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", exited(0)), cs("b", exited(3))}, corev1.PodFailed, corev1.ConditionFalse},
		// A backend waiting to restart a container says so (waiting, with its
		// last termination); one that reports every container ended, one
		// failed, restarts nothing more.
		{"one failed, OnFailure backs off", corev1.RestartPolicyOnFailure, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", exited(0)), backingOff("b", 3)}, corev1.PodRunning, corev1.ConditionFalse},
		{"one failed, OnFailure, not restarted", corev1.RestartPolicyOnFailure, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", exited(0)), cs("b", exited(3))}, corev1.PodFailed, corev1.ConditionFalse},
		{"deadline, Always", corev1.RestartPolicyAlways, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", exited(137)), backingOff("b", 0)}, corev1.PodRunning, corev1.ConditionFalse},
		{"all ended, Always restarts", corev1.RestartPolicyAlways, []corev1.ContainerStatus{cs("init", exited(0))}, []corev1.ContainerStatus{cs("a", exited(0)), cs("b", exited(0))}, corev1.PodRunning, corev1.ConditionFalse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := podStatus(pod(tt.policy), &api.PodStatus{JobID: "42", InitContainers: tt.init, Containers: tt.main}, "10.0.0.9", now)
			if st.Phase != tt.phase {
				t.Errorf("phase %s, want %s", st.Phase, tt.phase)
			}
			if st.Conditions[3].Type != corev1.PodReady || st.Conditions[3].Status != tt.ready {
				t.Errorf("ready %+v, want %s", st.Conditions[3], tt.ready)
			}
			if len(st.ContainerStatuses) != 2 || st.ContainerStatuses[0].Image != "a" || st.HostIP != "10.0.0.9" || st.StartTime == nil {
				t.Errorf("status %+v", st)
			}
			for _, c := range st.ContainerStatuses {
				if c.State.Running == nil && c.State.Terminated == nil && (c.State.Waiting == nil || c.State.Waiting.Reason != "ContainerCreating" && c.State.Waiting.Reason != "CrashLoopBackOff") {
					t.Errorf("unreported container %s: %+v", c.Name, c.State)
				}
			}
		})
	}
}

// TestPodStatusCrashLoop: a container waiting to start again after a run
// (CrashLoopBackOff) counts as stopped and not succeeded, as the kubelet
// counts it; its restart count and last state reach the pod.
func TestPodStatusCrashLoop(t *testing.T) {
	crashing := func(code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "a", RestartCount: 2, LastTerminationState: exited(code),
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container a"}}}
	}
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		init   bool
		code   int32
		phase  corev1.PodPhase
	}{
		{"OnFailure", corev1.RestartPolicyOnFailure, false, 1, corev1.PodRunning},
		{"Always after a failure", corev1.RestartPolicyAlways, false, 1, corev1.PodRunning},
		{"Always after a success", corev1.RestartPolicyAlways, false, 0, corev1.PodRunning},
		{"init container", corev1.RestartPolicyOnFailure, true, 1, corev1.PodPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: tt.policy, Containers: []corev1.Container{{Name: "a"}}}}
			st := &api.PodStatus{Containers: []corev1.ContainerStatus{crashing(tt.code)}}
			if tt.init {
				pod.Spec.InitContainers, pod.Spec.Containers = pod.Spec.Containers, []corev1.Container{{Name: "b"}}
				st = &api.PodStatus{InitContainers: st.Containers}
			}
			got := podStatus(pod, st, "", now)
			if got.Phase != tt.phase {
				t.Errorf("phase %s, want %s", got.Phase, tt.phase)
			}
			cs := append(got.InitContainerStatuses, got.ContainerStatuses...)[0]
			if cs.RestartCount != 2 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != tt.code ||
				cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || cs.Ready {
				t.Errorf("container status %+v", cs)
			}
		})
	}
}

func TestPodStatusKeepsTransitionTimes(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}
	first := podStatus(pod, &api.PodStatus{Containers: []corev1.ContainerStatus{{Name: "a", State: running()}}}, "", now)
	pod.Status = first
	later := metav1.NewTime(now.Add(time.Minute))
	second := podStatus(pod, &api.PodStatus{Containers: []corev1.ContainerStatus{{Name: "a", State: running()}}, PodIP: "10.1.1.1"}, "", later)
	if !second.Conditions[3].LastTransitionTime.Equal(&now) || second.PodIP != "10.1.1.1" {
		t.Errorf("second status %+v", second)
	}
}

// TestPodStatusProbes: readiness and started come from the sidecar's
// probes; a container is never ready before it has started, and a sidecar
// that reports no Started (an original plugin) starts what runs.
func TestPodStatusProbes(t *testing.T) {
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	for _, c := range []struct {
		name           string
		ctr            corev1.Container
		rep            corev1.ContainerStatus
		ready, started bool
	}{
		{"no probe, nothing said", corev1.Container{}, corev1.ContainerStatus{State: running()}, true, true},
		{"readiness not passed", corev1.Container{ReadinessProbe: probe}, corev1.ContainerStatus{State: running(), Started: ptr.To(true)}, false, true},
		{"readiness passed", corev1.Container{ReadinessProbe: probe}, corev1.ContainerStatus{State: running(), Ready: true, Started: ptr.To(true)}, true, true},
		{"startup not passed", corev1.Container{StartupProbe: probe}, corev1.ContainerStatus{State: running(), Started: ptr.To(false)}, false, false},
		{"ready but not started is not ready", corev1.Container{ReadinessProbe: probe, StartupProbe: probe}, corev1.ContainerStatus{State: running(), Ready: true, Started: ptr.To(false)}, false, false},
		{"exited", corev1.Container{}, corev1.ContainerStatus{State: exited(0), Ready: true, Started: ptr.To(true)}, false, false},
	} {
		c.ctr.Name, c.rep.Name = "a", "a"
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c.ctr}}}
		st := podStatus(pod, &api.PodStatus{Containers: []corev1.ContainerStatus{c.rep}}, "", now)
		cs := st.ContainerStatuses[0]
		if cs.Ready != c.ready || *cs.Started != c.started {
			t.Errorf("%s: ready %v started %v, want %v %v", c.name, cs.Ready, *cs.Started, c.ready, c.started)
		}
		if ready := st.Conditions[3].Status == corev1.ConditionTrue; ready != c.ready {
			t.Errorf("%s: pod Ready %v, want %v", c.name, ready, c.ready)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	cfg.NodeName = "Bad_Name"
	cfg.NodeAddress = "nowhere"
	cfg.NodeTaints = []string{"k=v:Sometimes"}
	cfg.Resources.CPU = "lots"
	cfg.KubeletCertFile = "/x.pem"
	err := cfg.Validate()
	for _, want := range []string{"NodeName", "NodeAddress", "NodeTaints", "resource cpu", "KubeletCertFile"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	for _, bad := range []string{"kube-system/extension-apiserver-authentication", "extension-apiserver-authentication:client-ca-file", "ns/Bad_Name:k", "/n:k"} {
		cfg = DefaultConfig()
		cfg.ClientCAConfigMap = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ClientCAConfigMap") {
			t.Errorf("ClientCAConfigMap %q: %v", bad, err)
		}
	}
	cfg = DefaultConfig()
	if ns, name, key, err := cfg.clientCAConfigMap(); err != nil || ns != "kube-system" || name != "extension-apiserver-authentication" || key != "client-ca-file" {
		t.Errorf("default ClientCAConfigMap: %q %q %q %v", ns, name, key, err)
	}
	cfg = DefaultConfig()
	cfg.InterlinkURL, cfg.InterlinkPort = "https://il.example.org", "443"
	if got := cfg.InterlinkEndpoint(); got != "https://il.example.org:443" {
		t.Errorf("endpoint %q", got)
	}
}

// TestServicesConfig: Services.Enabled needs an address the API server
// takes in an EndpointSlice: Services.Address, else NodeAddress.
func TestServicesConfig(t *testing.T) {
	for _, c := range []struct {
		node, addr, listen string
		want               string // "" valid, else in the error
	}{
		{node: "127.0.0.1", want: "NodeAddress (Services.Address is empty) 127.0.0.1 cannot be an endpoint"},
		{node: "127.0.0.1", addr: "10.0.0.5"},
		{node: "10.0.0.4"},
		{node: "10.0.0.4", addr: "::1", want: "Services.Address ::1 cannot be an endpoint"},
		{node: "10.0.0.4", addr: "169.254.1.1", want: "cannot be an endpoint"},
		{node: "10.0.0.4", addr: "vk.example.org", want: `Services.Address "vk.example.org" is not an IP address`},
		{node: "10.0.0.4", listen: "0.0.0.0"},
		{node: "10.0.0.4", listen: "any", want: `Services.ListenAddress "any"`},
	} {
		cfg := DefaultConfig()
		cfg.NodeAddress = c.node
		cfg.Services = ServicesConfig{Enabled: true, Address: c.addr, ListenAddress: c.listen}
		err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c, err, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.NodeAddress = "10.0.0.4"
	if got := cfg.ServiceAddress(); got != "10.0.0.4" {
		t.Errorf("ServiceAddress %q, want NodeAddress", got)
	}
}

func newData(t *testing.T, objs ...any) *dataSource {
	t.Helper()
	cs := fake.NewClientset()
	f := informers.NewSharedInformerFactory(cs, 0)
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			_ = f.Core().V1().ConfigMaps().Informer().GetStore().Add(o)
		case *corev1.Secret:
			_ = f.Core().V1().Secrets().Informer().GetStore().Add(o)
		}
	}
	return &dataSource{client: cs, configMaps: f.Core().V1().ConfigMaps().Lister(), secrets: f.Core().V1().Secrets().Lister(), wait: 300 * time.Millisecond}
}

func TestDataRequest(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns"}, Data: map[string]string{"a": "1", "b": "2"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"}, Data: map[string][]byte{"p": []byte("s3cret")}}
	d := newData(t, cm, sec)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{
			NodeName:   "vk",
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}}}},
			Volumes: []corev1.Volume{
				{Name: "v-cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				{Name: "v-opt", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent", Optional: ptr.To(true)}}},
				{Name: "v-proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "b", Path: "dir/b.txt"}}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
						{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
						{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
						{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.cpu"}},
					}}},
				}}}},
			},
		},
	}
	req, err := d.request(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.ConfigMaps) != 1 || len(req.Secrets) != 1 || len(req.ProjectedVolumeMaps) != 1 {
		t.Fatalf("request %+v", req)
	}
	want := map[string]string{"dir/b.txt": "2", "p": "s3cret", "name": "p", "labels": `app="x"`, "cpu": "2"}
	if diff := cmp.Diff(want, req.ProjectedVolumeMaps[0].Data); diff != "" {
		t.Errorf("projected files (-want +got):\n%s", diff)
	}

	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "v-missing", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "nope"}}})
	_, err = d.request(context.Background(), pod)
	var missing *errMissingData
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "secret nope") {
		t.Errorf("missing secret: %v", err)
	}
}

// fakeIL is an in-memory interLink for unit tests of the provider.
type fakeIL struct {
	createErr error
	// createGate, if set, blocks Create until it is closed.
	createGate chan struct{}
	deleted    []string
	created    []string
	statuses   map[string]api.PodStatus
	statusErr  error
	ping       api.PingResponse
	pingErr    error
}

func (f *fakeIL) Create(_ context.Context, r *api.PodCreateRequests) (api.CreateResult, error) {
	if f.createGate != nil {
		<-f.createGate
	}
	if f.createErr != nil {
		return api.CreateResult{}, f.createErr
	}
	f.created = append(f.created, string(r.Pod.UID))
	return api.CreateResult{PodUID: string(r.Pod.UID), PodJID: "job-" + string(r.Pod.UID)}, nil
}
func (f *fakeIL) Delete(_ context.Context, pod *corev1.Pod) error {
	f.deleted = append(f.deleted, string(pod.UID))
	return nil
}
func (f *fakeIL) Status(_ context.Context, pods []*corev1.Pod) ([]api.PodStatus, error) {
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	var out []api.PodStatus
	for _, p := range pods {
		if st, ok := f.statuses[string(p.UID)]; ok {
			out = append(out, st)
		}
	}
	return out, nil
}

// StatusEach streams Status's reply as the real client does: the VK takes
// this path in production.
func (f *fakeIL) StatusEach(ctx context.Context, pods []*corev1.Pod, fn func(json.RawMessage) error) error {
	sts, err := f.Status(ctx, pods)
	if err != nil {
		return err
	}
	for i := range sts {
		b, err := json.Marshal(sts[i])
		if err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeIL) Logs(context.Context, string, *api.LogRequest) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}
func (f *fakeIL) Ping(context.Context) (api.PingResponse, error) { return f.ping, f.pingErr }
func (f *fakeIL) Exec(context.Context, string, *api.ExecRequest, io.Writer) (int, error) {
	return 0, nil
}

func testProvider(t *testing.T, il *fakeIL) (*Provider, *[]*corev1.Pod) {
	t.Helper()
	cs := fake.NewClientset()
	m := newVKMetrics(prometheus.NewRegistry(), "", newAPIRequests())
	p := newProvider(providerConfig{il: il, client: cs, data: newData(t), nodeName: "vk", interval: time.Second, log: slog.New(slog.DiscardHandler)}, m)
	// Started at the zero time: the tests' containers run at fixed times
	// (around now), which must not predate this VK (usage.go counts the CPU
	// of runs older than the VK from their first sample only).
	p.started = time.Time{}
	var pushed []*corev1.Pod
	p.NotifyPods(context.Background(), func(pod *corev1.Pod) { pushed = append(pushed, pod) })
	return p, &pushed
}

// submitted is pod ns/a (uid u1, one container c), created in the API
// server and submitted through p.
func submitted(t *testing.T, p *Provider) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	if _, err := p.client.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func TestProviderStatusAndRecovery(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}}
	p, pushed := testProvider(t, il)
	ctx := context.Background()
	submitted(t, p)
	// The job ID goes with the next status write, not a write of its own.
	for _, a := range p.client.(*fake.Clientset).Actions() {
		if a.GetVerb() != "create" {
			t.Errorf("the submission wrote to the API server: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	il.statuses["u1"] = api.PodStatus{PodUID: "u1", JobID: "job-u1", Containers: []corev1.ContainerStatus{{Name: "c", State: running()}}}
	p.syncStatus(ctx)
	if len(*pushed) != 1 || (*pushed)[0].Status.Phase != corev1.PodRunning {
		t.Fatalf("pushed %+v", *pushed)
	}
	got := (*pushed)[0]
	if jid := got.Annotations[api.AnnotationJobID]; jid != "job-u1" {
		t.Errorf("pushed pod's job ID annotation %q, want job-u1", jid)
	}
	p.syncStatus(ctx)
	if len(*pushed) != 1 {
		t.Errorf("an unchanged status was pushed again")
	}
	// interLink fails: nothing changes.
	il.statusErr = api.Unavailable("down")
	p.syncStatus(ctx)
	if len(*pushed) != 1 {
		t.Errorf("a failed poll changed a pod")
	}
	// A VK restart: the pod comes back with its annotation; no new create.
	il.statusErr = nil
	p2, _ := testProvider(t, il)
	if err := p2.CreatePod(ctx, got); err != nil {
		t.Fatal(err)
	}
	if len(il.created) != 1 {
		t.Errorf("restart created the pod again: %v", il.created)
	}
	// The sidecar loses the job: after several polls the pod fails with a reason.
	delete(il.statuses, "u1")
	for range missingPolls {
		p.syncStatus(ctx)
	}
	last := (*pushed)[len(*pushed)-1]
	if last.Status.Phase != corev1.PodFailed || last.Status.Reason != "JobLost" {
		t.Errorf("lost job: %s %s", last.Status.Phase, last.Status.Reason)
	}
}

func TestPingKeepsLastGoodCapacity(t *testing.T) {
	il := &fakeIL{}
	n := &nodeProvider{il: il, client: fake.NewClientset(), interval: time.Second, log: slog.New(slog.DiscardHandler)}
	cfg := DefaultConfig()
	n.node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vk"}}
	if err := nodeSpec(&cfg, n.node); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Node
	n.NotifyNodeStatus(context.Background(), func(node *corev1.Node) { got = node })
	il.ping = api.PingResponse{Status: api.PingOK, Resources: &api.Resources{CPU: "64", Memory: "128Gi", Pods: "500"}}
	n.ping(context.Background())
	if got.Status.Capacity.Cpu().String() != "64" || got.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("after ping: %v %+v", got.Status.Capacity, got.Status.Conditions[0])
	}
	il.ping = api.PingResponse{Status: api.PingOK, Resources: &api.Resources{CPU: "0"}, Taints: &[]api.Taint{{Key: "site", Value: "hpc", Effect: "NoSchedule"}}}
	n.ping(context.Background())
	if got.Status.Capacity.Cpu().String() != "64" {
		t.Errorf("a ping of 0 CPU emptied the node: %v", got.Status.Capacity.Cpu())
	}
	if len(got.Spec.Taints) != 1 || got.Spec.Taints[0].Key != "site" {
		t.Errorf("taints %+v", got.Spec.Taints)
	}
	il.pingErr = api.Unavailable("connection refused")
	n.ping(context.Background())
	if c := got.Status.Conditions[0]; c.Status != corev1.ConditionFalse || c.Reason != ReasonInterlinkUnreachable {
		t.Errorf("unreachable: %+v", c)
	}
}

// TestPingBeforeNotifyIsHandedOver: the first ping may end before the node
// controller asks for statuses; its outcome is handed over at once, not at
// the next ping (which made the node Ready a PingInterval late).
func TestPingBeforeNotifyIsHandedOver(t *testing.T) {
	il := &fakeIL{ping: api.PingResponse{Status: api.PingOK}}
	n := &nodeProvider{il: il, client: fake.NewClientset(), interval: time.Hour, log: slog.New(slog.DiscardHandler)}
	cfg := DefaultConfig()
	n.node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vk"}}
	if err := nodeSpec(&cfg, n.node); err != nil {
		t.Fatal(err)
	}
	got := make(chan *corev1.Node, 1)
	n.NotifyNodeStatus(context.Background(), func(node *corev1.Node) { got <- node })
	select {
	case <-got:
		t.Fatal("a status was handed over before any ping")
	case <-time.After(50 * time.Millisecond):
	}
	n.notify = nil
	n.ping(context.Background())
	n.NotifyNodeStatus(context.Background(), func(node *corev1.Node) { got <- node })
	select {
	case node := <-got:
		if c := node.Status.Conditions[0]; c.Type != corev1.NodeReady || c.Status != corev1.ConditionTrue {
			t.Fatalf("handed over %+v, want Ready", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the ping's outcome was not handed over")
	}
}

func TestDeliveredKubeconfig(t *testing.T) {
	path := t.TempDir() + "/kc"
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newData(t)
	d.kubeconfig = &kubeconfigSource{customPath: path}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i"}}, Containers: []corev1.Container{{Name: "c"}}}}
	req, err := d.request(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.ProjectedVolumeMaps) != 1 || req.ProjectedVolumeMaps[0].Name != kubeconfigVolume || req.ProjectedVolumeMaps[0].Data[kubeconfigKey] == "" {
		t.Fatalf("maps %+v", req.ProjectedVolumeMaps)
	}
	for _, c := range append(req.Pod.Spec.InitContainers, req.Pod.Spec.Containers...) {
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != kubeconfigDir || c.Env[0].Value != kubeconfigDir+"/kubeconfig" {
			t.Errorf("container %s: mounts %+v env %+v", c.Name, c.VolumeMounts, c.Env)
		}
	}
	if len(pod.Spec.Volumes) != 0 || len(pod.Spec.Containers[0].Env) != 0 {
		t.Error("the pod in Kubernetes was changed")
	}
}

// apiPod is a one-container pod in namespace ns, created in the provider's
// API server.
func apiPod(t *testing.T, p *Provider, name string, uid types.UID) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: uid},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c"}}}}
	if _, err := p.client.CoreV1().Pods("ns").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return pod
}

func TestSubmissionRetriedWhileInterlinkIsDown(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}, createErr: api.Unavailable("connection refused")}
	p, pushed := testProvider(t, il)
	ctx := context.Background()
	pod := apiPod(t, p, "a", "u1")
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatalf("a transient failure must not fail CreatePod (it would fail the pod): %v", err)
	}
	last := (*pushed)[len(*pushed)-1]
	if last.Status.Phase != corev1.PodPending || last.Status.Reason != "SubmissionRetry" || !strings.Contains(last.Status.Message, "connection refused") {
		t.Errorf("while interLink is down: %s %s %q", last.Status.Phase, last.Status.Reason, last.Status.Message)
	}
	il.createErr = nil
	p.mu.Lock()
	p.pods["u1"].nextTry = time.Now().Add(-time.Second)
	p.mu.Unlock()
	p.retrySubmits(ctx)
	eventually := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		jid := p.pods["u1"].jobID
		p.mu.Unlock()
		if jid == "job-u1" {
			break
		}
		if time.Now().After(eventually) {
			t.Fatal("the pod was not submitted once interLink came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(il.created) != 1 {
		t.Errorf("created %v", il.created)
	}
}

// TestMissingImageWaitsAsAPullDoes: a sidecar without the pod's image
// leaves the pod Pending with its containers waiting as a kubelet shows a
// failed pull (ErrImagePull, then ImagePullBackOff), and the pod is
// submitted again until the image is there.
func TestMissingImageWaitsAsAPullDoes(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}, createErr: api.ImageNotFound(`image "nope:1" is not at this site`)}
	p, pushed := testProvider(t, il)
	ctx := context.Background()
	pod := apiPod(t, p, "a", "u1")
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "nope:1"}}
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatalf("a missing image must not fail CreatePod: %v", err)
	}
	check := func(want string) {
		t.Helper()
		last := (*pushed)[len(*pushed)-1]
		if last.Status.Phase != corev1.PodPending || last.Status.Reason != "" {
			t.Errorf("pod %s %q, want Pending without a reason", last.Status.Phase, last.Status.Reason)
		}
		all := append(slices.Clone(last.Status.InitContainerStatuses), last.Status.ContainerStatuses...)
		if len(all) != 2 {
			t.Fatalf("statuses %+v, want one per container", all)
		}
		for _, cs := range all {
			if w := cs.State.Waiting; w == nil || w.Reason != want || !strings.Contains(w.Message, `"nope:1"`) {
				t.Errorf("container %s: %+v, want waiting %s naming the image", cs.Name, cs.State, want)
			}
		}
	}
	check("ErrImagePull")
	p.submit(ctx, "u1")
	check("ImagePullBackOff")
	il.createErr = nil
	p.submit(ctx, "u1")
	p.mu.Lock()
	jid := p.pods["u1"].jobID
	p.mu.Unlock()
	if jid != "job-u1" {
		t.Errorf("job %q once the image is there, want job-u1", jid)
	}
}

// TestFailedAfterATransientCreateIsDeletedRemotely: a create that timed out
// may have made a job; if the pod then fails for good (interLink refuses
// the retry), deleting the pod must still delete that job.
func TestFailedAfterATransientCreateIsDeletedRemotely(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}, createErr: api.Unavailable("timeout")}
	p, _ := testProvider(t, il)
	ctx := context.Background()
	pod := apiPod(t, p, "a", "u1")
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	il.createErr = api.Invalid("refused")
	p.mu.Lock()
	p.pods["u1"].nextTry = time.Now().Add(-time.Second)
	p.mu.Unlock()
	p.submit(ctx, "u1")
	p.mu.Lock()
	phase := p.pods["u1"].pod.Status.Phase
	p.mu.Unlock()
	if phase != corev1.PodFailed {
		t.Fatalf("pod %s after a refused retry, want Failed", phase)
	}
	if err := p.DeletePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if len(il.deleted) != 1 || il.deleted[0] != "u1" {
		t.Errorf("remote deletes %v: the job the timed-out create may have made is left running", il.deleted)
	}

	// A pod refused on its first create made no job: no remote delete.
	il.deleted = nil
	pod2 := apiPod(t, p, "b", "u2")
	_ = p.CreatePod(ctx, pod2)
	if err := p.DeletePod(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	if len(il.deleted) != 0 {
		t.Errorf("remote deletes %v for a pod refused at its first create", il.deleted)
	}
}

func TestDeleteDuringSubmissionDeletesTheNewJob(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}, createGate: make(chan struct{})}
	p, _ := testProvider(t, il)
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	done := make(chan struct{})
	go func() { _ = p.CreatePod(ctx, pod); close(done) }()
	for {
		p.mu.Lock()
		t2, ok := p.pods["u1"]
		inFlight := ok && t2.submitting
		p.mu.Unlock()
		if inFlight {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := p.DeletePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	close(il.createGate)
	<-done
	if len(il.created) != 1 || len(il.deleted) != 2 {
		t.Errorf("created %v, deleted %v: the job made after the delete must be deleted too", il.created, il.deleted)
	}
	if pods, _ := p.GetPods(ctx); len(pods) != 0 {
		t.Errorf("a deleted pod came back: %v", pods)
	}
}

func TestNewPodUnderAKnownName(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}}
	p, _ := testProvider(t, il)
	ctx := context.Background()
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "ns", UID: "old"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	if err := p.CreatePod(ctx, old); err != nil {
		t.Fatal(err)
	}
	fresh := old.DeepCopy()
	fresh.UID = "new"
	if err := p.UpdatePod(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(il.created, []string{"old", "new"}) || !slices.Equal(il.deleted, []string{"old"}) {
		t.Errorf("created %v, deleted %v", il.created, il.deleted)
	}
	got, err := p.GetPod(ctx, "ns", "web-0")
	if err != nil || got.UID != "new" {
		t.Errorf("GetPod: %v %v", got, err)
	}
}

func TestTokenExpiry(t *testing.T) {
	dir := t.TempDir()
	// An unsigned-looking but well-formed RS256 JWT whose exp is 2026-11-25T11:00:00Z.
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"vk","exp":1795604400}`))
	jwtFile := filepath.Join(dir, "jwt")
	_ = os.WriteFile(jwtFile, []byte(head+"."+body+".c2ln\n"), 0o600)
	now := time.Unix(1795604400, 0).Add(-90 * time.Second)
	if got := tokenExpiry(jwtFile, now); got != 90 {
		t.Errorf("expiry in %v s, want 90", got)
	}
	opaque := filepath.Join(dir, "opaque")
	_ = os.WriteFile(opaque, []byte("static-token"), 0o600)
	if got := tokenExpiry(opaque, now); !math.IsNaN(got) {
		t.Errorf("opaque token: %v, want NaN", got)
	}
}

// TestUnchangedStatusNotDecodedAgain: a status byte for byte the last one of
// the same, unchanged pod is counted as seen and not decoded again; a new
// status, or the same one for a pod that changed since, is applied.
func TestUnchangedStatusNotDecodedAgain(t *testing.T) {
	il := &fakeIL{statuses: map[string]api.PodStatus{}}
	p, pushed := testProvider(t, il)
	ctx := context.Background()
	submitted(t, p)
	counts := func() (float64, float64) {
		return testutil.ToFloat64(p.metrics.statuses.WithLabelValues("decoded")), testutil.ToFloat64(p.metrics.statuses.WithLabelValues("unchanged"))
	}
	il.statuses["u1"] = api.PodStatus{PodUID: "u1", JobID: "job-u1", Containers: []corev1.ContainerStatus{{Name: "c", State: running()}}}
	p.syncStatus(ctx)
	p.syncStatus(ctx)
	p.syncStatus(ctx)
	if d, u := counts(); d != 1 || u != 2 {
		t.Fatalf("three polls of one status: decoded %v, unchanged %v; want 1 and 2", d, u)
	}
	if len(*pushed) != 1 || (*pushed)[0].Status.Phase != corev1.PodRunning {
		t.Fatalf("pushed %+v", *pushed)
	}
	// Missed polls are counted from the last poll that had the pod, skipped
	// or not: three unchanged polls never make a pod lost.
	p.mu.Lock()
	missing := p.pods["u1"].missing
	p.mu.Unlock()
	if missing != 0 {
		t.Errorf("missing %d after polls that had the pod", missing)
	}
	// The pod changes (a new tracked version): the same status is applied.
	p.mu.Lock()
	cp := *p.pods["u1"].pod
	p.pods["u1"].pod = &cp
	p.mu.Unlock()
	p.syncStatus(ctx)
	if d, _ := counts(); d != 2 {
		t.Errorf("the same status for a changed pod was not applied (decoded %v)", d)
	}
	// A new status is applied.
	il.statuses["u1"] = api.PodStatus{PodUID: "u1", JobID: "job-u1", Containers: []corev1.ContainerStatus{{Name: "c", State: exited(0)}}}
	p.syncStatus(ctx)
	if last := (*pushed)[len(*pushed)-1]; last.Status.Phase != corev1.PodSucceeded {
		t.Errorf("a new status was not applied: %s", last.Status.Phase)
	}
}
