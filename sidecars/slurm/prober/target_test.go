package prober

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/seed-3f807049/interlink/sidecars/probe"
	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
)

func TestExecArgv(t *testing.T) {
	got := execArgv([]string{"podman", "exec", PIDPlaceholder, "x" + PIDPlaceholder, "--"}, 42, []string{PIDPlaceholder, "$(id)"})
	want := []string{"podman", "exec", "42", "x" + PIDPlaceholder, "--", PIDPlaceholder, "$(id)"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// fakeProc is a proc tree: each process's parent and namespaces (kind →
// id), "self" being the prober.
type fakeProc map[string]struct {
	ppid int
	ns   map[string]string
}

func (f fakeProc) write(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for name, p := range f {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(name)
		_ = os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(pid, statFields{ppid: p.ppid, start: 777})), 0o644)
		for kind, id := range p.ns {
			_ = os.Symlink(kind+":["+id+"]", filepath.Join(dir, "ns", kind))
		}
	}
	return root
}

// host are the prober's namespaces.
var host = map[string]string{"mnt": "1", "user": "2", "ipc": "3", "uts": "4", "net": "5", "pid": "6"}

func with(kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range host {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestNsenterArgv: nsenter enters the mount namespace of the container's
// first process, and the others only where they differ from the
// prober's; a process in a user namespace nested in the container's is
// passed over.
func TestNsenterArgv(t *testing.T) {
	c := &Container{Nsenter: "/usr/bin/nsenter", Inner: []string{"/.interlink/envexec", "/.interlink/env", "--"}}
	cmd := []string{"cat", "/etc/hostname; id"}
	base := []string{"/usr/bin/nsenter", "--target=%d", "--mount", "--root", "--wd"}
	tail := append([]string{"--"}, append(c.Inner, cmd...)...)
	for _, tc := range []struct {
		name    string
		tree    fakeProc
		nested  int // its user namespace is nested in the container's
		outside int // its root is not the image's: no helper in it
		want    int
		options []string
	}{
		{"ch-run: the recorded pid", fakeProc{"self": {1, host}, "10": {1, with("mnt", "m", "user", "u")}},
			0, 0, 10, []string{"--user", "--preserve-credentials"}},
		{"apptainer: a descendant", fakeProc{"self": {1, host}, "10": {1, host}, "11": {10, host},
			"12": {11, with("mnt", "m", "pid", "p", "ipc", "i")}, "13": {10, with("mnt", "x")}},
			0, 0, 13, nil},
		{"breadth first, own pid ns", fakeProc{"self": {1, host}, "10": {1, host}, "11": {10, host},
			"12": {11, with("mnt", "m", "pid", "p", "ipc", "i", "uts", "h", "net", "n")}},
			0, 0, 12, []string{"--ipc", "--uts", "--net", "--pid"}},
		{"nested user namespace passed over", fakeProc{"self": {1, host}, "10": {1, host},
			"11": {10, with("mnt", "evil", "user", "evil")}, "12": {10, with("mnt", "m", "user", "u")}},
			11, 0, 12, []string{"--user", "--preserve-credentials"}},
		{"not running yet", fakeProc{"self": {1, host}, "10": {1, host}, "11": {10, host}}, 0, 0, 0, nil},
		// Apptainer's starter has a mount namespace of its own, but its
		// root is not the image's (pid 99 never holds the helper).
		{"apptainer: the starter's root is not the image", fakeProc{"self": {1, host}, "10": {1, with("mnt", "s", "user", "u")},
			"12": {10, with("mnt", "m", "user", "u")}}, 0, 10, 12, []string{"--user", "--preserve-credentials"}},
		{"not in the image yet", fakeProc{"self": {1, host}, "10": {1, with("mnt", "s", "user", "u")}}, 0, 10, 0, nil},
	} {
		proc := procFS{root: tc.tree.write(t), self: "self", userNSDepth: func(pid int) (int, bool) {
			if pid == tc.nested {
				return 2, true
			}
			return 1, true
		}, rootHolds: func(pid int, name string) bool {
			return name == c.Inner[0] && pid != tc.outside
		}}
		got, err := nsenterArgv(c, 10, proc, cmd)
		if tc.want == 0 {
			if !errors.Is(err, errNotRunning) {
				t.Errorf("%s: %q, %v; want %v", tc.name, got, err, errNotRunning)
			}
			continue
		}
		want := append(append(append([]string{}, base...), tc.options...), tail...)
		want[1] = fmt.Sprintf(want[1], tc.want)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

// TestRunCapped: the exit code, 128+N for a signal, the output capped.
func TestRunCapped(t *testing.T) {
	code, out, err := runCapped(t.Context(), []string{"/bin/sh", "-c", `head -c 20000 /dev/zero; echo "$0" >&2; exit 3`, "x"}, nil)
	if err != nil || code != 3 || len(out) != probe.MaxOutputBytes {
		t.Errorf("exit %d, %d bytes, %v", code, len(out), err)
	}
	code, _, err = runCapped(t.Context(), []string{"/bin/sh", "-c", `kill -TERM $$`}, nil)
	if err != nil || code != 128+15 {
		t.Errorf("exit %d, %v; want 143", code, err)
	}
	// A timeout kills the whole process group, grandchildren included.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, _, _ = runCapped(ctx, []string{"/bin/sh", "-c", `sleep 100 & sleep 100`}, nil)
	if d := time.Since(began); d > 3*time.Second { // the sleeps would take 100 s
		t.Errorf("a timed out command took %v", d)
	}
	// The nsenter mode's command sees none of the prober's variables.
	t.Setenv("JOB_SECRET", "x")
	_, out, _ = runCapped(t.Context(), []string{"/usr/bin/env"}, []string{"PATH=" + envexec.DefaultPath})
	if string(out) != "PATH="+envexec.DefaultPath+"\n" {
		t.Errorf("env: %q", out)
	}
}

// The helper's cap is the kubelet's, as package probe has it.
func TestMessageCap(t *testing.T) {
	if envexec.MaxMessageBytes != probe.MaxMessageBytes {
		t.Errorf("envexec.MaxMessageBytes %d, probe.MaxMessageBytes %d", envexec.MaxMessageBytes, probe.MaxMessageBytes)
	}
}
