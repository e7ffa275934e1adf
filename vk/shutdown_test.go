package vk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestDeleteNodeAtShutdown(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name       string
		enabled    bool
		registered bool
		pods       []corev1.PodPhase // pods bound to the node
		wantGone   bool
	}{
		{"on: deleted", true, true, nil, true},
		{"off: kept", false, true, nil, false},
		{"on, already gone: no error", true, false, nil, true},
		{"on, only ended pods: deleted", true, true, []corev1.PodPhase{corev1.PodSucceeded, corev1.PodFailed}, true},
		{"on, a running pod: kept (pod GC would orphan its job)", true, true, []corev1.PodPhase{corev1.PodSucceeded, corev1.PodRunning}, false},
		{"on, a pending pod: kept", true, true, []corev1.PodPhase{corev1.PodPending}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			if tc.registered {
				if _, err := cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vk"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			for i, ph := range tc.pods {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("p", i), Namespace: "ns"},
					Spec: corev1.PodSpec{NodeName: "vk"}, Status: corev1.PodStatus{Phase: ph}}
				if _, err := cs.CoreV1().Pods("ns").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			// A running pod on another node does not keep this one.
			other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "ns"},
				Spec: corev1.PodSpec{NodeName: "other"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
			if _, err := cs.CoreV1().Pods("ns").Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.NodeName, cfg.DeleteNodeOnShutdown = "vk", tc.enabled
			// The VK's context has ended: the deletion must not use it as is.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := deleteNodeAtShutdown(ctx, cs, &cfg, quiet); err != nil {
				t.Fatal(err)
			}
			_, err := cs.CoreV1().Nodes().Get(context.Background(), "vk", metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tc.wantGone {
				t.Errorf("node gone = %v, want %v (err %v)", gone, tc.wantGone, err)
			}
		})
	}
}

func TestDeleteNodeOnShutdownDefaultsOn(t *testing.T) {
	if !DefaultConfig().DeleteNodeOnShutdown {
		t.Error("DeleteNodeOnShutdown is off by default")
	}
}
