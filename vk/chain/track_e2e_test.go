//go:build e2e

package chain_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// tracker watches the pods of one namespace and records when each was
// created (the request sent), first seen Running, finished, and gone.
type tracker struct {
	name  string
	start time.Time

	mu                           sync.Mutex
	created, running, done, gone map[string]time.Time
	phase                        map[string]corev1.PodPhase
	pods                         map[string]*corev1.Pod
	samples                      []sample
	lastChange                   time.Time // a pod's phase last changed
	createErrors                 atomic.Int64
	stop                         chan struct{}
	stopped                      sync.WaitGroup
	// vk and il are sampled for their RSS with the phases.
	vk, il *proc
}

// sample is the number of pods in each state at one moment of a run.
type sample struct {
	At                                    float64 // seconds since the run's start
	Created, Pending, Running, Done, Gone int
	VKRSSMB, InterlinkRSSMB               float64
}

func newTracker(t testing.TB, s *stack, ns, name string) *tracker {
	t.Helper()
	tr := &tracker{name: name, start: time.Now(), created: map[string]time.Time{}, running: map[string]time.Time{}, done: map[string]time.Time{},
		gone: map[string]time.Time{}, phase: map[string]corev1.PodPhase{}, pods: map[string]*corev1.Pod{}, stop: make(chan struct{}), vk: s.vk, il: s.il}
	f := informers.NewSharedInformerFactoryWithOptions(s.cs, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { tr.seen(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { tr.seen(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			p := obj.(*corev1.Pod)
			tr.mu.Lock()
			if _, ok := tr.gone[p.Name]; !ok {
				tr.gone[p.Name] = time.Now()
			}
			tr.mu.Unlock()
		},
	})
	f.Start(tr.stop)
	f.WaitForCacheSync(tr.stop)
	tr.stopped.Add(2)
	go tr.sampleLoop()
	go tr.progressLoop()
	t.Cleanup(tr.close)
	return tr
}

func (tr *tracker) close() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
		tr.stopped.Wait()
	}
}

func (tr *tracker) seen(p *corev1.Pod) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if old, ok := tr.phase[p.Name]; !ok || old != p.Status.Phase {
		tr.lastChange = now
	}
	tr.phase[p.Name] = p.Status.Phase
	tr.pods[p.Name] = p
	switch p.Status.Phase {
	case corev1.PodRunning:
		if _, ok := tr.running[p.Name]; !ok {
			tr.running[p.Name] = now
		}
	case corev1.PodSucceeded, corev1.PodFailed:
		if _, ok := tr.done[p.Name]; !ok {
			tr.done[p.Name] = now
		}
	}
}

func (tr *tracker) snapshot() sample {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sm := sample{At: time.Since(tr.start).Seconds(), Created: len(tr.created), Done: len(tr.done), Gone: len(tr.gone)}
	for name, ph := range tr.phase {
		if _, gone := tr.gone[name]; gone {
			continue
		}
		switch ph {
		case corev1.PodRunning:
			sm.Running++
		case corev1.PodPending, "":
			sm.Pending++
		}
	}
	return sm
}

func (tr *tracker) sampleLoop() {
	defer tr.stopped.Done()
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-tr.stop:
			return
		case <-tk.C:
			sm := tr.snapshot()
			if tr.vk != nil && tr.il != nil {
				sm.VKRSSMB, sm.InterlinkRSSMB = tr.vk.usage().RSSMB, tr.il.usage().RSSMB
			}
			tr.mu.Lock()
			tr.samples = append(tr.samples, sm)
			tr.mu.Unlock()
		}
	}
}

// progressLoop prints where the run is every 2 seconds.
func (tr *tracker) progressLoop() {
	defer tr.stopped.Done()
	tk := time.NewTicker(2 * time.Second)
	defer tk.Stop()
	for {
		select {
		case <-tr.stop:
			return
		case <-tk.C:
			sm := tr.snapshot()
			fmt.Fprintf(os.Stderr, "  %-10s %6.1fs  created %6d  pending %6d  running %6d  finished %6d  deleted %6d  create errors %d\n",
				tr.name, sm.At, sm.Created, sm.Pending, sm.Running, sm.Done, sm.Gone, tr.createErrors.Load())
		}
	}
}

// create creates pod, retrying transient errors (the API server may be
// restarting), and records when it was sent.
func (tr *tracker) create(ctx context.Context, s *stack, pod *corev1.Pod) error {
	sent := time.Now()
	var err error
	for i := 0; i < 60; i++ {
		_, err = s.cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			tr.mu.Lock()
			tr.created[pod.Name] = sent
			tr.mu.Unlock()
			return nil
		}
		tr.createErrors.Add(1)
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// createAll creates pods with workers goroutines as fast as they go.
func (tr *tracker) createAll(ctx context.Context, s *stack, pods []*corev1.Pod, workers int) error {
	ch := make(chan *corev1.Pod)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range ch {
				if err := tr.create(ctx, s, p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, p := range pods {
		ch <- p
	}
	close(ch)
	wg.Wait()
	close(errs)
	return <-errs
}

// deleteAll deletes pods (with a grace period of 1 s: the VK deletes each
// job, then the pod) with workers goroutines.
func (tr *tracker) deleteAll(ctx context.Context, s *stack, ns string, names []string, workers int) error {
	ch := make(chan string)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	grace := int64(1)
	for range workers {
		wg.Go(func() {
			for n := range ch {
				for i := 0; ; i++ {
					err := s.cs.CoreV1().Pods(ns).Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: &grace})
					if err == nil || apierrors.IsNotFound(err) {
						break
					}
					if i == 60 {
						firstErr.CompareAndSwap(nil, err)
						break
					}
					time.Sleep(500 * time.Millisecond)
				}
			}
		})
	}
	for _, n := range names {
		ch <- n
	}
	close(ch)
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return nil
}

// waitFor waits until cond holds of the tracker (checked every 100 ms).
func (tr *tracker) waitFor(what string, timeout time.Duration, cond func(sm sample) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		sm := tr.snapshot()
		if cond(sm) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (%+v)", what, timeout, sm)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNoStall is waitFor that fails early when no pod changed phase for
// stall: a stalled chain, told apart from a slow one.
func (tr *tracker) waitNoStall(what string, timeout, stall time.Duration, cond func(sm sample) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		sm := tr.snapshot()
		if cond(sm) {
			return nil
		}
		tr.mu.Lock()
		last := tr.lastChange
		tr.mu.Unlock()
		if !last.IsZero() && time.Since(last) > stall {
			return fmt.Errorf("%s: stalled, no pod changed phase for %s (%+v)", what, stall, sm)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (%+v)", what, timeout, sm)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// latencies returns each pod's create -> Running time in seconds, with the
// pod's creation time (seconds since the run's start), by creation order.
func (tr *tracker) latencies() (at, lat []float64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	type pair struct{ at, lat float64 }
	var ps []pair
	for name, c := range tr.created {
		r, ok := tr.running[name]
		if !ok {
			continue
		}
		ps = append(ps, pair{c.Sub(tr.start).Seconds(), r.Sub(c).Seconds()})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].at < ps[j].at })
	for _, p := range ps {
		at, lat = append(at, p.at), append(lat, p.lat)
	}
	return at, lat
}

// span is the time from the first create to the last pod seen in the
// state given by pick.
func (tr *tracker) span(pick func(*tracker) map[string]time.Time) time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var first, last time.Time
	for _, c := range tr.created {
		if first.IsZero() || c.Before(first) {
			first = c
		}
	}
	for _, r := range pick(tr) {
		if r.After(last) {
			last = r
		}
	}
	return last.Sub(first)
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p + 0.5)
	return sorted[min(i, len(sorted)-1)]
}

func sortedCopy(v []float64) []float64 {
	out := append([]float64(nil), v...)
	sort.Float64s(out)
	return out
}
