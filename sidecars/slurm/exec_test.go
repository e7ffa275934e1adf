package slurm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-3f807049/interlink/functions/api"
)

// TestExec: kubectl exec runs srun into the pod's job with the prober's
// exec mode and the container's entry; srun's own exit-code line is left
// out; refusals name what is wrong.
func TestExec(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	// A fake srun: prints its arguments one a line, a line of its own on
	// stderr, and exits 7 as the task did.
	srun := "#!/bin/sh\nprintf '%s\\n' \"$@\"\necho 'to stderr' >&2\n" +
		"echo 'srun: error: node1: task 0: Exited with exit code 7' >&2\nexit 7\n"
	cfg.SrunPath = filepath.Join(dir, "srun")
	if err := os.WriteFile(cfg.SrunPath, []byte(srun), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.ProberPath = cfg.EnvExecPath // found: any file
	cfg.NsenterPath = "/usr/bin/nsenter"
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	data := testPod()
	data.Pod.Spec.InitContainers = nil
	res, err := s.Create(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	req := &api.ExecRequest{Namespace: data.Pod.Namespace, PodName: data.Pod.Name, PodUID: string(data.Pod.UID),
		ContainerName: "main", Command: []string{"sh", "-c", "echo $HOME; exit 7"}}
	var out strings.Builder
	code, err := s.Exec(context.Background(), req, &out)
	if err != nil || code != 7 {
		t.Fatalf("exec: %d %v", code, err)
	}
	got := out.String()
	for _, want := range []string{"--overlap\n", "--jobid=" + res.PodJID + "\n", s.cfg.ProberPath + "\nexec\n",
		filepath.Join(cfg.DataRootFolder, data.Pod.Namespace+"-"+string(data.Pod.UID), "containers", "main.pid") + "\n",
		`"nsenter":"/usr/bin/nsenter"`, "--\nsh\n-c\necho $HOME; exit 7\n", "to stderr\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "Exited with exit code") {
		t.Errorf("srun's exit-code line was passed on: %q", got)
	}
	for _, c := range []struct {
		name   string
		change func(r *api.ExecRequest)
		reason api.Reason
		want   string
	}{
		{"no command", func(r *api.ExecRequest) { r.Command = nil }, api.ReasonInvalid, "no command"},
		{"unknown container", func(r *api.ExecRequest) { r.ContainerName = "nope" }, api.ReasonNotFound, `no container "nope"`},
		{"unknown pod", func(r *api.ExecRequest) { r.PodUID = "x" }, api.ReasonNotFound, "not found"},
	} {
		r := *req
		c.change(&r)
		if _, err := s.Exec(context.Background(), &r, &out); api.ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s naming %q", c.name, err, c.reason, c.want)
		}
	}
}

// TestExecSrunFails: srun's own failure is no exit code of the command.
func TestExecSrunFails(t *testing.T) {
	var out strings.Builder
	c := &commands{}
	code, err := c.stream(context.Background(), []string{"/bin/sh", "-c",
		"echo 'srun: error: Unable to create step for job 7: Job/step already completing or completed' >&2; exit 1"}, &out)
	if api.ReasonOf(err) != api.ReasonUnavailable || !strings.Contains(err.Error(), "Unable to create step") {
		t.Errorf("srun failing: %d, %v; want unavailable naming srun's error", code, err)
	}
	code, err = c.stream(context.Background(), []string{"/bin/sh", "-c", "kill -TERM $$"}, &out)
	if err != nil || code != 143 {
		t.Errorf("srun killed by SIGTERM: %d, %v; want 143", code, err)
	}
}

func TestSrunFilter(t *testing.T) {
	var b strings.Builder
	f := &srunFilter{w: &b}
	for _, p := range []string{"a li", "ne\nsrun: error: n1: task 0: Exited with exit code 3\nsrun: error: other\n", "partial"} {
		if _, err := f.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	f.flush()
	if b.String() != "a line\nsrun: error: other\npartial" {
		t.Errorf("passed on %q", b.String())
	}
}
