package vk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Node condition reasons.
const (
	ReasonInterlinkReady       = "InterlinkReady"
	ReasonInterlinkUnreachable = "InterlinkUnreachable"
	ReasonSidecarsDegraded     = "SidecarsDegraded"
)

// KubeletVersion is what the node reports as its kubelet version.
const KubeletVersion = "v1.37.2-interlink"

// nodeSpec builds the node to register.
func nodeSpec(cfg *Config, node *corev1.Node) error {
	capacity, err := cfg.Capacity()
	if err != nil {
		return err
	}
	taints, err := cfg.Taints()
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(cfg.KubeletPort)
	if err != nil {
		return fmt.Errorf("KubeletPort %q: %w", cfg.KubeletPort, err)
	}
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	// The original's default labels (all its versions'), then the
	// accelerator models' labels, then NodeLabels, which override them.
	// kubernetes.io/os is linux (the original's HEAD says virtual-kubelet):
	// DaemonSets and pods selecting linux nodes expect it.
	models, _ := cfg.Resources.modelLabels()
	for _, labels := range []map[string]string{{
		"type": "virtual-kubelet", "virtual-node.interlink/type": "virtual-kubelet",
		"kubernetes.io/role": "agent", "kubernetes.io/hostname": cfg.NodeName,
		"kubernetes.io/os": "linux", "kubernetes.io/arch": runtime.GOARCH,
		"alpha.service-controller.kubernetes.io/exclude-balancer": "true",
		"node.kubernetes.io/exclude-from-external-load-balancers": "true",
	}, models, cfg.NodeLabels} {
		for k, v := range labels {
			node.Labels[k] = v
		}
	}
	node.Spec.ProviderID = "external:///" + cfg.NodeName
	if cfg.PodCIDR.Subnet != "" {
		node.Spec.PodCIDR, node.Spec.PodCIDRs = cfg.PodCIDR.Subnet, []string{cfg.PodCIDR.Subnet}
	}
	node.Spec.Taints = taints
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity.DeepCopy()
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: cfg.NodeAddress}, {Type: corev1.NodeHostName, Address: cfg.NodeName}}
	node.Status.DaemonEndpoints = corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}} //nolint:gosec // a port number
	node.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: KubeletVersion, OperatingSystem: "linux", Architecture: runtime.GOARCH}
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: ReasonInterlinkUnreachable, Message: "interLink not reached yet", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: "RouteCreated", LastHeartbeatTime: now, LastTransitionTime: now},
	}
	return nil
}

// nodeProvider implements virtual-kubelet's node.NodeProvider: the node's
// Ready condition, capacity and taints follow interLink's /pinglink.
type nodeProvider struct {
	il       Interlink
	client   kubernetes.Interface
	interval time.Duration
	log      *slog.Logger
	ready    func(bool) // told of each ping's outcome, if set
	// writeFailed, if set, is told of each failed write to the API server.
	writeFailed func()

	mu     sync.Mutex
	node   *corev1.Node
	notify func(*corev1.Node)
	pinged bool // node holds a ping's outcome
	// baseTaints are the configured taints; a ping reply's taints replace
	// the non-system ones.
	baseTaints []corev1.Taint
	// appliedTaints are the taints last written to the node (nil: the
	// registered ones).
	appliedTaints []corev1.Taint
}

// Ping tells the node controller that the VK itself is alive (the lease).
// interLink's health is the Ready condition, set by Run.
func (n *nodeProvider) Ping(context.Context) error { return nil }

// NotifyNodeStatus implements node.NodeProvider. A ping that ended before
// the node controller asked (both start together) is handed over at once:
// the node is Ready as soon as it is registered, not a PingInterval later.
func (n *nodeProvider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notify = cb
	if n.pinged {
		node := n.node.DeepCopy()
		go cb(node) // it must not block
	}
}

// Run pings interLink each interval until ctx ends.
func (n *nodeProvider) Run(ctx context.Context) error {
	t := time.NewTicker(n.interval)
	defer t.Stop()
	for {
		n.ping(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (n *nodeProvider) ping(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.interval*2)
	defer cancel()
	res, err := n.il.Ping(ctx)
	n.mu.Lock()
	node := n.node.DeepCopy()
	status, reason, msg := corev1.ConditionTrue, ReasonInterlinkReady, "interLink and its sidecars answer"
	switch {
	case err != nil:
		status, reason, msg = corev1.ConditionFalse, ReasonInterlinkUnreachable, err.Error()
	case res.Status == api.PingDegraded:
		var down []string
		for _, s := range res.Sidecars {
			if !s.Up {
				down = append(down, s.Name)
			}
		}
		reason, msg = ReasonSidecarsDegraded, "sidecars down: "+strings.Join(down, ", ")
	}
	if n.ready != nil {
		n.ready(status == corev1.ConditionTrue)
	}
	now := metav1.Now()
	for i := range node.Status.Conditions {
		c := &node.Status.Conditions[i]
		c.LastHeartbeatTime = now
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
			n.log.Info("node readiness changed", "ready", status, "reason", reason, "message", msg)
		}
		c.Status, c.Reason, c.Message = status, reason, msg
	}
	if err == nil {
		n.applyPing(node, &res)
	}
	n.node, n.pinged = node, true
	cb := n.notify
	n.mu.Unlock()
	if cb != nil {
		cb(node.DeepCopy())
	}
	n.mu.Lock()
	applied := n.appliedTaints
	if applied == nil {
		applied = n.baseTaints
	}
	n.mu.Unlock()
	if !equality.Semantic.DeepEqual(applied, node.Spec.Taints) {
		// The node controller writes status only: taints are spec. A failed
		// patch is tried again at the next ping.
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": node.Spec.Taints}})
		if _, err := n.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			if n.writeFailed != nil {
				n.writeFailed()
			}
			n.log.Warn("could not apply the taints interLink asked for; retrying at the next ping", "err", err)
			return
		}
		n.mu.Lock()
		n.appliedTaints = node.Spec.Taints
		n.mu.Unlock()
	}
}

// applyPing takes capacity and taints from a ping reply. A zero or invalid
// quantity never empties the node: it is logged and the last good value kept.
func (n *nodeProvider) applyPing(node *corev1.Node, res *api.PingResponse) {
	if r := res.Resources; r != nil {
		set := func(name corev1.ResourceName, v string) {
			if v == "" {
				return
			}
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				n.log.Warn("ping reported an unusable capacity; keeping the last good value", "resource", name, "value", v)
				return
			}
			node.Status.Capacity[name] = q
			node.Status.Allocatable[name] = q
		}
		set(corev1.ResourceCPU, r.CPU)
		set(corev1.ResourceMemory, r.Memory)
		set(corev1.ResourcePods, r.Pods)
		for _, a := range r.Accelerators {
			set(corev1.ResourceName(a.ResourceType), strconv.Itoa(int(a.Available)))
		}
	}
	if res.Taints != nil {
		taints := []corev1.Taint{}
		for _, t := range n.baseTaints {
			if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
				taints = append(taints, t)
			}
		}
		for _, t := range *res.Taints {
			taints = append(taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
		}
		node.Spec.Taints = taints
	}
}
