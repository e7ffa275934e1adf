package envexec

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The test binary acts as the helper when asked to, so that the tests run
// the real Main in a process of its own.
func TestMain(m *testing.M) {
	if os.Getenv("ENVEXEC_TEST_HELPER") == "1" {
		os.Clearenv()
		os.Exit(Main(os.Args, os.Stderr))
	}
	os.Exit(m.Run())
}

// hostile values: every one must arrive byte for byte.
var values = []string{"", "'''", `"`, `\`, "$HOME", "$(touch /x)", "`id`", "a\nb", "a\r\nb", " lead", "trail ",
	"=x=y", "${IFS}", "\u00e9\u2028\U0001F600", "\x01\x7f", strings.Repeat("x", 100000)}

func TestEncodeDecode(t *testing.T) {
	var env [][2]string
	for i, v := range values {
		env = append(env, [2]string{"V" + string(rune('A'+i)), v})
	}
	env = append(env, [2]string{"dotted.name-1", "x"}, [2]string{"LD_PRELOAD", "/x.so"})
	b, err := Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(env, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	for _, bad := range [][2]string{{"", "x"}, {"A=B", "x"}, {"A\x00", "x"}, {"A", "x\x00y"}} {
		if _, err := Encode([][2]string{bad}); err == nil {
			t.Errorf("Encode(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"A=x", "noequals\x00", "=x\x00"} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{"ENVEXEC_TEST_HELPER=1"}
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestExecSetsEnvExactly(t *testing.T) {
	dir := t.TempDir()
	var env [][2]string
	for i, v := range values {
		env = append(env, [2]string{"V" + string(rune('A'+i)), v})
	}
	b, _ := Encode(env)
	file := filepath.Join(dir, "env")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// env -0 prints the environment NUL-separated, as the command sees it.
	out, code := run(t, "-C", dir, file, "--", "env", "-0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	got := map[string]string{}
	for e := range strings.SplitSeq(strings.TrimSuffix(out, "\x00"), "\x00") {
		k, v, _ := strings.Cut(e, "=")
		got[k] = v
	}
	for _, kv := range env {
		if got[kv[0]] != kv[1] {
			t.Errorf("%s = %q, want %q", kv[0], got[kv[0]], kv[1])
		}
	}
	if got["PATH"] != DefaultPath {
		t.Errorf("PATH = %q, want the default", got["PATH"])
	}
	out, code = run(t, "-C", dir, file, "--", "pwd")
	if code != 0 || strings.TrimSpace(out) != dir {
		t.Errorf("pwd: %q (exit %d), want %s", out, code, dir)
	}
	// A missing working directory is made, as container runtimes make it.
	made := filepath.Join(dir, "made", "by", "the", "helper")
	out, code = run(t, "-C", made, file, "--", "pwd")
	if code != 0 || strings.TrimSpace(out) != made {
		t.Errorf("pwd: %q (exit %d), want %s", out, code, made)
	}
}

func TestExecFailures(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "env")
	_ = os.WriteFile(file, nil, 0o600)
	notExec := filepath.Join(dir, "script")
	_ = os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{file, "--", "no-such-command-anywhere"}, 127, "no-such-command-anywhere"},
		{[]string{file, "--", notExec}, 126, "permission denied"},
		{[]string{file, "--"}, 1, "usage"},
		{[]string{file, "ls"}, 1, "usage"},
		{[]string{filepath.Join(dir, "missing"), "--", "true"}, 1, "env file"},
		{[]string{"-C", filepath.Join(notExec, "sub"), file, "--", "true"}, 1, "working directory"},
	} {
		out, code := run(t, c.args...)
		if code != c.code || !strings.Contains(out, c.msg) {
			t.Errorf("%q: exit %d, %q; want %d and %q", c.args, code, out, c.code, c.msg)
		}
	}
}

// The helper runs in images without a C library: it must stay static
// whatever CGO_ENABLED says.
func TestHelperIsStatic(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "interlink-envexec")
	build := exec.Command("go", "build", "-o", bin, "../cmd/interlink-envexec")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("interlink-envexec is dynamically linked: it imports a cgo package")
		}
	}
}

// TestBindBeneath: a subPath is opened beneath its volume without
// following symlinks, and the program gets its path in the argument asked
// for; a path that crosses a symlink or leaves the volume is refused.
func TestBindBeneath(t *testing.T) {
	vol := t.TempDir()
	if err := os.MkdirAll(filepath.Join(vol, "sub/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(vol, "sub/dir/mark"), []byte("inside"), 0o644)
	_ = os.Symlink("/", filepath.Join(vol, "host"))
	_ = os.Symlink("sub", filepath.Join(vol, "rel-link"))
	out, code := run(t, BindMode, "3", vol, "sub/dir", "0", "--bind=", ":/x", "--", "/bin/sh", "-c", `p=${0#--bind=}; cat "${p%:/x}"/mark; echo " $0"`, "WORD")
	if want := "inside --bind=" + filepath.Join(vol, "sub/dir") + ":/x\n"; code != 0 || out != want {
		t.Fatalf("bind: exit %d, %q, want %q", code, out, want)
	}
	for _, rel := range []string{"host", "host/etc", "rel-link/dir", "../x", "sub/../../x", "/etc"} {
		if out, code := run(t, BindMode, "1", vol, rel, "0", "", "", "--", "/bin/true", "x"); code == 0 {
			t.Errorf("%q: accepted: %s", rel, out)
		}
	}
	// An emptyDir's missing subPath is made, beneath the volume.
	if out, code := run(t, BindMode, "1", vol, "new/deep", "1", "", "", "--", "/bin/true", "x"); code != 0 {
		t.Errorf("mkdir: exit %d %s", code, out)
	}
	if st, err := os.Stat(filepath.Join(vol, "new/deep")); err != nil || !st.IsDir() {
		t.Errorf("new/deep was not made: %v", err)
	}
	for _, bad := range [][]string{{"x", vol, "sub", "0", "", "", "--", "/bin/true"}, {"5", vol, "sub", "0", "", "", "--", "/bin/true"}, {"1", vol}} {
		if _, code := run(t, append([]string{BindMode}, bad...)...); code == 0 {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestLog: lines get the time they were read; a 100 MiB line without a
// newline comes out in pieces of LogPiece bytes, each one a line.
func TestLog(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	var out bytes.Buffer
	if err := Log(strings.NewReader("a\n\nb c\nlast"), &out, func() time.Time { return at }); err != nil {
		t.Fatal(err)
	}
	want := "2026-01-02T03:04:05.6Z a\n2026-01-02T03:04:05.6Z \n2026-01-02T03:04:05.6Z b c\n2026-01-02T03:04:05.6Z last\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	const size = 100 << 20
	lines, longest := 0, 0
	w := writerFunc(func(p []byte) (int, error) {
		lines++
		longest = max(longest, len(p))
		return len(p), nil
	})
	if err := Log(io.LimitReader(repeat('x'), size), w, time.Now); err != nil {
		t.Fatal(err)
	}
	if lines != size/LogPiece || longest > LogPiece+64 {
		t.Errorf("%d lines, the longest %d bytes; want %d of at most %d", lines, longest, size/LogPiece, LogPiece+64)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type repeat byte

func (b repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}
