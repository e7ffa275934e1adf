package slurm

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/seed-3f807049/interlink/functions/api"
)

// TestLogTailCountsAPartialLastLine: a line still being written counts as
// the last line for Tail: --tail=1 gives it alone, not with the line
// before (which made kubectl logs --tail=1 show two pieces of a long line).
func TestLogTailCountsAPartialLastLine(t *testing.T) {
	s, dir, data := createdPod(t)
	ctx := context.Background()
	podDir := filepath.Join(dir, "jobs", "team-a-"+testUID, containersDir)
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		t.Fatal(err)
	}
	log := "2026-01-01T00:00:00Z one\n2026-01-01T00:00:01Z two\n2026-01-01T00:00:02Z thr"
	if err := os.WriteFile(filepath.Join(podDir, "main.log"), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	for tail, want := range map[int]string{1: "thr\n", 2: "two\nthr\n", 0: "one\ntwo\nthr\n"} {
		rc, err := s.Logs(ctx, &api.LogRequest{PodUID: string(data.Pod.UID), Namespace: data.Pod.Namespace, PodName: data.Pod.Name,
			ContainerName: "main", Opts: api.ContainerLogOpts{Tail: tail}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		_ = rc.Close()
		if string(got) != want {
			t.Errorf("tail %d: %q, want %q", tail, got, want)
		}
	}
}
