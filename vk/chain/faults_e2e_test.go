//go:build e2e

package chain_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// Settings of the fault suite.
const (
	faultPods    = 200
	faultPending = 300 * time.Millisecond
	faultRun     = 2 * time.Second
	// tokenTTL is the lifetime of Hydra's access tokens: the refresher
	// renews them at 3/4 of it, so a burst lasting longer sees a renewal.
	tokenTTL = 15 * time.Second
)

// TestFaults runs each fault in the middle of a burst of pods, on one stack
// (a real control plane, the VK, interlink accepting Ory Hydra's JWTs from
// interlink-token-refresher, the sim), and checks at the end of each: pods
// submitted = jobs created = pods finished, no duplicate job, no orphan job,
// no pod stuck, no pod deleted but by the test.
func TestFaults(t *testing.T) {
	s := startStack(t, options{
		hydraTTL: tokenTTL.String(),
		// The sim as an original plugin: its create is not idempotent, so
		// a create that interLink and the VK let through twice for one pod
		// is a duplicate job (interLink asks such a plugin for the pod's
		// status before each create). Its ping reply is null, as the
		// original Docker plugin's: the node is Ready all the same.
		simEnv: []string{"INTERLINK_SIM_PENDING_DELAY=" + faultPending.String(), "INTERLINK_SIM_RUN_DURATION=" + faultRun.String(),
			"INTERLINK_SIM_ORIGINAL_PLUGIN=true", "INTERLINK_SIM_ORIGINAL_PING=null"},
	})

	// 1,000 pods bound to the node, created 16 at a time, in front of the
	// sim as an original plugin (no version header, arrays, its ping a
	// PingResponse object): all Running, no duplicate job, and never a
	// 30 s stretch in which no pod changes phase.
	t.Run("OriginalPluginBurst", func(t *testing.T) {
		s.originalBurst(t, "original-burst", originalBurstPods, 5*time.Minute)
	})

	// Pods recreated under their names while the old ones are deleted (as
	// a StatefulSet or a rerun does): each new pod gets a job of its own,
	// every old job ends, none is duplicated, and no pod stalls.
	t.Run("NamesReused", func(t *testing.T) {
		s.namesReused(t, "names-reused", faultPods)
	})

	t.Run("VKKilledMidBurst", func(t *testing.T) {
		before := s.simStats(t, "")
		s.faultCase(t, "vk-killed", 0, func(t *testing.T, _ *tracker) {
			s.vk.Stop(syscall.SIGKILL)
			// The kill must cut the burst: pods still without a job then.
			if made := s.simStats(t, "").JobsCreated - before.JobsCreated; made >= faultPods {
				t.Errorf("all %d jobs existed when the VK was killed: the case tests little", made)
			}
			time.Sleep(2 * time.Second)
			s.vk.Run(t)
		})
	})

	t.Run("InterlinkDown60s", func(t *testing.T) {
		var jobsDeletedBefore uint64
		s.faultCase(t, "il-down", 0, func(t *testing.T, tr *tracker) {
			jobsDeletedBefore = s.simStats(t, "").DeleteCalls
			stopped := time.Now()
			s.il.Stop(syscall.SIGTERM)
			e2eenv.Eventually(t, "node NotReady", 30*time.Second, func() error {
				if err := s.nodeReady(corev1.ConditionFalse); err != nil {
					return err
				}
				return nil
			})
			time.Sleep(time.Until(stopped.Add(60 * time.Second)))
			// Still NotReady, nothing deleted, no job cancelled.
			if err := s.nodeReady(corev1.ConditionFalse); err != nil {
				t.Errorf("after 60 s without interLink: %v", err)
			}
			if sm := tr.snapshot(); sm.Gone != 0 {
				t.Errorf("%d pods deleted while interLink was down", sm.Gone)
			}
			// Pods stay because they tolerate the not-ready taint for 300 s
			// (DefaultTolerationSeconds admission); see docs/virtual-node.md.
			tr.mu.Lock()
			for _, p := range tr.pods {
				if !toleratesNotReady(p, 60) {
					t.Errorf("pod %s does not tolerate node.kubernetes.io/not-ready for 60 s: %+v", p.Name, p.Spec.Tolerations)
					break
				}
			}
			tr.mu.Unlock()
			s.il.Run(t)
			e2eenv.Eventually(t, "node Ready again", 60*time.Second, func() error { return s.nodeReady(corev1.ConditionTrue) })
		}, func(t *testing.T) {
			if d := s.simStats(t, "").DeleteCalls - jobsDeletedBefore; d != 0 {
				t.Errorf("%d remote jobs deleted because interLink was down", d)
			}
		})
	})

	t.Run("SidecarRestart", func(t *testing.T) {
		s.faultCase(t, "sim-restart", 0, func(t *testing.T, _ *tracker) {
			s.sim.Stop(syscall.SIGTERM) // it saves its jobs, as a real sidecar keeps them
			time.Sleep(time.Second)
			s.sim.Run(t)
		})
	})

	t.Run("APIServerRestart", func(t *testing.T) {
		s.faultCase(t, "apiserver-restart", 0, func(t *testing.T, _ *tracker) {
			s.clusterSh(t, "restart", s.cluster, "kube-apiserver")
		})
	})

	t.Run("EtcdRestart", func(t *testing.T) {
		s.faultCase(t, "etcd-restart", 0, func(t *testing.T, _ *tracker) {
			s.clusterSh(t, "restart", s.cluster, "etcd")
		})
	})

	t.Run("TokenExpiryMidBurst", func(t *testing.T) {
		// 200 pods at 8 pods/s: 25 s, more than a token's lifetime.
		first, _ := os.ReadFile(s.tokenFile)
		unauth0 := s.interlink401(t)
		s.faultCase(t, "token-expiry", 8, func(t *testing.T, _ *tracker) {})
		last, _ := os.ReadFile(s.tokenFile)
		if string(first) == string(last) {
			t.Error("the token was not renewed during the burst")
		}
		if n := s.interlink401(t) - unauth0; n != 0 {
			t.Errorf("interlink refused %v requests as unauthenticated during the burst", n)
		}
	})

	t.Run("SidecarSlowThenFailing", func(t *testing.T) {
		// Slow from before the burst, so that most pods still wait for
		// their job when the 503s begin.
		const slowFor, failFor = 8 * time.Second, 15 * time.Second
		var atFail sim.Stats
		var failAt time.Time
		before := s.simStats(t, "")
		atStart := before
		slowAt := time.Now()
		s.setFaults(t, sim.Faults{Delay: config.D(3 * time.Second), Duration: config.D(slowFor)})
		s.faultCase(t, "sidecar-faults", 0, func(t *testing.T, _ *tracker) {
			time.Sleep(time.Until(slowAt.Add(slowFor)))
			atFail, failAt = s.simStats(t, ""), time.Now()
			s.setFaults(t, sim.Faults{ErrorRate: 1, Duration: config.D(failFor)})
		}, func(t *testing.T) {
			st := s.simStats(t, "?perSecond=1")
			if st.MaxInFlight[api.PathCreate] > 20 {
				t.Errorf("%d creates in flight at once at the sidecar: more than the VK's 20 workers", st.MaxInFlight[api.PathCreate])
			}
			if st.Faulted == atStart.Faulted {
				t.Error("no call was failed by the fault")
			}
			// While the sidecar answered 503, each pod waiting for its
			// create was retried on its own timer with a growing, jittered
			// backoff: 1, 2, 4, 8 s (halved at most), so at most 6 tries
			// each in 15 s.
			// Pods without a job when the 503s began: created by the
			// burst (the slow phase let only some through) and not yet
			// in the sim.
			waiting := faultPods - int(atFail.JobsCreated-before.JobsCreated) //nolint:gosec // at most a few hundred
			start := int(failAt.Sub(st.Started).Seconds())
			creates := st.PerSecond[api.PathCreate]
			var during []uint32
			total := 0
			for sec := start; sec <= start+int(failFor.Seconds()) && sec < len(creates); sec++ {
				during = append(during, creates[sec])
				total += int(creates[sec])
			}
			t.Logf("create calls per second while the sidecar answered 503: %v (total %d for %d pods waiting for their job)", during, total, waiting)
			if waiting < faultPods/4 {
				t.Errorf("only %d pods were waiting for their job when the 503s began: the case tests little", waiting)
			}
			if total > 6*waiting {
				t.Errorf("%d create calls in %s of 503s for %d waiting pods: retries are not backing off", total, failFor, waiting)
			}
			// No herd: retries thin out (a fixed retry interval would keep
			// the same rate through the window).
			first, second := 0, 0
			for i, n := range during {
				if i < len(during)/2 {
					first += int(n)
				} else {
					second += int(n)
				}
			}
			if second*2 > first {
				t.Errorf("create calls in the first and second half of the 503s: %d and %d; want them to thin out by half at least", first, second)
			}
		})
	})
}

// originalBurstPods is the size of the original-plugin burst.
const originalBurstPods = 1000

// originalBurst creates n pods bound to the node, createWorkers at a time,
// and waits (at most within) until all run, failing as soon as no pod
// changed phase for 30 s or any job was made twice; then deletes them and
// waits until the pods and their jobs are gone. It returns the seconds
// from the first create to the last pod Running.
func (s *stack) originalBurst(t testing.TB, ns string, n int, within time.Duration) float64 {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	s.namespace(t, ns)
	before := s.simStats(t, "")
	tr := newTracker(t, s, ns, ns)
	pods := make([]*corev1.Pod, n)
	names := make([]string, n)
	for i := range pods {
		names[i] = fmt.Sprintf("o-%05d", i)
		pods[i] = s.benchPod(ns, names[i], sim.OutcomeRunning, nil)
	}
	if err := tr.createAll(ctx, s, pods, createWorkers); err != nil {
		t.Fatal(err)
	}
	if err := tr.waitNoStall("all Running", within, 30*time.Second, func(sm sample) bool { return sm.Running == n }); err != nil {
		t.Fatalf("%v; not running: %s", err, stuck(tr))
	}
	secs := tr.span(func(tr *tracker) map[string]time.Time { return tr.running }).Seconds()
	if d := s.simStats(t, "").DuplicateJobs - before.DuplicateJobs; d != 0 {
		t.Errorf("%d duplicate jobs", d)
	}
	if err := tr.deleteAll(ctx, s, ns, names, deleteWorkers); err != nil {
		t.Fatal(err)
	}
	if err := tr.waitFor("all deleted", 10*time.Minute, func(sm sample) bool { return sm.Gone == n }); err != nil {
		t.Fatal(err)
	}
	e2eenv.Eventually(t, "jobs gone", 3*time.Minute, func() error {
		if held := heldIn(s.simStats(t, "?pods=1"), ns); held != 0 {
			return fmt.Errorf("%d jobs held", held)
		}
		return nil
	})
	t.Logf("%s: %d pods Running in %.1fs in front of an original plugin, all deleted in %s", ns, n, secs, time.Since(start).Round(time.Second))
	return secs
}

// namesReused runs n pods, deletes them all at once and creates each name
// again as soon as the API server lets it (its old pod gone), then checks
// that every new pod runs on a job of its own and the old jobs ended.
func (s *stack) namesReused(t *testing.T, ns string, n int) {
	ctx := context.Background()
	s.namespace(t, ns)
	before := s.simStats(t, "")
	pods := make([]*corev1.Pod, n)
	names := make([]string, n)
	for i := range pods {
		names[i] = fmt.Sprintf("r-%03d", i)
		pods[i] = s.benchPod(ns, names[i], sim.OutcomeRunning, nil)
	}
	// running waits until every pod of ns runs and none has a UID of old,
	// failing when no pod's phase changes for 30 s; it returns the UIDs.
	running := func(what string, old map[string]bool) map[string]bool {
		t.Helper()
		last, lastChange := "", time.Now()
		for {
			l, err := s.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			uids, run := map[string]bool{}, 0
			var phases []string
			for _, p := range l.Items {
				uids[string(p.UID)] = true
				phases = append(phases, string(p.UID)+string(p.Status.Phase))
				if p.Status.Phase == corev1.PodRunning && !old[string(p.UID)] && p.DeletionTimestamp == nil {
					run++
				}
			}
			if run == n && len(l.Items) == n {
				return uids
			}
			sort.Strings(phases)
			if now := strings.Join(phases, ","); now != last {
				last, lastChange = now, time.Now()
			} else if time.Since(lastChange) > 30*time.Second {
				t.Fatalf("%s: %d of %d running, no pod changed phase for 30 s", what, run, n)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() {
			if _, err := s.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	first := running("first pods", nil)
	grace := int64(1)
	for _, p := range pods {
		wg.Go(func() {
			if err := s.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
				t.Error(err)
				return
			}
			deadline := time.Now().Add(2 * time.Minute)
			for {
				_, err := s.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				if err == nil {
					return
				}
				if !apierrors.IsAlreadyExists(err) || time.Now().After(deadline) {
					t.Errorf("recreating %s: %v", p.Name, err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	running("recreated pods", first)
	e2eenv.Eventually(t, "one job per new pod", time.Minute, func() error {
		if held := heldIn(s.simStats(t, "?pods=1"), ns); held != n {
			return fmt.Errorf("%d jobs held, want %d (the old ones ended)", held, n)
		}
		return nil
	})
	if d := s.simStats(t, "").DuplicateJobs - before.DuplicateJobs; d != 0 {
		t.Errorf("%d duplicate jobs", d)
	}
	for _, p := range pods {
		wg.Go(func() {
			if err := s.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.waitGone(t, ns)
}

// waitGone waits until namespace ns holds no pod and the sim no job of it.
func (s *stack) waitGone(t *testing.T, ns string) {
	t.Helper()
	e2eenv.Eventually(t, "pods and jobs gone", 2*time.Minute, func() error {
		held := heldIn(s.simStats(t, "?pods=1"), ns)
		l, err := s.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if held != 0 || len(l.Items) != 0 {
			return fmt.Errorf("%d jobs and %d pods left", held, len(l.Items))
		}
		return nil
	})
}

// faultCase creates faultPods pods in namespace ns (at rate pods/s, or at
// once when 0), runs fault when half are created, then checks the counts.
// extra checks run before the pods are deleted.
func (s *stack) faultCase(t *testing.T, ns string, rate int, fault func(*testing.T, *tracker), extra ...func(*testing.T)) {
	ctx := context.Background()
	start := time.Now()
	s.namespace(t, ns)
	before := s.simStats(t, "")
	tr := newTracker(t, s, ns, ns)
	names := make([]string, faultPods)
	created := make(chan error, 1)
	go func() {
		for i := range faultPods {
			names[i] = fmt.Sprintf("f-%03d", i)
			if rate > 0 {
				time.Sleep(time.Second / time.Duration(rate))
			}
			if err := tr.create(ctx, s, s.benchPod(ns, names[i], sim.OutcomeSucceeded, nil)); err != nil {
				created <- err
				return
			}
		}
		created <- nil
	}()
	if err := tr.waitFor("half the pods created", 2*time.Minute, func(sm sample) bool { return sm.Created >= faultPods/2 }); err != nil {
		t.Fatal(err)
	}
	fault(t, tr)
	if err := <-created; err != nil {
		t.Fatalf("creating pods: %v", err)
	}
	if err := tr.waitFor("every pod finished", 3*time.Minute, func(sm sample) bool { return sm.Done == faultPods }); err != nil {
		t.Errorf("%v; stuck: %s", err, stuck(tr))
	}
	s.checkCounts(t, tr, ns, before)
	for _, fn := range extra {
		fn(t)
	}
	// No orphan: deleting the pods ends every job.
	if err := tr.deleteAll(ctx, s, ns, names, 8); err != nil {
		t.Fatal(err)
	}
	s.waitGone(t, ns)
	t.Logf("%s: %d pods submitted, finished and deleted in %s", ns, faultPods, time.Since(start).Round(time.Second))
}

// checkCounts: pods submitted = jobs created = pods finished (Succeeded),
// one job per pod (its JobID annotation names it), no pod deleted.
func (s *stack) checkCounts(t *testing.T, tr *tracker, ns string, before sim.Stats) {
	t.Helper()
	after := s.simStats(t, "?pods=1")
	pods, err := s.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	succeeded := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded {
			succeeded++
		}
	}
	if d := after.DuplicateJobs - before.DuplicateJobs; d != 0 {
		t.Errorf("%d duplicate jobs: creates for a pod that had its job reached the sidecar", d)
	}
	jobs := after.JobsCreated - before.JobsCreated
	if len(pods.Items) != faultPods || jobs != faultPods || succeeded != faultPods {
		t.Errorf("pods submitted %d, present %d, jobs created %d, pods Succeeded %d: want all %d", faultPods, len(pods.Items), jobs, succeeded, faultPods)
	}
	if sm := tr.snapshot(); sm.Gone != 0 {
		t.Errorf("%d pods were deleted", sm.Gone)
	}
	held := map[string]sim.HeldPod{}
	jids := map[string]string{}
	for _, hp := range after.Pods {
		if hp.Namespace != ns {
			continue
		}
		if other, dup := jids[hp.JobID]; dup {
			t.Errorf("job %s held for %s and %s", hp.JobID, other, hp.Name)
		}
		jids[hp.JobID] = hp.Name
		held[hp.UID] = hp
	}
	for _, p := range pods.Items {
		hp, ok := held[string(p.UID)]
		switch {
		case !ok:
			t.Errorf("pod %s has no job", p.Name)
		case p.Annotations[api.AnnotationJobID] != hp.JobID:
			t.Errorf("pod %s: annotation %s=%q, its job is %s", p.Name, api.AnnotationJobID, p.Annotations[api.AnnotationJobID], hp.JobID)
		}
		delete(held, string(p.UID))
	}
	for _, hp := range held {
		t.Errorf("orphan job %s for a pod %s that does not exist", hp.JobID, hp.Name)
	}
}

// stuck lists the pods that did not finish, with their phase and reason.
func stuck(tr *tracker) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for name, p := range tr.pods {
		if _, ok := tr.done[name]; !ok {
			out = append(out, fmt.Sprintf("%s %s %s %q", name, p.Status.Phase, p.Status.Reason, p.Status.Message))
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("and %d more", len(out)-10))
	}
	return strings.Join(out, "; ")
}

func toleratesNotReady(p *corev1.Pod, seconds int64) bool {
	for _, tl := range p.Spec.Tolerations {
		if tl.Key == "node.kubernetes.io/not-ready" && tl.Effect == corev1.TaintEffectNoExecute &&
			(tl.TolerationSeconds == nil || *tl.TolerationSeconds >= seconds) {
			return true
		}
	}
	return false
}

func (s *stack) setFaults(t *testing.T, f sim.Faults) {
	t.Helper()
	var got sim.Faults
	if err := s.simDo(http.MethodPost, sim.PathFaults, f, &got); err != nil {
		t.Fatal(err)
	}
}

// interlink401 reads interlink's count of requests its proxy refused, from
// its /metrics (behind the same authentication).
func (s *stack) interlink401(t *testing.T) float64 {
	t.Helper()
	tok, err := os.ReadFile(s.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+s.ilPort+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams, err := parseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return vkMetrics(fams).sum("interlink_proxy_auth_requests_total", func(l map[string]string) bool { return l["outcome"] != "ok" })
}
