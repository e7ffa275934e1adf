package api

import (
	"encoding/json"
	"os"
	"path/filepath"
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
		{"create_struct.json", func() any { return &CreateStruct{} }, func(t *testing.T, v any) {
			if r := v.(*CreateStruct); r.PodJID != "4242" {
				t.Errorf("decoded %+v", r)
			}
		}},
		{"log_struct.json", func() any { return &LogStruct{} }, func(t *testing.T, v any) {
			r := v.(*LogStruct)
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
