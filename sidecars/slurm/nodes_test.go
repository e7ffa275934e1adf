package slurm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPodIPIsTheJobsNode: a running pod's IP is its job's node's address
// (sinfo's NodeAddr), asked once per node; a pending pod has none, and a
// node sinfo gives a loopback address for is this host.
func TestPodIPIsTheJobsNode(t *testing.T) {
	s, dir, data := createdPod(t)
	ctx := context.Background()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nodes.json", `{"nodes":[{"name":"cn07","address":"10.20.30.40"},{"name":"other","address":"10.9.9.9"}]}`)
	write("queue", "100|PENDING|Priority|n/a\n")
	st, err := s.Status(ctx, []corev1.Pod{data.Pod})
	if err != nil || len(st) != 1 || st[0].PodIP != "" {
		t.Fatalf("pending: %+v %v, want no pod IP", st, err)
	}
	write("queue", "100|RUNNING|None|cn07\n")
	for range 3 {
		st, err = s.Status(ctx, []corev1.Pod{data.Pod})
		if err != nil || st[0].PodIP != "10.20.30.40" {
			t.Fatalf("running: %+v %v, want pod IP 10.20.30.40", st, err)
		}
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "sinfo.calls"))
	if n := strings.Count(string(calls), "\n"); n != 1 || !strings.Contains(string(calls), "--nodes=cn07") {
		t.Errorf("sinfo calls %q, want one for cn07", calls)
	}
	// A hostile node name in squeue's answer is never passed on.
	write("queue", "100|RUNNING|None|-x;rm\n")
	if st, _ = s.Status(ctx, []corev1.Pod{data.Pod}); st[0].PodIP != "" {
		t.Errorf("odd node name: pod IP %q, want none", st[0].PodIP)
	}
}

func TestResolveIP(t *testing.T) {
	ctx := context.Background()
	if got := resolveIP(ctx, "192.0.2.7"); got != "192.0.2.7" {
		t.Errorf("an IP: %q", got)
	}
	if got := resolveIP(ctx, ""); got != "" {
		t.Errorf("nothing: %q", got)
	}
	if got := resolveIP(ctx, "0.0.0.0"); got != "" {
		t.Errorf("unspecified: %q", got)
	}
	want := ""
	if ip := hostIP(); ip != nil {
		want = ip.String()
	}
	if got := resolveIP(ctx, "127.0.0.1"); got != want {
		t.Errorf("loopback: %q, want this host's %q", got, want)
	}
}
