package envexec

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want containerArgs
		err  string
	}{
		{args: []string{"/e", "--", "cmd", "a"}, want: containerArgs{file: "/e", argv: []string{"cmd", "a"}}},
		{args: []string{"-C", "/w", "/e", "--", "cmd"}, want: containerArgs{dir: "/w", file: "/e", argv: []string{"cmd"}}},
		{args: []string{"-r", "/etc/cfg", "-C", "/w", "-r", "/.interlink", "/e", "--", "cmd", "-r", "/x"},
			want: containerArgs{dir: "/w", readOnly: []string{"/etc/cfg", "/.interlink"}, file: "/e", argv: []string{"cmd", "-r", "/x"}}},
		// The command's own words are never the helper's.
		{args: []string{"/e", "--", "-r", "/x"}, want: containerArgs{file: "/e", argv: []string{"-r", "/x"}}},
		{args: []string{"-r", "etc", "/e", "--", "cmd"}, err: "not an absolute path"},
		{args: []string{"-r", "/etc", "--", "cmd"}, err: "missing"},
		{args: []string{"-r"}, err: "missing"},
		{args: []string{"-r", "/x", "/e", "cmd"}, err: "missing"},
	} {
		got, err := parseArgs(c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %+v, %v; want an error with %q", c.args, got, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if d := cmp.Diff(c.want, got, cmp.AllowUnexported(containerArgs{})); d != "" {
			t.Errorf("%q (-want +got):\n%s", c.args, d)
		}
	}
	// And through Main: a relative -r path is refused before anything runs.
	if out, code := run(t, "-r", "rel", "/e", "--", "true"); code != 1 || !strings.Contains(out, "usage") {
		t.Errorf("relative -r: exit %d, %q", code, out)
	}
}

func TestRemountFlags(t *testing.T) {
	base := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
	for _, c := range []struct {
		st   int64
		want uintptr
	}{
		{unix.ST_RELATIME, base | unix.MS_RELATIME},
		{unix.ST_RDONLY | unix.ST_RELATIME, base | unix.MS_RELATIME},
		{0, base | unix.MS_STRICTATIME},
		{unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_NOATIME | unix.ST_NODIRATIME,
			base | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME},
		{unix.ST_NOSUID | unix.ST_RELATIME | stNoSymFollow, base | unix.MS_NOSUID | unix.MS_RELATIME | unix.MS_NOSYMFOLLOW},
		// Superblock flags are not a bind's: a bind remount leaves them.
		{unix.ST_SYNCHRONOUS | unix.ST_MANDLOCK | unix.ST_RELATIME, base | unix.MS_RELATIME},
	} {
		if got := remountFlags(c.st); got != c.want {
			t.Errorf("statfs flags %#x: mount flags %#x, want %#x", c.st, got, c.want)
		}
	}
}

// Docker's default capability set, as /proc/PID/status shows it.
const dockerDefaultCaps = 0xa80425fb

func TestKeptCapabilities(t *testing.T) {
	if m := keptMask(); m != dockerDefaultCaps || m&(1<<unix.CAP_SYS_ADMIN) != 0 {
		t.Errorf("kept capabilities %#x, want Docker's default set %#x", m, uint64(dockerDefaultCaps))
	}
}

// buildHelper builds the interlink-envexec binary.
func buildHelper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "interlink-envexec")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/interlink-envexec").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// confineScript runs in a new user and mount namespace over a tmpfs with
// nosuid, nodev, noexec and noatime, then in a second user and mount
// namespace below it (as a runtime such as ch-run makes them), where that
// tmpfs's flags are locked. There it binds ro and rw onto themselves and
// runs the helper, first with a -r path that is no mount point (it must
// refuse to start), then with -r ro; the command tries to write, remount
// and escape through a nested user namespace.
const confineScript = `set -eu
helper=$1 env=$2 top=$3
mount -t tmpfs -o nosuid,nodev,noexec,noatime,mode=755 tmpfs "$top"
mkdir "$top/ro" "$top/rw" "$top/rw/plain"
echo kept >"$top/ro/keep"
exec unshare --user --map-root-user --mount /bin/sh -c '
set -eu
helper=$1 env=$2 top=$3
mount --bind "$top/ro" "$top/ro"
mount --bind "$top/rw" "$top/rw"
"$helper" -r "$top/rw/plain" "$env" -- /bin/echo MUST-NOT-RUN || echo "not-a-mount-point exit=$?"
exec "$helper" -r "$top/ro" "$env" -- /bin/sh -c "$4" sh "$top/ro" "$top/rw"
' sh "$helper" "$env" "$top" '
ro=$1 rw=$2
touch "$ro/new" 2>&1 && echo CREATED
rm "$ro/keep" 2>&1 && echo DELETED
echo written >"$rw/new" && echo RW-WRITABLE
mount -o remount,bind,rw "$ro" 2>&1 && echo REMOUNTED
unshare --user --map-root-user --mount mount -o remount,bind,rw "$ro" 2>&1 && echo NESTED-REMOUNTED
touch "$ro/new2" 2>&1 && echo CREATED2
echo "ro-files: $(ls "$ro")"
grep " $ro " /proc/self/mountinfo | cut -d" " -f6
grep -E "^(CapBnd|CapEff|CapPrm|CapInh|CapAmb|NoNewPrivs):" /proc/self/status
'
`

// TestConfineInUserNamespace: in a real user and mount namespace, a -r
// bind can be neither written nor remounted read-write by the command,
// its locked flags are kept, another bind stays writable, and the
// command has no capability outside Docker's default set.
func TestConfineInUserNamespace(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		e2eenv.Prerequisite(t, "unshare (util-linux)")
	}
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "true").CombinedOutput(); err != nil {
		e2eenv.Prerequisite(t, "user namespaces (unshare --user --map-root-user --mount: %v %s)", err, out)
	}
	helper := buildHelper(t)
	dir := t.TempDir()
	env := filepath.Join(dir, "env")
	if err := os.WriteFile(env, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top")
	if err := os.Mkdir(top, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "/bin/sh", "-c", confineScript, "sh", helper, env, top).CombinedOutput()
	got := string(out)
	t.Logf("output:\n%s", got)
	if err != nil {
		t.Fatalf("the script failed: %v", err)
	}
	for _, want := range []string{
		"make " + top + "/rw/plain read-only", "not-a-mount-point exit=1",
		"touch: cannot touch '" + top + "/ro/new': Read-only file system",
		"rm: cannot remove '" + top + "/ro/keep': Read-only file system",
		"RW-WRITABLE", "ro-files: keep\n", "NoNewPrivs:\t1", "CapAmb:\t0000000000000000",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, bad := range []string{"MUST-NOT-RUN", "CREATED", "DELETED", "REMOUNTED"} {
		if strings.Contains(got, bad) {
			t.Errorf("output holds %q", bad)
		}
	}
	// The bind is read-only with the tmpfs's locked flags.
	opts := map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "ro,") || l == "ro" {
			for _, o := range strings.Split(l, ",") {
				opts[o] = true
			}
		}
	}
	for _, o := range []string{"ro", "nosuid", "nodev", "noexec", "noatime"} {
		if !opts[o] {
			t.Errorf("the -r bind's mount options %v lack %s", opts, o)
		}
	}
	for _, set := range []string{"CapBnd", "CapEff", "CapPrm", "CapInh"} {
		_, rest, ok := strings.Cut(got, set+":\t")
		if !ok {
			t.Errorf("no %s in the output", set)
			continue
		}
		v, err := strconv.ParseUint(strings.Fields(rest)[0], 16, 64)
		if err != nil {
			t.Errorf("%s: %v", set, err)
			continue
		}
		if v&(1<<unix.CAP_SYS_ADMIN) != 0 || v&^dockerDefaultCaps != 0 {
			t.Errorf("%s %#x: holds capabilities outside Docker's default set %#x", set, v, dockerDefaultCaps)
		}
	}
}
