package prober

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadSpec: every problem of a Spec is reported at once.
func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, SpecFile)
	_ = os.WriteFile(good, []byte(`{"gracePeriodSeconds": 5, "containers": [{"name": "app", "host": "",
		"nsenter": "/usr/bin/nsenter", "livenessProbe": {"tcpSocket": {"port": 8080}}}]}`), 0o600)
	if s, err := ReadSpec(good); err != nil || s.GracePeriodSeconds != 5 || s.Containers[0].LivenessProbe == nil {
		t.Errorf("ReadSpec: %+v, %v", s, err)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"containers": [{"name": "../x"}, {"name": "a", "nsenter": "nsenter"},
		{"name": "a", "readinessProbe": {}}]}`), 0o600)
	_, err := ReadSpec(bad)
	for _, want := range []string{`"../x" is not a file name`, `"a" appears twice`, "names no program", "readinessProbe"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	if code := Main([]string{"interlink-prober", "probe", good}, os.Stderr); code != 2 {
		t.Errorf("a bad mode: exit %d", code)
	}
}

// TestForeignPIDIgnored: a pid file naming a process that is not the
// job's starts no run.
func TestForeignPIDIgnored(t *testing.T) {
	p := newProber(t, Spec{Containers: []Container{{Name: "app"}}})
	other := p.startProcess(t, "other", "sleep", "100")
	p.ancestor = other.Process.Pid
	p.startProcess(t, "app", "sleep", "100")
	runProber(t, p)
	time.Sleep(10 * p.poll)
	if _, err := os.Stat(filepath.Join(p.dir, "app"+stateSuffix)); err == nil {
		t.Error("a run started for a process outside the job")
	}
}
