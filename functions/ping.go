package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/functions/api"
)

// ping asks every sidecar concurrently and aggregates: resources summed,
// taints merged, each sidecar's health listed. It fails (503) only when no
// sidecar answers.
func (h *Handler) ping(w http.ResponseWriter, r *http.Request) error {
	agg := h.aggregate(r.Context(), h.pingEach(r.Context()))
	w.Header().Set("Content-Type", "application/json")
	if agg.Status == api.PingDown {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return json.NewEncoder(w).Encode(agg)
}

// pingReply is one sidecar's answer to a ping.
type pingReply struct {
	res api.PingResponse
	err error
}

// pingEach pings every sidecar concurrently; the replies are in the order
// of h.names.
func (h *Handler) pingEach(ctx context.Context) []pingReply {
	replies := make([]pingReply, len(h.names))
	var g errgroup.Group
	g.SetLimit(maxFanOut)
	for i, name := range h.names {
		g.Go(func() error {
			res, err := h.cfg.Sidecars[name].Ping(ctx)
			replies[i] = pingReply{res, err}
			return nil
		})
	}
	_ = g.Wait() // each reply holds its error
	return replies
}

// aggregate merges the sidecars' replies (in the order of h.names) into
// interLink's: ok when all are up, down when none is, degraded otherwise.
func (h *Handler) aggregate(ctx context.Context, replies []pingReply) api.PingResponse {
	var sum resources
	agg := api.PingResponse{}
	up := 0
	for i, name := range h.names {
		rp := replies[i]
		health := api.SidecarHealth{Name: name, Up: rp.err == nil}
		h.cfg.Metrics.up(name, rp.err == nil)
		h.cfg.Metrics.sidecarError(name, rp.err)
		if rp.err != nil {
			health.Error = rp.err.Error()
			h.log.WarnContext(ctx, "sidecar ping failed", "sidecar", name, "err", rp.err)
		} else {
			up++
			if err := rp.res.Problem; err != nil {
				h.log.WarnContext(ctx, "sidecar's ping reply is not a ping response; its resources are not read", "sidecar", name, "err", err)
			}
			if err := sum.add(rp.res.Resources); err != nil {
				h.log.WarnContext(ctx, "sidecar reported bad resources; ignored", "sidecar", name, "err", err)
			}
			if rp.res.Taints != nil {
				if agg.Taints == nil {
					agg.Taints = &[]api.Taint{}
				}
				*agg.Taints = append(*agg.Taints, *rp.res.Taints...)
			}
		}
		agg.Sidecars = append(agg.Sidecars, health)
	}
	agg.Resources = sum.result()
	switch up {
	case len(h.names):
		agg.Status = api.PingOK
	case 0:
		agg.Status = api.PingDown
	default:
		agg.Status = api.PingDegraded
	}
	return agg
}

// resources sums sidecars' capacities.
type resources struct {
	cpu, mem, pods resource.Quantity
	any            bool
	acc            map[string]int
	accOrder       []string
}

func (s *resources) add(r *api.Resources) error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, f := range []struct {
		v   string
		dst *resource.Quantity
	}{{r.CPU, &s.cpu}, {r.Memory, &s.mem}, {r.Pods, &s.pods}} {
		if f.v == "" {
			continue
		}
		q, err := resource.ParseQuantity(f.v)
		if err != nil {
			errs = append(errs, fmt.Errorf("quantity %q: %w", f.v, err))
			continue
		}
		f.dst.Add(q)
		s.any = true
	}
	for _, a := range r.Accelerators {
		if s.acc == nil {
			s.acc = map[string]int{}
		}
		if _, ok := s.acc[a.ResourceType]; !ok {
			s.accOrder = append(s.accOrder, a.ResourceType)
		}
		s.acc[a.ResourceType] += int(a.Available)
		s.any = true
	}
	return errors.Join(errs...)
}

func (s *resources) result() *api.Resources {
	if !s.any {
		return nil
	}
	out := &api.Resources{}
	if !s.cpu.IsZero() {
		out.CPU = s.cpu.String()
	}
	if !s.mem.IsZero() {
		out.Memory = s.mem.String()
	}
	if !s.pods.IsZero() {
		out.Pods = s.pods.String()
	}
	for _, t := range s.accOrder {
		out.Accelerators = append(out.Accelerators, api.Accelerator{ResourceType: t, Available: api.Count(s.acc[t])})
	}
	return out
}
