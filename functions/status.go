package functions

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

func (h *Handler) status(w http.ResponseWriter, r *http.Request) error {
	var pods []json.RawMessage
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &pods); err != nil {
		return err
	}
	res, err := h.Status(r.Context(), pods)
	if err != nil {
		return err
	}
	// Only peers that declared our API version get per-pod errors; an
	// original VK simply does not see the pods whose sidecar failed.
	if r.Header.Get(api.HeaderAPIVersion) != "" {
		for i := range res.Failed {
			raw, err := json.Marshal(&res.Failed[i])
			if err != nil {
				return fmt.Errorf("encode status error: %w", err)
			}
			res.Statuses = append(res.Statuses, raw)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	_ = bw.WriteByte('[')
	for i, st := range res.Statuses {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(st)
	}
	_, _ = bw.WriteString("]\n")
	return bw.Flush()
}

// maxFanOut bounds the concurrent calls of one request to the sidecars
// (a status batch split by sidecar and StatusBatchSize, a ping).
const maxFanOut = 64

// podRef is one pod of a status batch: the little metadata interLink reads to
// route it. The pod's JSON itself is forwarded to its sidecar unchanged.
type podRef struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		UID         string            `json:"uid"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// StatusResult is the merged reply of a fanned-out status call.
type StatusResult struct {
	// Statuses of the pods the sidecars know, each a PodStatus as the
	// sidecar encoded it.
	Statuses []json.RawMessage
	// Failed holds one entry with Error set for each pod whose status could
	// not be read (unknown sidecar, or the sidecar failed).
	Failed []api.PodStatus
}

// rawStatuser is implemented by sidecars (sidecars.Client) that take and
// return pods and statuses as JSON, so interLink need not decode and
// re-encode them.
type rawStatuser interface {
	StatusRaw(ctx context.Context, pods []json.RawMessage) ([]json.RawMessage, error)
}

// Status groups pods (each a v1.Pod in JSON) by sidecar, asks each sidecar
// concurrently (in batches of StatusBatchSize when set) and merges the
// replies. Pods are forwarded as they came: only their metadata is decoded.
// A pod without metadata.uid is an Invalid error for the whole batch.
func (h *Handler) Status(ctx context.Context, pods []json.RawMessage) (StatusResult, error) {
	refs := make([]podRef, len(pods))
	err := api.ValidateStatusBatch(len(pods), func(i int) (string, string, string, error) {
		err := json.Unmarshal(pods[i], &refs[i])
		m := &refs[i].Metadata
		return m.Namespace, m.Name, m.UID, err
	})
	if err != nil {
		return StatusResult{}, err
	}
	groups, failed := h.groupBySidecar(pods, refs)
	res := StatusResult{Failed: failed}
	var calls []func() statusPart
	for name, g := range groups {
		size := h.cfg.StatusBatchSize
		if size <= 0 {
			size = len(g.raw)
		}
		for lo := 0; lo < len(g.raw); lo += size {
			hi := min(lo+size, len(g.raw))
			noteSidecar(ctx, name)
			calls = append(calls, func() statusPart { return h.statusCall(ctx, name, g.raw[lo:hi], g.refs[lo:hi]) })
		}
	}
	parts := make([]statusPart, len(calls))
	var g errgroup.Group
	g.SetLimit(maxFanOut)
	for i, call := range calls {
		g.Go(func() error { parts[i] = call(); return nil })
	}
	_ = g.Wait() // each part holds its failures
	for _, p := range parts {
		res.Statuses = append(res.Statuses, p.st...)
		res.Failed = append(res.Failed, p.bad...)
	}
	return res, nil
}

// statusGroup is the share of a status batch that goes to one sidecar.
type statusGroup struct {
	raw  []json.RawMessage
	refs []*podRef
}

// groupBySidecar splits pods by the sidecar that runs them. Pods that name
// no configured sidecar are returned as failed.
func (h *Handler) groupBySidecar(pods []json.RawMessage, refs []podRef) (map[string]*statusGroup, []api.PodStatus) {
	groups := map[string]*statusGroup{}
	var failed []api.PodStatus
	for i, raw := range pods {
		ref := &refs[i]
		name, err := h.sidecarFor(ref.Metadata.Namespace, ref.Metadata.Name, ref.Metadata.Annotations)
		if err != nil {
			failed = append(failed, failedRef(ref, err))
			continue
		}
		g := groups[name]
		if g == nil {
			g = &statusGroup{}
			groups[name] = g
		}
		g.raw = append(g.raw, raw)
		g.refs = append(g.refs, ref)
	}
	return groups, failed
}

// statusPart is the outcome of one call to a sidecar: the statuses it
// returned, or, when it failed, a failed status for each of its pods.
type statusPart struct {
	st  []json.RawMessage
	bad []api.PodStatus
}

// statusCall asks sidecar name for the status of pods (refs are their
// metadata).
func (h *Handler) statusCall(ctx context.Context, name string, pods []json.RawMessage, refs []*podRef) statusPart {
	h.cfg.Metrics.batch(name, len(pods))
	st, err := h.statusOf(ctx, h.cfg.Sidecars[name], pods)
	if err == nil {
		return statusPart{st: st}
	}
	h.cfg.Metrics.sidecarError(name, err)
	err = fmt.Errorf("status of %d pods on sidecar %s: %w", len(pods), name, err)
	h.log.WarnContext(ctx, "sidecar status failed; its pods keep their last status", "sidecar", name, "err", err)
	p := statusPart{bad: make([]api.PodStatus, 0, len(refs))}
	for _, ref := range refs {
		p.bad = append(p.bad, failedRef(ref, err))
	}
	return p
}

// statusOf asks one sidecar, as JSON when it can, else through Plugin.Status.
func (h *Handler) statusOf(ctx context.Context, sc Sidecar, pods []json.RawMessage) ([]json.RawMessage, error) {
	if raw, ok := sc.(rawStatuser); ok {
		return raw.StatusRaw(ctx, pods)
	}
	typed := make([]corev1.Pod, len(pods))
	for i, p := range pods {
		if err := json.Unmarshal(p, &typed[i]); err != nil {
			return nil, api.Invalid("pod %d: %w", i, err)
		}
	}
	st, err := sc.Status(ctx, typed)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(st))
	for i := range st {
		if out[i], err = json.Marshal(&st[i]); err != nil {
			return nil, fmt.Errorf("encode status: %w", err)
		}
	}
	return out, nil
}

func failedRef(ref *podRef, err error) api.PodStatus {
	st := api.StatusOf(err)
	m := &ref.Metadata
	return api.PodStatus{PodName: m.Name, PodUID: m.UID, PodNamespace: m.Namespace, Error: &st}
}
