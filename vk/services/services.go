// Package services gives Services endpoints that reach offloaded pods. The
// virtual node listens on one port of its own address per exposed pod port
// and carries each connection to the pod through interLink, as kubectl
// port-forward does (the site opens no inbound port); it publishes those
// addresses as EndpointSlices of every Service that selects the pod, one
// slice per (Service, pod), ready as the pod is. docs/architecture.md
// explains the design.
package services

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// AnnotationExpose opts a pod in: "true" publishes its declared TCP
// containerPorts to the Services that select it, when its node has
// Services.Enabled.
const AnnotationExpose = "interlink.io/service-endpoints"

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the
// slices this package writes (the EndpointSlice controller leaves slices
// managed by others alone).
const ManagedBy = "interlink-vk.interlink.io"

// LabelNode names the virtual node that manages a slice: each node keeps
// its own pods' slices.
const LabelNode = "interlink.io/node"

// MaxPortsPerPod bounds the forwarders of one pod: a pod cannot make the
// node open more listening ports than this.
const MaxPortsPerPod = 16

// Exposed tells whether the pod asks for service endpoints.
func Exposed(pod *corev1.Pod) bool {
	v, err := strconv.ParseBool(pod.Annotations[AnnotationExpose])
	return err == nil && v
}

// Forwarder carries one connection to port of a pod; it returns when the
// connection ends. The virtual node's port-forward path is one.
type Forwarder interface {
	Forward(ctx context.Context, namespace, pod string, port int32, conn io.ReadWriteCloser) error
}

// Config is what a Controller is built from.
type Config struct {
	NodeName string
	// Address is the IP published in the slices; Listen is where the
	// forwarders listen (default Address).
	Address, Listen string
	Client          kubernetes.Interface
	// Pods and Services are informers of the node's pods and of the
	// cluster's Services (the virtual-kubelet's own).
	Pods, Services cache.SharedIndexInformer
	Forwarder      Forwarder
	Log            *slog.Logger
	Registerer     prometheus.Registerer
}

// Controller keeps the forwarders and slices of the node's exposed pods.
type Controller struct {
	cfg      Config
	pods     corev1listers.PodLister
	services corev1listers.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	sliceInf cache.SharedIndexInformer
	// mine selects the slices this node manages. The informer asks the
	// API server for only those; the lister is read through it too, so a
	// watch that sends more (client-go's fake does) never makes another
	// node's slice look like ours and get deleted.
	mine  labels.Selector
	queue workqueue.TypedRateLimitingInterface[string]
	m     *ctrlMetrics

	mu        sync.Mutex
	listeners map[listenerKey]*listener
}

// listenerKey is one exposed port of one pod.
type listenerKey struct {
	namespace string
	uid       types.UID
	port      int32
}

type listener struct {
	ln     net.Listener
	port   int32 // the forwarder's own port
	cancel context.CancelFunc
}

type ctrlMetrics struct {
	listeners prometheus.Gauge
	endpoints prometheus.Gauge
	syncs     *prometheus.CounterVec
}

// New builds a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if net.ParseIP(cfg.Address) == nil {
		return nil, fmt.Errorf("services: address %q is not an IP", cfg.Address)
	}
	if cfg.Listen == "" {
		cfg.Listen = cfg.Address
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	mine := labels.SelectorFromSet(labels.Set{discoveryv1.LabelManagedBy: ManagedBy, LabelNode: cfg.NodeName})
	f := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = mine.String() }))
	sl := f.Discovery().V1().EndpointSlices()
	c := &Controller{cfg: cfg,
		pods:      corev1listers.NewPodLister(cfg.Pods.GetIndexer()),
		services:  corev1listers.NewServiceLister(cfg.Services.GetIndexer()),
		slices:    sl.Lister(),
		sliceInf:  sl.Informer(),
		mine:      mine,
		queue:     workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "services"}),
		listeners: map[listenerKey]*listener{},
	}
	if cfg.Registerer != nil {
		c.m = &ctrlMetrics{
			listeners: prometheus.NewGauge(prometheus.GaugeOpts{Name: "interlink_vk_service_forwarders",
				Help: "Ports the node listens on for Services, one per exposed port of a running exposed pod."}),
			endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: "interlink_vk_service_endpointslices",
				Help: "EndpointSlices the node keeps, one per (Service, exposed pod)."}),
			syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_vk_service_syncs_total",
				Help: "Syncs of a namespace's Service endpoints, by result (ok, error)."}, []string{"result"}),
		}
		cfg.Registerer.MustRegister(c.m.listeners, c.m.endpoints, c.m.syncs)
	}
	podEvents := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.enqueuePod(o, nil) },
		UpdateFunc: c.enqueuePod,
		DeleteFunc: func(o any) { c.enqueuePod(o, nil) },
	}
	nsEvents := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueNamespace,
		UpdateFunc: func(_, o any) { c.enqueueNamespace(o) },
		DeleteFunc: c.enqueueNamespace,
	}
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{cfg.Pods: podEvents, cfg.Services: nsEvents, c.sliceInf: nsEvents} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("services: event handler: %w", err)
		}
	}
	return c, nil
}

// enqueuePod queues the namespace of a pod that is, or was, exposed.
func (c *Controller) enqueuePod(o, n any) {
	for _, x := range []any{o, n} {
		if x == nil {
			continue
		}
		if d, ok := x.(cache.DeletedFinalStateUnknown); ok {
			x = d.Obj
		}
		if pod, ok := x.(*corev1.Pod); ok && Exposed(pod) {
			c.queue.Add(pod.Namespace)
			return
		}
	}
}

func (c *Controller) enqueueNamespace(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if m, err := meta(o); err == nil {
		c.queue.Add(m.GetNamespace())
	}
}

func meta(o any) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, errors.New("not an object")
	}
	return m, nil
}

// Run syncs until ctx ends, then closes every forwarder. The slices stay:
// a restarted node rewrites them with its new ports.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	go c.sliceInf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.sliceInf.HasSynced, c.cfg.Pods.HasSynced, c.cfg.Services.HasSynced) {
		return ctx.Err()
	}
	// Namespaces that hold our slices are synced once: a slice whose pod
	// went away while the node was down is deleted.
	for _, s := range c.sliceInf.GetStore().List() {
		c.enqueueNamespace(s)
	}
	go wait.UntilWithContext(ctx, c.worker, time.Second)
	<-ctx.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, l := range c.listeners {
		l.cancel()
		_ = l.ln.Close()
		delete(c.listeners, k)
	}
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for {
		ns, quit := c.queue.Get()
		if quit {
			return
		}
		err := c.sync(ctx, ns)
		c.queue.Done(ns)
		if err != nil {
			c.count("error")
			c.cfg.Log.Warn("service endpoints: sync failed, retried", "namespace", ns, "err", err)
			c.queue.AddRateLimited(ns)
			continue
		}
		c.count("ok")
		c.queue.Forget(ns)
	}
}

func (c *Controller) count(result string) {
	if c.m != nil {
		c.m.syncs.WithLabelValues(result).Inc()
	}
}

// sync makes the namespace's forwarders and slices what its exposed pods
// and Services call for.
func (c *Controller) sync(ctx context.Context, ns string) error {
	pods, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var exposed []*corev1.Pod
	for _, p := range pods {
		if Exposed(p) && p.Spec.NodeName == c.cfg.NodeName && p.Status.Phase == corev1.PodRunning {
			exposed = append(exposed, p)
		}
	}
	ports, err := c.syncListeners(ctx, ns, exposed)
	if err != nil {
		return err
	}
	svcs, err := c.services.Services(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	want := map[string]*discoveryv1.EndpointSlice{}
	for _, svc := range svcs {
		if svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		for _, p := range exposed {
			if !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			if s := c.slice(svc, p, ports); s != nil {
				want[s.Name] = s
			}
		}
	}
	have, err := c.slices.EndpointSlices(ns).List(c.mine)
	if err != nil {
		return err
	}
	return c.apply(ctx, ns, want, have)
}

// syncListeners opens a forwarder for every declared TCP port of the
// exposed pods and closes the namespace's others. It returns the
// forwarders' ports by pod and container port.
func (c *Controller) syncListeners(ctx context.Context, ns string, exposed []*corev1.Pod) (map[listenerKey]int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[listenerKey]int32{}
	var errs []error
	for _, p := range exposed {
		ports := declaredTCP(p)
		if len(ports) > MaxPortsPerPod {
			c.cfg.Log.Warn("service endpoints: the pod declares more TCP ports than the node forwards; the first ones are exposed",
				"namespace", ns, "pod", p.Name, "ports", len(ports), "max", MaxPortsPerPod)
			ports = ports[:MaxPortsPerPod]
		}
		for _, port := range ports {
			k := listenerKey{ns, p.UID, port}
			l, ok := c.listeners[k]
			if !ok {
				var err error
				if l, err = c.listen(ctx, p.Namespace, p.Name, port); err != nil {
					errs = append(errs, err)
					continue
				}
				c.listeners[k] = l
			}
			out[k] = l.port
		}
	}
	for k, l := range c.listeners {
		if _, ok := out[k]; !ok && k.namespace == ns {
			l.cancel()
			_ = l.ln.Close()
			delete(c.listeners, k)
		}
	}
	if c.m != nil {
		c.m.listeners.Set(float64(len(c.listeners)))
	}
	return out, errors.Join(errs...)
}

// declaredTCP are a pod's declared TCP container ports, each once.
func declaredTCP(p *corev1.Pod) []int32 {
	seen := map[int32]bool{}
	var out []int32
	for _, ctr := range p.Spec.Containers {
		for _, cp := range ctr.Ports {
			if (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) && cp.ContainerPort > 0 && !seen[cp.ContainerPort] {
				seen[cp.ContainerPort] = true
				out = append(out, cp.ContainerPort)
			}
		}
	}
	return out
}

// listen opens a forwarder to port of the pod: every connection it
// accepts is carried to the pod by the Forwarder.
func (c *Controller) listen(ctx context.Context, ns, pod string, port int32) (*listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(c.cfg.Listen, "0"))
	if err != nil {
		return nil, fmt.Errorf("forwarder for %s/%s port %d: %w", ns, pod, port, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		cancel()
		_ = ln.Close()
		return nil, fmt.Errorf("forwarder for %s/%s port %d: not a TCP address: %v", ns, pod, port, ln.Addr())
	}
	l := &listener{ln: ln, port: int32(addr.Port), cancel: cancel} //nolint:gosec // a TCP port fits
	log := c.cfg.Log.With("namespace", ns, "pod", pod, "port", port, "forwarder", ln.Addr().String())
	log.Info("service forwarder listening")
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if lctx.Err() == nil {
					log.Warn("service forwarder stopped", "err", err)
				}
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				if err := c.cfg.Forwarder.Forward(lctx, ns, pod, port, conn); err != nil {
					log.Debug("service connection ended", "err", err)
				}
			}()
		}
	}()
	return l, nil
}

// slice is the EndpointSlice of svc for pod: the forwarders' address and
// ports for the Service ports whose target the pod declares (nil: none).
func (c *Controller) slice(svc *corev1.Service, p *corev1.Pod, fwd map[listenerKey]int32) *discoveryv1.EndpointSlice {
	var ports []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue
		}
		target, ok := targetPort(p, sp)
		if !ok {
			continue
		}
		port, ok := fwd[listenerKey{p.Namespace, p.UID, target}]
		if !ok {
			continue
		}
		ports = append(ports, discoveryv1.EndpointPort{Name: &sp.Name, Port: &port, Protocol: ptr(corev1.ProtocolTCP), AppProtocol: sp.AppProtocol})
	}
	if len(ports) == 0 {
		return nil
	}
	ready := podReady(p)
	terminating := p.DeletionTimestamp != nil
	addrType := discoveryv1.AddressTypeIPv4
	if net.ParseIP(c.cfg.Address).To4() == nil {
		addrType = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      sliceName(svc, p),
			Namespace: svc.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   ManagedBy,
				LabelNode:                    c.cfg.NodeName,
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}},
		},
		AddressType: addrType,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{c.cfg.Address},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr(ready && !terminating), Serving: ptr(ready), Terminating: ptr(terminating),
			},
			NodeName:  ptr(c.cfg.NodeName),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}},
		Ports: ports,
	}
}

// targetPort is the container port a Service port targets on the pod: a
// number (the Service port's own when unset) or a port's name, declared
// for TCP in the pod.
func targetPort(p *corev1.Pod, sp corev1.ServicePort) (int32, bool) {
	for _, ctr := range p.Spec.Containers {
		for _, cp := range ctr.Ports {
			if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
				continue
			}
			switch {
			case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "" && cp.Name == sp.TargetPort.StrVal:
				return cp.ContainerPort, true
			case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == 0 && cp.ContainerPort == sp.Port:
				return cp.ContainerPort, true
			case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0 && cp.ContainerPort == sp.TargetPort.IntVal:
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// sliceName is stable for a (Service, pod): the Service's name and a hash
// of both UIDs.
func sliceName(svc *corev1.Service, p *corev1.Pod) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(string(svc.UID) + "/" + string(p.UID)))
	return fmt.Sprintf("%s-il-%012x", svc.Name, h.Sum64()&0xffffffffffff)
}

// apply creates, updates and deletes the namespace's slices so that they
// are want.
func (c *Controller) apply(ctx context.Context, ns string, want map[string]*discoveryv1.EndpointSlice, have []*discoveryv1.EndpointSlice) error {
	api := c.cfg.Client.DiscoveryV1().EndpointSlices(ns)
	var errs []error
	for _, h := range have {
		w, ok := want[h.Name]
		delete(want, h.Name)
		switch {
		case !ok:
			if err := api.Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		case !equality.Semantic.DeepEqual(w.Endpoints, h.Endpoints) || !equality.Semantic.DeepEqual(w.Ports, h.Ports) ||
			!equality.Semantic.DeepEqual(w.Labels, h.Labels) || !equality.Semantic.DeepEqual(w.OwnerReferences, h.OwnerReferences) || w.AddressType != h.AddressType:
			up := h.DeepCopy()
			up.Labels, up.OwnerReferences, up.Endpoints, up.Ports = w.Labels, w.OwnerReferences, w.Endpoints, w.Ports
			if w.AddressType != h.AddressType { // immutable: replace it
				if err := api.Delete(ctx, h.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue // created at the next sync, which the delete queues
			}
			if _, err := api.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, w := range want {
		if _, err := api.Create(ctx, w, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, err)
		}
	}
	if c.m != nil {
		if all, err := c.slices.List(c.mine); err == nil {
			c.m.endpoints.Set(float64(len(all)))
		}
	}
	return errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }
