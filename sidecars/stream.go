package sidecars

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/seed-3f807049/interlink/functions/api"
)

// ServeStream serves one stream (api.PathStream) with st: an exec or an
// attach runs with the stream as its standard streams; a port-forward pipes
// the stream to the connection st made. A failure before the work started
// ends the stream with its typed error.
func ServeStream(w http.ResponseWriter, r *http.Request, st Streamer, log *slog.Logger) error {
	c, req, err := api.AcceptStream(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	log = log.With("kind", req.Kind, "pod", req.PodName, "namespace", req.Namespace, "container", req.ContainerName)
	switch req.Kind {
	case api.StreamExec:
		c.ServeIO(ctx, req, func(ctx context.Context, sio api.StreamIO) (int, error) { return st.ExecStream(ctx, req, sio) })
	case api.StreamAttach:
		c.ServeIO(ctx, req, func(ctx context.Context, sio api.StreamIO) (int, error) { return st.Attach(ctx, req, sio) })
	case api.StreamPortForward:
		conn, err := st.PortForward(ctx, req)
		if err != nil {
			log.InfoContext(ctx, "port-forward refused", "port", req.Port, "err", err)
			c.End(api.StreamStatus{Error: new(api.StatusOf(err))})
			return nil
		}
		if err := c.Pipe(ctx, conn, api.ChanStdout, api.ChanStdin); err != nil && ctx.Err() == nil {
			log.InfoContext(ctx, "port-forward ended", "port", req.Port, "err", err)
		}
	}
	return nil
}
