package functions

import (
	"context"
	"net/http"

	"github.com/seed-3f807049/interlink/functions/api"
)

// streamDialer is implemented by sidecars (sidecars.Client) that open
// streams: exec -it, attach and port-forward.
type streamDialer interface {
	DialStream(ctx context.Context, req *api.StreamRequest) (*api.StreamConn, error)
}

// stream joins the VK's stream to one on the pod's sidecar (named by
// HeaderSidecar, or the default): each message goes across as it came,
// within the configured idle and total bounds.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	name, err := h.routedSidecar(r)
	if err != nil {
		return err
	}
	sd, ok := h.cfg.Sidecars[name].(streamDialer)
	if !ok {
		return api.NewError(api.ReasonNotImplemented, "sidecar %s does not offer exec -it, attach or port-forward", name)
	}
	vk, req, err := api.AcceptStream(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	log := h.log.With("sidecar", name, "kind", req.Kind, "pod", req.PodName, "namespace", req.Namespace)
	sc, err := sd.DialStream(ctx, req)
	if err != nil {
		h.cfg.Metrics.sidecarError(name, err)
		h.cfg.Metrics.streamEnded(req.Kind, err)
		log.InfoContext(ctx, "stream refused by the sidecar", "err", err)
		vk.End(api.StreamStatus{Error: new(api.StatusOf(err))})
		return nil
	}
	done := h.cfg.Metrics.streamStarted(req.Kind)
	err = api.Splice(ctx, vk, sc, h.cfg.StreamLimits, h.cfg.Metrics.streamBytes(req.Kind))
	done()
	h.cfg.Metrics.streamEnded(req.Kind, err)
	if err != nil && ctx.Err() == nil {
		log.InfoContext(ctx, "stream ended", "err", err)
	}
	return nil
}
