package vk

import (
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Pod annotations of the original VK that name containers kept out of the
// pod sent to interLink: comma-separated container names.
const (
	AnnotationDisableOffloadContainers     = "interlink.eu/disable-offload-containers"
	AnnotationDisableOffloadInitContainers = "interlink.eu/disable-offload-init-containers"
)

// Other pod annotations of the original VK.
const (
	// AnnotationPodIP is the pod's IP address, shown as its status.podIP.
	AnnotationPodIP = "interlink.eu/pod-ip"
	// AnnotationPodVPN asked the original to allocate the pod an address
	// from PodCIDR: not supported here, the pod fails.
	AnnotationPodVPN = "interlink.eu/pod-vpn"
)

// Reasons shown for containers and pods the annotations affect.
const (
	// ReasonNotOffloaded is the waiting reason of a container kept out of
	// the pod sent to interLink.
	ReasonNotOffloaded = "NotOffloaded"
	// ReasonNothingToOffload fails a pod whose every container is kept out.
	ReasonNothingToOffload = "NothingToOffload"
	// ReasonPodVPNNotSupported fails a pod asking for a pod-vpn address.
	ReasonPodVPNNotSupported = "PodVPNNotSupported"
)

// notOffloadedMessage is the waiting message of a container kept out.
const notOffloadedMessage = "not sent to interLink (annotation %s); this virtual node has no in-cluster tunnel to run it, so it does not run"

// names parses a comma-separated list of container names: spaces trimmed,
// empty entries ignored.
func names(list string) map[string]bool {
	out := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out[n] = true
		}
	}
	return out
}

// notOffloaded returns the init containers and containers the pod's
// annotations keep out of interLink.
func notOffloaded(pod *corev1.Pod) (initContainers, containers map[string]bool) {
	return names(pod.Annotations[AnnotationDisableOffloadInitContainers]), names(pod.Annotations[AnnotationDisableOffloadContainers])
}

// offloaded returns the pod as interLink sees it: without the containers
// the annotations keep out. It is pod itself when there are none.
func offloaded(pod *corev1.Pod) *corev1.Pod {
	skipInit, skip := notOffloaded(pod)
	drop := func(cs []corev1.Container, skip map[string]bool) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return skip[c.Name] })
	}
	if !drop(pod.Spec.InitContainers, skipInit) && !drop(pod.Spec.Containers, skip) {
		return pod
	}
	out := pod.DeepCopy()
	out.Spec.InitContainers = slices.DeleteFunc(out.Spec.InitContainers, func(c corev1.Container) bool { return skipInit[c.Name] })
	out.Spec.Containers = slices.DeleteFunc(out.Spec.Containers, func(c corev1.Container) bool { return skip[c.Name] })
	return out
}

// ReasonPodIPNotAllowed fails a pod whose interlink.eu/pod-ip this node
// does not accept.
const ReasonPodIPNotAllowed = "PodIPNotAllowed"

// annotatedPodIP is the pod's interlink.eu/pod-ip ("" when it has none),
// checked: the original takes any address, which lets a pod claim the
// address of another pod, of a Service or of the node's loopback, and be
// sent their traffic by the Services that select it. Here it must be a
// unicast address inside the node's PodCIDR.Subnet.
func annotatedPodIP(pod *corev1.Pod, podNet *net.IPNet) (string, error) {
	v, ok := pod.Annotations[AnnotationPodIP]
	if !ok {
		return "", nil
	}
	ip := net.ParseIP(v)
	switch {
	case ip == nil:
		return "", fmt.Errorf("annotation %s=%q is not an IP address", AnnotationPodIP, v)
	case podNet == nil:
		return "", fmt.Errorf("annotation %s: this node has no PodCIDR.Subnet, and a pod may claim an address only inside it", AnnotationPodIP)
	case !podNet.Contains(ip) || ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.Equal(podNet.IP):
		return "", fmt.Errorf("annotation %s=%s is not a unicast address of this node's PodCIDR.Subnet %s", AnnotationPodIP, v, podNet)
	}
	return ip.String(), nil
}
