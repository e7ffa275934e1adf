package slurm

import (
	"bytes"
	"os/exec"
	"testing"
)

func TestPtyFilter(t *testing.T) {
	var out bytes.Buffer
	in := "typed-42\r\nsrun: error: node-1: task 0: Exited with exit code 5\r\nafter\r\n"
	if n, err := (ptyFilter{&out}).Write([]byte(in)); err != nil || n != len(in) {
		t.Fatalf("wrote %d, %v", n, err)
	}
	if out.String() != "typed-42\r\nafter\r\n" {
		t.Fatalf("filtered %q", out.String())
	}
}

func TestExitOfWaitDelay(t *testing.T) {
	// A command that exited 0 while its client's input stayed open.
	if code, err := exitOf(exec.ErrWaitDelay, "", "srun"); code != 0 || err != nil {
		t.Fatalf("exit %d, %v; want 0, nil", code, err)
	}
	// srun's own failure is not an exit code.
	err := exec.Command("false").Run()
	if _, err := exitOf(err, "srun: error: Unable to create step", "srun"); err == nil {
		t.Fatal("srun's failure became an exit code")
	}
	if code, err := exitOf(err, "", "srun"); code != 1 || err != nil {
		t.Fatalf("exit %d, %v; want 1", code, err)
	}
}
