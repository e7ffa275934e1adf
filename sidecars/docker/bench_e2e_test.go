//go:build e2e

package docker

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/sidecarstest"
)

const benchConcurrency = 8

// BenchmarkStart100: 100 single-container pods through the sidecar, until
// all run, and side by side the same 100 containers with `docker run -d`
// (8 at a time each).
func BenchmarkStart100(b *testing.B) {
	const n = 100
	for b.Loop() {
		d := newSidecar(b, testConfig(b))
		pods := make([]*api.RetrievedPodData, n)
		all := make([]corev1.Pod, n)
		for i := range pods {
			pods[i] = pod(fmt.Sprintf("bench-%d", i), "sleep 600")
			pods[i].Pod.Spec.TerminationGracePeriodSeconds = ptr(int64(0))
			all[i] = pods[i].Pod
		}
		start := time.Now()
		if err := sidecarstest.Parallel(n, benchConcurrency, func(i int) error { _, err := d.Create(context.Background(), pods[i]); return err }); err != nil {
			b.Fatal(err)
		}
		for {
			st, err := d.Status(context.Background(), all)
			if err != nil {
				b.Fatal(err)
			}
			running := 0
			for _, s := range st {
				if s.Containers[0].State.Running != nil {
					running++
				}
			}
			if running == n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		sidecar := time.Since(start)
		_ = sidecarstest.Parallel(n, benchConcurrency, func(i int) error { return d.Delete(context.Background(), &pods[i].Pod) })

		start = time.Now()
		if err := sidecarstest.Parallel(n, benchConcurrency, func(i int) error {
			out, err := exec.Command("/usr/bin/docker", "-H", dockerHost, "run", "-d", "--network", "none", "--name", fmt.Sprintf("raw-%d", i),
				"busybox:latest", "sleep", "600").CombinedOutput()
			if err != nil {
				return fmt.Errorf("docker run: %w %s", err, out)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		raw := time.Since(start)
		_ = sidecarstest.Parallel(n, benchConcurrency, func(i int) error {
			return exec.Command("/usr/bin/docker", "-H", dockerHost, "rm", "-f", fmt.Sprintf("raw-%d", i)).Run()
		})
		b.ReportMetric(sidecar.Seconds(), "sidecar-s")
		b.ReportMetric(raw.Seconds(), "docker-run-s")
		b.ReportMetric(100*(sidecar.Seconds()-raw.Seconds())/raw.Seconds(), "%-overhead")
	}
}
