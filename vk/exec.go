package vk

import (
	"context"
	"fmt"
	"io"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"

	"github.com/seed-3f807049/interlink/functions/api"
)

// The kubelet API's container endpoints: logs, exec, attach and
// port-forward, passed to the pod's sidecar through interLink. Stats and
// resource metrics are served from the polled usage (usage.go).

// GetContainerLogs streams logs from the pod's sidecar through interLink.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	pod, err := p.GetPod(ctx, namespace, podName)
	if err != nil {
		return nil, err
	}
	req := &api.LogRequest{Namespace: namespace, PodName: podName, PodUID: string(pod.UID), ContainerName: containerName,
		Opts: api.ContainerLogOpts{Tail: opts.Tail, LimitBytes: opts.LimitBytes, Timestamps: opts.Timestamps, Follow: opts.Follow,
			Previous: opts.Previous, SinceSeconds: opts.SinceSeconds, SinceTime: opts.SinceTime}}
	rc, err := p.il.Logs(ctx, pod.Annotations[api.AnnotationSidecar], req)
	if api.IsNotFound(err) {
		return nil, errdefs.AsNotFound(err)
	}
	if api.ReasonOf(err) == api.ReasonInvalid {
		return nil, errdefs.AsInvalidInput(err)
	}
	return rc, err
}

// RunInContainer runs a command through the pod's sidecar (kubectl exec):
// with standard input or a terminal (-i, -t) as a stream (stream.go),
// else as one /exec call. A non-zero exit code reaches kubectl as the
// command's exit code.
func (p *Provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach vkapi.AttachIO) error {
	if attach.Stdin() != nil || attach.TTY() {
		return p.ioStream(ctx, &api.StreamRequest{Kind: api.StreamExec, Namespace: namespace, PodName: podName, ContainerName: containerName, Command: cmd}, attach)
	}
	pod, err := p.GetPod(ctx, namespace, podName)
	if err != nil {
		return err
	}
	out := io.Writer(io.Discard)
	if w := attach.Stdout(); w != nil {
		out = w
	} else if w := attach.Stderr(); w != nil {
		out = w
	}
	req := &api.ExecRequest{Namespace: namespace, PodName: podName, PodUID: string(pod.UID), ContainerName: containerName, Command: cmd}
	code, err := p.il.Exec(ctx, pod.Annotations[api.AnnotationSidecar], req, out)
	switch {
	case api.IsNotFound(err):
		return errdefs.AsNotFound(err)
	case api.ReasonOf(err) == api.ReasonInvalid || api.ReasonOf(err) == api.ReasonNotImplemented:
		return errdefs.AsInvalidInput(err)
	case err != nil:
		return err
	case code != 0:
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}
