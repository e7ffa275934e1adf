package vk

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// TestDroppedStatusWriteIsResent runs virtual-kubelet's real pod controller
// on a fake API server whose first pods/status write fails, with a
// controller that, as after its 20 tries, forgets the failed write at once.
// The pod stays Pending in the API server, though the provider pushed
// Running (pushing it again would be skipped as equal to the last); the
// resync writes it itself and it turns Running.
func TestDroppedStatusWriteIsResent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset()
	var failed atomic.Int32
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" && failed.Add(1) == 1 {
			return true, nil, apierrors.NewInternalError(errors.New("etcd is slow"))
		}
		return false, nil, nil
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", UID: "u1"},
		Spec:   corev1.PodSpec{NodeName: "vk", Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	if _, err := cs.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	il := &fakeIL{statuses: map[string]api.PodStatus{}}
	p, _ := testProvider(t, il)
	p.client, p.podLister = cs, f.Core().V1().Pods().Lister()
	p.resyncAfter = 100 * time.Millisecond
	giveUp := func(_ context.Context, _ string, _ int, _ time.Time, err error) (*time.Duration, error) {
		return nil, err
	}
	fast := func() workqueue.TypedRateLimiter[any] {
		return workqueue.NewTypedItemExponentialFailureRateLimiter[any](time.Millisecond, time.Millisecond)
	}
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient: cs.CoreV1(), PodInformer: f.Core().V1().Pods(), EventRecorder: record.NewFakeRecorder(100), Provider: p,
		ConfigMapInformer: f.Core().V1().ConfigMaps(), SecretInformer: f.Core().V1().Secrets(), ServiceInformer: f.Core().V1().Services(),
		SyncPodsFromKubernetesRateLimiter: fast(), DeletePodsFromKubernetesRateLimiter: fast(),
		SyncPodStatusFromProviderRateLimiter: fast(), SyncPodStatusFromProviderShouldRetryFunc: giveUp,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	go func() { _ = pc.Run(ctx, 1) }()
	<-pc.Ready()
	phase := func() corev1.PodPhase {
		got, err := cs.CoreV1().Pods("ns").Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Status.Phase
	}
	e2eenv.Eventually(t, "pod submitted", 5*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if t, ok := p.pods["u1"]; !ok || t.jobID == "" {
			return errors.New("no job ID yet")
		}
		return nil
	})
	il.statuses["u1"] = api.PodStatus{PodUID: "u1", JobID: "job-u1", Containers: []corev1.ContainerStatus{{Name: "c", State: running()}}}
	p.syncStatus(ctx)
	e2eenv.Eventually(t, "the write failed", 5*time.Second, func() error {
		if failed.Load() == 0 {
			return errors.New("no pods/status write yet")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if ph := phase(); ph != corev1.PodPending {
		t.Fatalf("API server shows %s after the dropped write; the test tests nothing", ph)
	}
	if testutil.ToFloat64(p.metrics.resends) != 0 {
		t.Fatal("resent before any drift was timed")
	}
	e2eenv.Eventually(t, "pod Running in the API server", 5*time.Second, func() error {
		p.syncStatus(ctx)
		if ph := phase(); ph != corev1.PodRunning {
			return errors.New("still " + string(ph))
		}
		return nil
	})
	if n := testutil.ToFloat64(p.metrics.resends); n != 1 {
		t.Errorf("resends = %v, want 1", n)
	}
	// The job ID rides on status writes: the lost write's, too.
	if got, _ := cs.CoreV1().Pods("ns").Get(ctx, "a", metav1.GetOptions{}); got.Annotations[api.AnnotationJobID] != "job-u1" {
		t.Errorf("job ID annotation %q after the resync, want job-u1", got.Annotations[api.AnnotationJobID])
	}
	// Once the API server agrees, nothing is pushed again.
	time.Sleep(300 * time.Millisecond)
	p.syncStatus(ctx)
	p.syncStatus(ctx)
	if n := testutil.ToFloat64(p.metrics.resends); n != 1 {
		t.Errorf("resends = %v after the API server agreed, want 1", n)
	}
}

// TestSameState: times do not count, states do.
func TestSameState(t *testing.T) {
	a := runningStatus()
	b := *a.DeepCopy()
	b.StartTime = &metav1.Time{Time: a.StartTime.Add(300 * time.Millisecond)}
	if !sameState(&a, &b) {
		t.Error("statuses differing in a time only differ")
	}
	b.ContainerStatuses[0].RestartCount++
	if sameState(&a, &b) {
		t.Error("a restart is not seen")
	}
	c := *a.DeepCopy()
	c.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}
	d := *c.DeepCopy()
	d.ContainerStatuses[0].State.Terminated.ExitCode = 2
	if sameState(&a, &c) || sameState(&c, &d) {
		t.Error("a container's end or exit code is not seen")
	}
}
