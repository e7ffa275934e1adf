// Package vk is the virtual kubelet provider of interLink. Built on
// virtual-kubelet's nodeutil package and client-go informers, it registers a
// node, turns the lifecycle of the pods bound to it into calls to the
// interLink API (functions/client), and keeps their status in the API server
// true with one batched status call per poll.
package vk
