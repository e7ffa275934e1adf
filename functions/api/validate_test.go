package api

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRequireContainers(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	err := RequireContainers(pod)
	if ReasonOf(err) != ReasonInvalid || err.Error() != "pod ns/p has no containers" {
		t.Errorf("no containers: %v (%s), want Invalid %q", err, ReasonOf(err), "pod ns/p has no containers")
	}
	// Init containers alone do not make a pod runnable.
	pod.Spec.InitContainers = []corev1.Container{{Name: "init"}}
	if err := RequireContainers(pod); ReasonOf(err) != ReasonInvalid {
		t.Errorf("only init containers: %v, want Invalid", err)
	}
	pod.Spec.Containers = []corev1.Container{{Name: "main"}}
	if err := RequireContainers(pod); err != nil {
		t.Errorf("one container: %v", err)
	}
}

func TestValidateStatusBatch(t *testing.T) {
	type meta struct {
		ns, name, uid string
		err           error
	}
	tests := []struct {
		name string
		pods []meta
		want string // "" for valid
	}{
		{"empty", nil, ""},
		{"all have UIDs", []meta{{"a", "p", "u1", nil}, {"b", "q", "u2", nil}}, ""},
		{"one without UID", []meta{{"a", "p", "u1", nil}, {"b", "q", "", nil}},
			"invalid status request: pod 1 (b/q) has no metadata.uid"},
		{"every problem, in order", []meta{{"", "", "", errors.New("bad JSON")}, {"a", "p", "u", nil}, {"n", "m", "", nil}},
			"invalid status request: pod 0: bad JSON; pod 2 (n/m) has no metadata.uid"},
		// A pod that could not be read is reported for that, not for its UID.
		{"unreadable with UID", []meta{{"a", "p", "u", errors.New("boom")}}, "invalid status request: pod 0: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []int
			err := ValidateStatusBatch(len(tt.pods), func(i int) (string, string, string, error) {
				asked = append(asked, i)
				m := tt.pods[i]
				return m.ns, m.name, m.uid, m.err
			})
			if len(asked) != len(tt.pods) {
				t.Errorf("meta called for %v, want each of %d pods once", asked, len(tt.pods))
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if ReasonOf(err) != ReasonInvalid || err == nil || err.Error() != tt.want {
				t.Errorf("got %v (%s), want Invalid %q", err, ReasonOf(err), tt.want)
			}
		})
	}
}
