package sidecars

import (
	"context"
	"io"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Plugin is what every sidecar implements.
//
// Errors carry an api.Reason (api.NotFound, api.Invalid, api.Unavailable) so
// that every hop maps them to the same HTTP status.
type Plugin interface {
	// Create starts a pod. It is idempotent by pod UID: creating a pod that
	// already exists returns its job, never a second one.
	Create(ctx context.Context, data *api.RetrievedPodData) (api.CreateResult, error)
	// Delete stops a pod and removes what it left. An unknown pod is
	// api.NotFound.
	Delete(ctx context.Context, pod *corev1.Pod) error
	// Status returns the status of each known pod of the batch. Unknown pods
	// are left out of the reply.
	Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error)
	// Logs returns one container's logs. With Opts.Follow the stream ends
	// when the container ends or ctx is done. An unknown pod or container is
	// api.NotFound.
	Logs(ctx context.Context, req *api.LogRequest) (io.ReadCloser, error)
}

// Execer is implemented by plugins that run commands in a pod's containers
// (kubectl exec). Exec writes the command's output (stdout and stderr) to out
// as it comes and returns its exit code.
type Execer interface {
	Exec(ctx context.Context, req *api.ExecRequest, out io.Writer) (exitCode int, err error)
}

// Pinger is implemented by plugins that report their health and capacity.
// A plugin without it answers a ping with status "ok".
type Pinger interface {
	Ping(ctx context.Context) (api.PingResponse, error)
}

// Streamer is implemented by plugins that offer kubectl exec -it, attach
// and port-forward (api.PathStream). Errors carry an api.Reason; a kind a
// runtime cannot offer is api.ReasonNotImplemented, with the reason why.
type Streamer interface {
	// ExecStream runs req.Command in a running container with sio as its
	// standard streams (a TTY when req.TTY) and returns its exit code.
	ExecStream(ctx context.Context, req *api.StreamRequest, sio api.StreamIO) (exitCode int, err error)
	// Attach joins a running container's standard streams until it ends
	// or ctx does, and returns its exit code when it ended.
	Attach(ctx context.Context, req *api.StreamRequest, sio api.StreamIO) (exitCode int, err error)
	// PortForward connects to req.Port in the pod's network.
	PortForward(ctx context.Context, req *api.StreamRequest) (io.ReadWriteCloser, error)
}
