//go:build e2e

package slurm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/sidecarstest"
)

// The benchmarks submit held jobs (--hold), so that none runs and the
// numbers are Slurm's submission and query paths, then cancel them.

const benchConcurrency = 8

func heldPods(n int) []*api.RetrievedPodData {
	pods := make([]*api.RetrievedPodData, n)
	for i := range pods {
		pods[i] = e2ePod(fmt.Sprintf("bench-%d", i), "true")
		pods[i].Pod.Annotations[AnnotationFlags] = "--hold"
	}
	return pods
}

func cancelAll(b *testing.B) {
	b.Helper()
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	if out, err := exec.Command("scancel", "--user="+user).CombinedOutput(); err != nil {
		b.Logf("scancel: %v %s", err, out)
	}
}

// BenchmarkSubmit500: 500 pods through the sidecar, and the same 500
// scripts with plain sbatch, side by side (8 at a time each). The two
// alternate in rounds of 100, after a warm-up, so that neither gains from
// the order (slurmctld slows down as it holds more jobs).
func BenchmarkSubmit500(b *testing.B) {
	const n, round = 500, 100
	for b.Loop() {
		dir := b.TempDir()
		_ = os.Chmod(dir, 0o755)
		s := newSidecar(b, dir)
		pods := heldPods(n)
		// The same scripts, written beforehand for plain sbatch.
		jobs := make([][]string, n)
		for i, p := range pods {
			d := filepath.Join(dir, "raw", fmt.Sprint(i))
			j, err := buildJob(&s.cfg, nil, p, d)
			if err != nil {
				b.Fatal(err)
			}
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "job.sh"), []byte(j.script), 0o700); err != nil {
				b.Fatal(err)
			}
			jobs[i] = append(append([]string{}, j.args...), filepath.Join(d, "job.sh"))
		}
		sbatch := func(i int) error {
			if out, err := exec.Command("sbatch", jobs[i]...).CombinedOutput(); err != nil {
				return fmt.Errorf("sbatch: %w %s", err, out)
			}
			return nil
		}
		if err := sidecarstest.Parallel(20, benchConcurrency, sbatch); err != nil { // warm-up
			b.Fatal(err)
		}
		cancelAll(b)
		var sidecar, raw time.Duration
		for r := 0; r < n; r += round {
			start := time.Now()
			if err := sidecarstest.Parallel(round, benchConcurrency, func(i int) error { _, err := s.Create(context.Background(), pods[r+i]); return err }); err != nil {
				b.Fatal(err)
			}
			sidecar += time.Since(start)
			start = time.Now()
			if err := sidecarstest.Parallel(round, benchConcurrency, func(i int) error { return sbatch(r + i) }); err != nil {
				b.Fatal(err)
			}
			raw += time.Since(start)
			cancelAll(b)
		}
		b.ReportMetric(float64(n)/sidecar.Seconds(), "sidecar-pods/s")
		b.ReportMetric(float64(n)/raw.Seconds(), "sbatch-jobs/s")
		b.ReportMetric(100*raw.Seconds()/sidecar.Seconds(), "%-of-sbatch")
	}
}

// BenchmarkStatus1000: one status poll for 1,000 pods with jobs.
func BenchmarkStatus1000(b *testing.B) {
	const n = 1000
	dir := b.TempDir()
	_ = os.Chmod(dir, 0o755)
	s := newSidecar(b, dir)
	pods := heldPods(n)
	if err := sidecarstest.Parallel(n, benchConcurrency, func(i int) error { _, err := s.Create(context.Background(), pods[i]); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancelAll(b) })
	all := make([]corev1.Pod, n)
	for i := range pods {
		all[i] = pods[i].Pod
	}
	var calls atomic.Int64
	s.cmd.observe = func(string, time.Duration, error) { calls.Add(1) }
	for b.Loop() {
		st, err := s.Status(context.Background(), all)
		if err != nil || len(st) != n {
			b.Fatalf("status: %d entries, %v", len(st), err)
		}
	}
	b.ReportMetric(float64(calls.Load())/float64(b.N), "slurm-commands/poll")
}
