package vk

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultShutdownTimeout bounds the deletion of the node at a graceful
// shutdown.
const DefaultShutdownTimeout = 10 * time.Second

// deleteNodeAtShutdown removes the Node object when the VK stops gracefully
// and DeleteNodeOnShutdown is set, so that a stopped virtual node leaves
// `kubectl get nodes` instead of staying there NotReady. A node already gone
// is fine. ctx is the VK's (ended) context; the deletion gets its own time.
func deleteNodeAtShutdown(ctx context.Context, cs kubernetes.Interface, cfg *Config, log *slog.Logger) error {
	if !cfg.DeleteNodeOnShutdown {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	err := cs.CoreV1().Nodes().Delete(ctx, cfg.NodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s at shutdown: %w", cfg.NodeName, err)
	}
	log.Info("node deleted at shutdown", "node", cfg.NodeName)
	return nil
}
