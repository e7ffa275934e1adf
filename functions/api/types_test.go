package api

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGoldenRoundTrip decodes fixtures written by hand from the original
// interLink's field names and checks that they encode back unchanged.
func TestGoldenRoundTrip(t *testing.T) {
	tests := []struct {
		file  string
		into  func() any
		check func(t *testing.T, v any)
	}{
		{"create_request.json", func() any { return &PodCreateRequests{} }, func(t *testing.T, v any) {
			r := v.(*PodCreateRequests)
			if r.Pod.UID != "5f0c4b3e-2a1d-4c8e-9b7a-1e2f3a4b5c6d" || len(r.ConfigMaps) != 1 || len(r.Secrets) != 1 || len(r.ProjectedVolumeMaps) != 1 {
				t.Errorf("decoded %+v", r)
			}
			if string(r.Secrets[0].Data["token"]) != "secret" {
				t.Errorf("secret data = %q", r.Secrets[0].Data["token"])
			}
		}},
		{"retrieved_pod_data.json", func() any { return &RetrievedPodData{} }, func(t *testing.T, v any) {
			r := v.(*RetrievedPodData)
			if len(r.Containers) != 1 || r.Containers[0].Name != "main" || r.JobScript == "" || len(r.JobConfig) == 0 {
				t.Errorf("decoded %+v", r)
			}
		}},
		{"pod_status_list.json", func() any { return &[]PodStatus{} }, func(t *testing.T, v any) {
			r := *v.(*[]PodStatus)
			if len(r) != 2 || r[0].JobID != "4242" || r[0].Containers[0].State.Terminated == nil || r[1].Containers[0].State.Running == nil {
				t.Errorf("decoded %+v", r)
			}
		}},
		{"create_struct.json", func() any { return &CreateResult{} }, func(t *testing.T, v any) {
			if r := v.(*CreateResult); r.PodJID != "4242" {
				t.Errorf("decoded %+v", r)
			}
		}},
		{"log_struct.json", func() any { return &LogRequest{} }, func(t *testing.T, v any) {
			r := v.(*LogRequest)
			if r.Opts.Tail != 10 || !r.Opts.Timestamps || r.ContainerName != "main" {
				t.Errorf("decoded %+v", r)
			}
			if err := ValidateLogRequest(r); err != nil {
				t.Errorf("valid fixture rejected: %v", err)
			}
		}},
		{"ping_response.json", func() any { return &PingResponse{} }, func(t *testing.T, v any) {
			r := v.(*PingResponse)
			if r.Resources == nil || r.Resources.CPU != "64" || r.Taints == nil || len(*r.Taints) != 1 {
				t.Errorf("decoded %+v", r)
			}
		}},
		{"ping_response_empty_taints.json", func() any { return &PingResponse{} }, func(t *testing.T, v any) {
			r := v.(*PingResponse)
			if r.Taints == nil || len(*r.Taints) != 0 {
				t.Errorf("empty taints must decode as present and empty, got %+v", r.Taints)
			}
		}},
		{"delete_pod.json", func() any { return &corev1.Pod{} }, func(t *testing.T, v any) {
			if r := v.(*corev1.Pod); r.DeletionTimestamp == nil {
				t.Errorf("decoded %+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			v := tt.into()
			if err := json.Unmarshal(raw, v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			tt.check(t, v)
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			var want, got any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			// The original's apimachinery wrote a zero creationTimestamp as
			// null; ours omits it. Both decode to the same value.
			dropNullTimestamps(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round trip changed the JSON (-fixture +encoded):\n%s", diff)
			}
		})
	}
}

func dropNullTimestamps(v any) {
	switch v := v.(type) {
	case map[string]any:
		if ts, ok := v["creationTimestamp"]; ok && ts == nil {
			delete(v, "creationTimestamp")
		}
		for _, x := range v {
			dropNullTimestamps(x)
		}
	case []any:
		for _, x := range v {
			dropNullTimestamps(x)
		}
	}
}

func TestStatusPodOfEncodesAsTrimForStatus(t *testing.T) {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"a": "b"},
			Annotations:   map[string]string{AnnotationSidecar: "sim", lastApplied: "{}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Spec: corev1.PodSpec{NodeName: "n", RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: "i", Image: "busybox", Command: []string{"x"}}},
			Containers:     []corev1.Container{{Name: "m", Image: "busybox", Env: []corev1.EnvVar{{Name: "K", Value: "V"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "1.2.3.4"},
	}
	for _, pod := range []*corev1.Pod{p, {ObjectMeta: metav1.ObjectMeta{Name: "q", UID: "v"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}} {
		var a, b any
		ja, _ := json.Marshal(TrimForStatus(pod))
		jb, _ := json.Marshal(StatusPodOf(pod))
		_ = json.Unmarshal(ja, &a)
		_ = json.Unmarshal(jb, &b)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("StatusPodOf and TrimForStatus differ (-trim +statusPod):\n%s", diff)
		}
	}
}

// TestPingReplyForms: a 2xx ping reply is healthy whatever its body, as the
// original interLink takes it; resources are read from an object only. The
// bodies are those of the original's plugins: the Docker plugin (null), the
// SLURM plugin up to 0.5.0 (null, or its last status list), from 0.5.1 to
// 0.6.2 (the text of sinfo -s), and since (a PingResponse object whose
// accelerator counts are strings); and an original interLink 0.3's "0".
func TestPingReplyForms(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		cpu        string
		gpus       Count
		problem    bool
	}{
		{name: "DockerPluginNull", body: "null"},
		{name: "EmptyArray", body: "[]"},
		{name: "OldSlurmStatusList", body: `[{"name":"p","UID":"u","namespace":"n","JID":"1","containers":[]}]`},
		{name: "SinfoText", body: "PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T) NODELIST\ndebug*       up   infinite        0/1/0/1 node1\n"},
		{name: "OldInterlinkZero", body: "0"},
		{name: "Empty", body: ""},
		{name: "Object", body: `{"status":"ok","resources":{"cpu":"128","memory":"512000Mi","accelerators":[{"resourceType":"nvidia.com/gpu","available":"8"}]}}`, cpu: "128", gpus: 8},
		{name: "ObjectNumberCount", body: `{"resources":{"cpu":"4","accelerators":[{"resourceType":"nvidia.com/gpu","available":2}]}}`, cpu: "4", gpus: 2},
		{name: "ObjectBad", body: `{"resources":{"cpu":4}}`, problem: true},
		{name: "ObjectNegativeCount", body: `{"resources":{"accelerators":[{"resourceType":"x/y","available":"-1"}]}}`, problem: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p PingResponse
			if err := p.DecodeReply(strings.NewReader(tc.body)); err != nil {
				t.Fatalf("DecodeReply(%q): %v, want a healthy reply", tc.body, err)
			}
			if (p.Problem != nil) != tc.problem {
				t.Errorf("Problem = %v, want a problem: %v", p.Problem, tc.problem)
			}
			var cpu string
			var gpus Count
			if p.Resources != nil {
				cpu = p.Resources.CPU
				for _, a := range p.Resources.Accelerators {
					gpus += a.Available
				}
			}
			if cpu != tc.cpu || gpus != tc.gpus {
				t.Errorf("cpu %q gpus %d, want %q %d", cpu, gpus, tc.cpu, tc.gpus)
			}
		})
	}
	var p PingResponse
	if err := p.DecodeReply(strings.NewReader(strings.Repeat(" ", MaxPingReply+1))); err == nil {
		t.Error("a reply larger than MaxPingReply was read")
	}
}

// TestCountEncodesAsNumber: counts go out as numbers, as our peers read them.
func TestCountEncodesAsNumber(t *testing.T) {
	b, err := json.Marshal(Accelerator{ResourceType: "nvidia.com/gpu", Available: 3})
	if err != nil || string(b) != `{"resourceType":"nvidia.com/gpu","available":3}` {
		t.Errorf("%s %v", b, err)
	}
}
