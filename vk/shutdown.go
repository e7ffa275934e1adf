package vk

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// DefaultShutdownTimeout bounds the deletion of the node at a graceful
// shutdown.
const DefaultShutdownTimeout = 10 * time.Second

// deleteNodeAtShutdown removes the Node object when the VK stops gracefully
// and DeleteNodeOnShutdown is set, so that a stopped virtual node leaves
// `kubectl get nodes` instead of staying there NotReady. A node that still
// holds pods that have not ended is kept: Kubernetes would force-delete
// the pods of a node that no longer exists (pod GC), leaving their remote
// jobs running with no pod; kept, they wait for the VK to come back. A node
// already gone is fine. ctx is the VK's (ended) context; the deletion gets
// its own time.
func deleteNodeAtShutdown(ctx context.Context, cs kubernetes.Interface, cfg *Config, log *slog.Logger) error {
	if !cfg.DeleteNodeOnShutdown {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	pods, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()})
	if err != nil {
		return fmt.Errorf("list the pods of node %s at shutdown: %w", cfg.NodeName, err)
	}
	live := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if ph := p.Status.Phase; p.Spec.NodeName == cfg.NodeName && ph != corev1.PodSucceeded && ph != corev1.PodFailed {
			live++
		}
	}
	if live > 0 {
		log.Info("node kept at shutdown: pods still run on it (delete them first to remove the node)", "node", cfg.NodeName, "pods", live)
		return nil
	}
	err = cs.CoreV1().Nodes().Delete(ctx, cfg.NodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s at shutdown: %w", cfg.NodeName, err)
	}
	log.Info("node deleted at shutdown", "node", cfg.NodeName)
	return nil
}
