package slurm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

// TestReadUsage: the prober's sample counts for the containers running in
// the status, for their current run; a file the pod could have made up
// (too large, stale, ahead of now, naming a stranger or a container twice,
// figures no node has, not JSON, a symlink) is dropped whole.
func TestReadUsage(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	start := now.Add(-time.Hour)
	names := []string{"setup", "main", "sidecar"}
	running := map[string]time.Time{"main": start, "sidecar": start.Add(time.Minute)}
	entry := func(name string, started time.Time, cpu, rate, mem string) string {
		if rate != "" {
			rate = `,"cpuNanoCores":` + rate
		}
		return fmt.Sprintf(`{"name":%q,"startTime":%q,"cpuCoreNanoSeconds":%s%s,"memoryWorkingSetBytes":%s}`,
			name, started.Format(time.RFC3339Nano), cpu, rate, mem)
	}
	file := func(at time.Time, entries ...string) string {
		return fmt.Sprintf(`{"time":%q,"containers":[%s]}`, at.Format(time.RFC3339Nano), strings.Join(entries, ","))
	}
	mainOK := entry("main", start, "7200000000000", "2000000000", "1048576")
	rate := uint64(2_000_000_000)
	wantMain := &api.PodUsage{Time: now, Containers: []api.ContainerUsage{{Name: "main", StartTime: start,
		CPUCoreNanoSeconds: 7_200_000_000_000, CPUNanoCores: &rate, MemoryWorkingSetBytes: 1 << 20}}}
	tests := []struct {
		name string
		file string
		want *api.PodUsage
	}{
		{"running containers of the current run", file(now, mainOK,
			entry("setup", start, "5", "", "5"),               // not running in this status
			entry("sidecar", start, "5", "", "5")), wantMain}, // another run's figures
		{"first sample: no rate yet", file(now, entry("main", start, "1", "", "2")),
			&api.PodUsage{Time: now, Containers: []api.ContainerUsage{{Name: "main", StartTime: start, CPUCoreNanoSeconds: 1, MemoryWorkingSetBytes: 2}}}},
		{"a little ahead of the sidecar's clock", file(now.Add(2*time.Second), mainOK),
			&api.PodUsage{Time: now.Add(2 * time.Second), Containers: wantMain.Containers}},
		{"no running container sampled", file(now, entry("setup", start, "5", "", "5")), nil},
		{"stale", file(now.Add(-usageMaxAge-time.Second), mainOK), nil},
		{"ahead of now", file(now.Add(time.Minute), mainOK), nil},
		{"no time", `{"containers":[` + mainOK + `]}`, nil},
		{"a stranger", file(now, mainOK, entry("other", start, "5", "", "5")), nil},
		{"a container twice", file(now, mainOK, mainOK), nil},
		{"a path as a name", file(now, mainOK, entry("../../etc/passwd", start, "5", "", "5")), nil},
		{"negative CPU", file(now, entry("main", start, "-5", "", "5")), nil},
		{"fractional memory", file(now, entry("main", start, "5", "", "1.5")), nil},
		{"a string for a number", file(now, entry("main", start, `"5"`, "", "5")), nil},
		{"past uint64", file(now, entry("main", start, "18446744073709551616", "", "5")), nil},
		{"more CPU than a node has had", file(now, entry("main", start, "18446744073709551615", "", "5")), nil},
		{"a rate no node has", file(now, entry("main", start, "5", "18446744073709551615", "5")), nil},
		{"memory no node has", file(now, entry("main", start, "5", "", "18446744073709551615")), nil},
		{"a run started after the sample", file(now, entry("main", now.Add(time.Hour), "5", "", "5")), nil},
		{"no start", `{"time":"` + now.Format(time.RFC3339Nano) + `","containers":[{"name":"main","cpuCoreNanoSeconds":1,"memoryWorkingSetBytes":1}]}`, nil},
		{"not JSON", "main 100 200\n", nil},
		{"too large", file(now, mainOK) + strings.Repeat(" ", maxUsageBytes), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, dir := usageDir(t)
			if err := root.WriteFile(dir+"/"+prober.UsageFile, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got := readUsage(root, dir, names, running, now)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	t.Run("a symlink to another pod's file", func(t *testing.T) {
		root, dir := usageDir(t)
		if err := root.WriteFile("other", []byte(file(now, mainOK)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := root.Symlink("../other", dir+"/"+prober.UsageFile); err != nil {
			t.Fatal(err)
		}
		if got := readUsage(root, dir, names, running, now); got != nil {
			t.Errorf("read through a symlink: %+v", got)
		}
	})
	t.Run("no file", func(t *testing.T) {
		root, dir := usageDir(t)
		if got := readUsage(root, dir, names, running, now); got != nil {
			t.Errorf("%+v", got)
		}
	})
}

// usageDir is a data root with a pod directory in it.
func usageDir(t *testing.T) (*poddata.Dir, string) {
	t.Helper()
	root, err := poddata.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Close() })
	if err := root.MkdirAll("pod", 0o700); err != nil {
		t.Fatal(err)
	}
	return root, "pod"
}

// TestStatusUsage: a running pod's status carries the usage of its running
// containers from the job's sample, read with its other files (no command
// per pod); a pod created where the site had no prober never does.
func TestStatusUsage(t *testing.T) {
	for _, withProber := range []bool{true, false} {
		t.Run(fmt.Sprintf("prober %v", withProber), func(t *testing.T) {
			cfg, dir := fakeSlurm(t)
			cfg.ProberPath = filepath.Join(dir, "no-prober")
			if withProber {
				cfg.ProberPath = cfg.EnvExecPath // any file: it never runs here
			}
			s, err := New(t.Context(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			ctx := context.Background()
			data := testPod()
			if _, err := s.Create(ctx, data); err != nil {
				t.Fatal(err)
			}
			started := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
			rate := uint64(250_000_000)
			sample := prober.Usage{Time: time.Now().UTC(), Containers: []prober.ContainerUsage{
				{Name: "setup", StartTime: started.Add(-time.Minute), CPUCoreNanoSeconds: 3},
				{Name: "main", StartTime: started, CPUCoreNanoSeconds: 15_000_000_000, CPUNanoCores: &rate, MemoryWorkingSetBytes: 64 << 20},
			}}
			b, _ := json.Marshal(sample)
			for name, content := range map[string]string{
				"queue": "100|RUNNING|None\n",
				"jobs/team-a-" + testUID + "/containers/setup.started": started.Add(-time.Minute).Format(time.RFC3339Nano) + "\n",
				"jobs/team-a-" + testUID + "/containers/setup.exit":    "0 " + started.Format(time.RFC3339Nano) + "\n",
				"jobs/team-a-" + testUID + "/containers/main.started":  started.Format(time.RFC3339Nano) + "\n",
				"jobs/team-a-" + testUID + "/" + prober.UsageFile:      string(b),
			} {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			st, err := s.Status(ctx, []corev1.Pod{data.Pod})
			if err != nil || len(st) != 1 {
				t.Fatalf("status: %+v %v", st, err)
			}
			var want *api.PodUsage
			if withProber {
				want = &api.PodUsage{Time: sample.Time, Containers: []api.ContainerUsage{{Name: "main", StartTime: started,
					CPUCoreNanoSeconds: 15_000_000_000, CPUNanoCores: &rate, MemoryWorkingSetBytes: 64 << 20}}}
			}
			if d := cmp.Diff(want, st[0].Usage); d != "" {
				t.Errorf("usage (-want +got):\n%s", d)
			}

			// The job ends: no usage, whatever the file says.
			if err := os.WriteFile(filepath.Join(dir, "queue"), []byte("100|COMPLETED|None\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if st, _ := s.Status(ctx, []corev1.Pod{data.Pod}); len(st) != 1 || st[0].Usage != nil {
				t.Errorf("an ended job's usage: %+v", st)
			}
		})
	}
}
