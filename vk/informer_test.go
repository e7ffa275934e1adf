package vk

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func informerPod(gen int64, jobID string) *corev1.Pod {
	ann := map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(make([]byte, 2048))}
	if jobID != "" {
		ann["interlink.eu/pod-jid"] = jobID
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Generation: gen, Labels: map[string]string{"app": "x"},
			Annotations: ann, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1"}}}},
	}
}

// TestPodTransformShares: a new version of a pod shares its unchanged
// spec, labels and annotation values with the cached one; a changed spec
// or another pod of the same name is not shared.
func TestPodTransformShares(t *testing.T) {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	tf := podTransform(store)
	first, _ := tf(informerPod(1, ""))
	p1 := first.(*corev1.Pod)
	if p1.ManagedFields != nil {
		t.Fatal("managed fields kept")
	}
	if err := store.Add(p1); err != nil {
		t.Fatal(err)
	}
	second, _ := tf(informerPod(1, "42"))
	p2 := second.(*corev1.Pod)
	if &p2.Spec.Containers[0] != &p1.Spec.Containers[0] {
		t.Error("an unchanged spec is not shared")
	}
	if !sameMap(p1.Labels, p2.Labels) {
		t.Error("unchanged labels are not shared")
	}
	k := "kubectl.kubernetes.io/last-applied-configuration"
	if unsafe.StringData(p2.Annotations[k]) != unsafe.StringData(p1.Annotations[k]) || p2.Annotations["interlink.eu/pod-jid"] != "42" {
		t.Error("an unchanged annotation value is not shared, or the new one lost")
	}
	_ = store.Update(p2)

	changed := informerPod(2, "42")
	changed.Spec.Containers[0].Image = "busybox:2"
	p3, _ := tf(changed)
	if p3.(*corev1.Pod).Spec.Containers[0].Image != "busybox:2" {
		t.Error("a changed spec was replaced by the cached one")
	}
	_ = store.Update(p3)

	other := informerPod(2, "42")
	other.UID = "u2"
	other.Spec.Containers[0].Image = "other"
	p4, _ := tf(other)
	if p4.(*corev1.Pod).Spec.Containers[0].Image != "other" {
		t.Error("another pod of the same name got the cached spec")
	}

	// Without generations (an older API server), specs are compared.
	noGen := informerPod(0, "42")
	noGen.Spec.Containers[0].Image = "busybox:2"
	p5, _ := tf(noGen)
	if &p5.(*corev1.Pod).Spec.Containers[0] != &p3.(*corev1.Pod).Spec.Containers[0] {
		t.Error("an equal spec without generation is not shared")
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	// Maps are shared when writing to one shows in the other.
	a["probe"] = "1"
	defer delete(a, "probe")
	return b["probe"] == "1"
}
