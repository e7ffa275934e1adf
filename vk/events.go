package vk

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// eventRecorder records the pod controller's Warning events (a failed
// create, update or delete) in the API server and only logs its Normal
// ones ("Create pod in provider successfully", one per pod and step): at
// thousands of pods those would be most of the VK's writes to the API
// server and tell nothing the pod's status does not.
type eventRecorder struct {
	api record.EventRecorder
	log *slog.Logger
}

// warningEvents returns the recorder and the broadcaster that sends its
// events to the API server; stop the broadcaster with Shutdown.
func warningEvents(cs kubernetes.Interface, node string, log *slog.Logger) (record.EventRecorder, record.EventBroadcaster) {
	eb := record.NewBroadcaster()
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events(metav1.NamespaceAll)})
	return &eventRecorder{api: eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: node + "/pod-controller"}), log: log}, eb
}

func (r *eventRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	if eventtype == corev1.EventTypeWarning {
		r.api.Event(obj, eventtype, reason, message)
		return
	}
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"reason", reason, "message", message}
		if m, err := metaOf(obj); err == nil {
			attrs = append(attrs, "pod", m.GetName(), "namespace", m.GetNamespace(), "uid", m.GetUID())
		}
		r.log.Debug("event", attrs...)
	}
}

func (r *eventRecorder) Eventf(obj runtime.Object, eventtype, reason, format string, args ...any) {
	r.Event(obj, eventtype, reason, fmt.Sprintf(format, args...))
}

func (r *eventRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, format string, args ...any) {
	if eventtype == corev1.EventTypeWarning {
		r.api.AnnotatedEventf(obj, annotations, eventtype, reason, format, args...)
		return
	}
	r.Event(obj, eventtype, reason, fmt.Sprintf(format, args...))
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, fmt.Errorf("%T has no metadata", obj)
}
