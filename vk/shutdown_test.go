package vk

import (
	"context"
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
		wantGone   bool
	}{
		{"on: deleted", true, true, true},
		{"off: kept", false, true, false},
		{"on, already gone: no error", true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			if tc.registered {
				if _, err := cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "vk"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
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
