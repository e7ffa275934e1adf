package vk

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/vk/services"
)

// Polling: one batched status call for the node's pods each interval, and
// what its reply does to them (status.go computes each status).

// missingPolls is how many status polls in a row may miss a pod before it is
// declared lost (its sidecar no longer knows its job).
const missingPolls = 5

// RunStatus reads the status of every running pod in one call each
// interval, and retries the submissions that failed, until ctx ends.
func (p *Provider) RunStatus(ctx context.Context) error {
	// The retried submissions are cancelled with ctx; RunStatus returns
	// once they ended.
	defer p.inflight.Wait()
	p.inflight.Go(func() { p.retryDue(ctx) })
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.retrySubmits(ctx)
			p.syncStatus(ctx)
		}
	}
}

// statusStreamer is implemented by clients (functions/client) that hand
// each status over as it is read, as JSON, so that a poll of 10,000 pods
// never holds all their statuses at once, and a status identical to the
// last poll's is not decoded again.
type statusStreamer interface {
	StatusEach(ctx context.Context, pods []*corev1.Pod, fn func(raw json.RawMessage) error) error
}

// syncStatus polls once. A failed call leaves every pod's last status (but
// for the statuses a streamed reply gave before it failed).
func (p *Provider) syncStatus(ctx context.Context) {
	p.mu.Lock()
	pods := make([]*corev1.Pod, 0, len(p.pods))
	for _, t := range p.pods {
		ph := t.pod.Status.Phase
		if t.jobID != "" && ph != corev1.PodSucceeded && ph != corev1.PodFailed {
			// As sent to /create: without the containers kept out.
			pods = append(pods, offloaded(t.pod))
		}
	}
	p.mu.Unlock()
	if len(pods) == 0 {
		p.lastPoll.Store(time.Now().UnixNano()) // nothing to be stale
		return
	}
	// seen tells, for each pod asked about, whether the reply had it.
	seen := make(map[types.UID]bool, len(pods))
	for _, pod := range pods {
		seen[pod.UID] = false
	}
	now := metav1.Now()
	var changed []*corev1.Pod
	// apply applies a status; h is the hash of its JSON (0: none).
	apply := func(st *api.PodStatus, h uint64) {
		uid := types.UID(st.PodUID)
		if was, asked := seen[uid]; !asked || was {
			return
		}
		seen[uid] = true
		if cp := p.applyStatus(uid, st, h, now); cp != nil {
			changed = append(changed, cp)
		}
	}
	pollStart := time.Now()
	var err error
	if ss, ok := p.il.(statusStreamer); ok {
		// A status that is byte for byte the one the last poll applied to
		// the same, unchanged pod would compute the same status again: it
		// is only counted as seen. At 10,000 steady pods, most of a poll.
		raws := make(map[uint64]types.UID, len(p.lastRaw))
		err = ss.StatusEach(ctx, pods, func(raw json.RawMessage) error {
			h := maphash.Bytes(p.rawSeed, raw)
			if uid, ok := p.lastRaw[h]; ok {
				if was, asked := seen[uid]; asked && !was && p.unchanged(uid, h) {
					seen[uid] = true
					raws[h] = uid
					p.metrics.statuses.WithLabelValues("unchanged").Inc()
					return nil
				}
			}
			var st api.PodStatus
			if err := json.Unmarshal(raw, &st); err != nil {
				return err
			}
			p.metrics.statuses.WithLabelValues("decoded").Inc()
			apply(&st, h)
			if seen[types.UID(st.PodUID)] {
				raws[h] = types.UID(st.PodUID)
			}
			return nil
		})
		p.lastRaw = raws
	} else {
		var sts []api.PodStatus
		if sts, err = p.il.Status(ctx, pods); err == nil {
			for i := range sts {
				apply(&sts[i], 0)
			}
		}
	}
	p.metrics.pollDuration.Observe(time.Since(pollStart).Seconds())
	if err != nil {
		p.metrics.pollErrors.Inc()
		p.log.Warn("status poll failed; pods keep their last status", "pods", len(pods), "err", err)
	} else {
		p.lastPoll.Store(time.Now().UnixNano())
		// Only a whole reply tells which pods the sidecar no longer knows.
		changed = append(changed, p.markLost(pods, seen, now)...)
	}
	for _, pod := range changed {
		p.pushIfTracked(pod)
	}
	p.resync(ctx, time.Now())
}

// unchanged tells whether the tracked pod uid was last given a status whose
// JSON hashed to h and has not changed since; it then counts as seen.
func (p *Provider) unchanged(uid types.UID, h uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.pods[uid]
	if !ok || h == 0 || t.rawHash != h || t.hashedPod != t.pod {
		return false
	}
	t.missing = 0
	return true
}

// applyStatus gives the tracked pod uid the status its sidecar reported in
// st (whose JSON hashed to h, 0 if unknown), and returns the pod with its
// new status, or nil when nothing changed.
func (p *Provider) applyStatus(uid types.UID, st *api.PodStatus, h uint64, now metav1.Time) *corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.pods[uid]
	if !ok || st.Error != nil {
		return nil // deleted meanwhile, or its sidecar failed: keep the last status
	}
	t.missing = 0
	defer func() { t.rawHash, t.hashedPod = h, t.pod }()
	next := podStatus(t.pod, st, p.hostIP, now)
	p.setUsageLocked(t, st.Usage, &next)
	if p.exposeServices && services.Exposed(t.pod) {
		// The EndpointSlice controller would publish the site's address as
		// a second endpoint of the pod's Services, one the cluster does not
		// reach: the node's forwarders are its endpoints.
		next.PodIP, next.PodIPs = "", nil
	}
	if ip, err := annotatedPodIP(t.pod, p.podNet); err != nil {
		p.log.Warn("pod IP annotation ignored", "pod", t.pod.Name, "namespace", t.pod.Namespace, "err", err)
	} else if ip != "" {
		// The original's pod-ip annotation: the pod's address.
		next.PodIP, next.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	}
	if equality.Semantic.DeepEqual(next, t.pod.Status) {
		return nil
	}
	if next.Phase == corev1.PodRunning && t.pod.Status.Phase != corev1.PodRunning {
		p.metrics.createToRunning.Observe(now.Sub(t.pod.CreationTimestamp.Time).Seconds())
	}
	// Tracked pods are never changed in place: the new one shares its
	// metadata and spec with the last.
	cp := *t.pod
	cp.Status = next
	t.pod = &cp
	return &cp
}

// markLost counts a missed poll for each of pods that a whole reply did not
// have (seen), and fails those missed missingPolls times in a row. It
// returns the pods it failed.
func (p *Provider) markLost(pods []*corev1.Pod, seen map[types.UID]bool, now metav1.Time) []*corev1.Pod {
	var lost []*corev1.Pod
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pod := range pods {
		t, ok := p.pods[pod.UID]
		if seen[pod.UID] || !ok {
			continue
		}
		t.missing++
		if t.missing < missingPolls {
			continue
		}
		cp := t.pod.DeepCopy()
		cp.Status = jobLostStatus(cp.Status, t.jobID, now)
		t.pod, t.usage = cp, nil
		lost = append(lost, cp)
		p.log.Warn("pod's job lost by its sidecar", "pod", pod.Name, "namespace", pod.Namespace, "job_id", t.jobID)
	}
	return lost
}
