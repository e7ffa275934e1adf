package vk

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// What the informers keep. Each pod is held by the informer (its latest
// version), by the virtual-kubelet pod controller (the version it last
// synced: often the first one) and by the provider (its metadata and
// status, the spec shared with the informer's). The transforms below make
// the versions share what did not change, as they enter the cache.

// stripManagedFields drops an object's managed fields as it enters an
// informer's cache.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// podTransform strips a pod's managed fields and gives it the spec, labels,
// annotations and owner references of the version store holds when they
// are unchanged: a status update then costs the new status alone, and the
// pod controller's older version shares the rest with the informer's.
func podTransform(store cache.Store) cache.TransformFunc {
	return func(obj any) (any, error) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return stripManagedFields(obj)
		}
		pod.ManagedFields = nil
		old, exists, err := store.GetByKey(pod.Namespace + "/" + pod.Name)
		if err != nil || !exists {
			return pod, nil //nolint:nilerr // nothing to share with
		}
		op, ok := old.(*corev1.Pod)
		if !ok || op.UID != pod.UID {
			return pod, nil
		}
		if sameSpec(op, pod) {
			pod.Spec = op.Spec
		}
		if maps.Equal(op.Labels, pod.Labels) {
			pod.Labels = op.Labels
		}
		if maps.Equal(op.Annotations, pod.Annotations) {
			pod.Annotations = op.Annotations
		} else {
			// One annotation changed (the job ID): the others' values
			// (kubectl's last-applied-configuration, a whole pod) are kept
			// once.
			for k, v := range pod.Annotations {
				if ov, ok := op.Annotations[k]; ok && ov == v {
					pod.Annotations[k] = ov
				}
			}
		}
		if slices.EqualFunc(op.OwnerReferences, pod.OwnerReferences, func(a, b metav1.OwnerReference) bool {
			return equality.Semantic.DeepEqual(a, b)
		}) {
			pod.OwnerReferences = op.OwnerReferences
		}
		return pod, nil
	}
}

// sameSpec tells whether two versions of a pod have the same spec: by
// their generation, which the API server bumps at each spec change, when
// both have one; else by comparing them.
func sameSpec(a, b *corev1.Pod) bool {
	if a.Generation > 0 && b.Generation > 0 {
		return a.Generation == b.Generation
	}
	return equality.Semantic.DeepEqual(a.Spec, b.Spec)
}
