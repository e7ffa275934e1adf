package installer

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/google/go-cmp/cmp"
)

// splitExec reads an ExecStart= value as systemd does (systemd.service(5),
// "Command lines"), written from the manual independently of ExecLine:
// words split on whitespace, double or single quotes group, backslash
// escapes (\\ \" \' \n \t \s), then %% is a literal % (any other specifier
// is refused here: the installer never means one), and $$ a literal $ (a
// $VAR would be substituted: refused).
func splitExec(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, errors.New("trailing backslash")
			}
			i++
			switch rs[i] {
			case '\\', '"', '\'':
				cur.WriteRune(rs[i])
			case 'n':
				cur.WriteRune('\n')
			case 't':
				cur.WriteRune('\t')
			case 's':
				cur.WriteRune(' ')
			default:
				return nil, fmt.Errorf("unknown escape \\%c", rs[i])
			}
			inWord = true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unbalanced quoting")
	}
	if inWord {
		words = append(words, cur.String())
	}
	for i, w := range words {
		var out strings.Builder
		ws := []rune(w)
		for j := 0; j < len(ws); j++ {
			switch ws[j] {
			case '%', '$':
				if j+1 >= len(ws) || ws[j+1] != ws[j] {
					return nil, fmt.Errorf("word %d %q: unescaped %c", i, w, ws[j])
				}
				out.WriteRune(ws[j])
				j++
			default:
				out.WriteRune(ws[j])
			}
		}
		words[i] = out.String()
	}
	return words, nil
}

// splitEnv reads an Environment= value of quoted KEY=VALUE words.
func splitEnv(v string) (map[string]string, error) {
	words, err := splitExec(strings.ReplaceAll(v, "$", "$$")) // Environment= does not expand $
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, w := range words {
		k, val, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE", w)
		}
		out[k] = val
	}
	return out, nil
}

func TestExecLineRoundTrip(t *testing.T) {
	cases := [][]string{
		{"/usr/local/bin/interlink", "--config", "/etc/interlink/interlink.yaml"},
		{"/opt/my bin/x", "a b", `quote"d`, `back\slash`, "100%", "$HOME", "${X}", "it's", "", ";", "tab\there"},
		{"/x", "%n%i", "$$", "a=b,c:d@e+f"},
		{"/opt/100%/bin/x", "$"},
	}
	for _, argv := range cases {
		line, err := ExecLine(argv)
		if strings.Contains(strings.Join(argv, ""), "\t") {
			if err == nil {
				t.Errorf("%q: a control character was accepted", argv)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
		got, err := splitExec(line)
		if err != nil {
			t.Fatalf("%q -> %s: %v", argv, line, err)
		}
		if diff := cmp.Diff(argv, got); diff != "" {
			t.Errorf("ExecLine(%q) = %s reads back differently (-want +got):\n%s", argv, line, diff)
		}
	}
	if _, err := ExecLine([]string{"relative/x"}); err == nil {
		t.Error("a relative executable was accepted")
	}
	if _, err := ExecLine([]string{"/opt/$x/bin"}); err == nil {
		t.Error("a $ in the executable was accepted")
	}
	if _, err := ExecLine([]string{"/x", "a\nb"}); err == nil {
		t.Error("a newline was accepted")
	}
}

func FuzzExecLine(f *testing.F) {
	for _, s := range []string{"plain", "a b", `"`, `\`, "%", "$", "'", "%%$$", `\"`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv := []string{"/bin/x", s, "--flag=" + s}
		line, err := ExecLine(argv)
		if err != nil {
			if checkValue(s) == nil {
				t.Fatalf("%q refused: %v", s, err)
			}
			return
		}
		if strings.ContainsAny(line, "\n\r") {
			t.Fatalf("a line break in %q", line)
		}
		got, err := splitExec(line)
		if err != nil {
			t.Fatalf("%q -> %s: %v", s, line, err)
		}
		if diff := cmp.Diff(argv, got); diff != "" {
			t.Fatalf("%q -> %s (-want +got):\n%s", s, line, diff)
		}
	})
}

func TestEnvAssignment(t *testing.T) {
	for _, v := range []string{"/etc/slurm/slurm.conf", "a b", `q"x`, `b\s`, "100%", "$HOME"} {
		e, err := EnvAssignment("SLURM_CONF", v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := splitEnv(e)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		if got["SLURM_CONF"] != v {
			t.Errorf("EnvAssignment(%q) = %s reads back as %q", v, e, got["SLURM_CONF"])
		}
	}
	for _, k := range []string{"", "1X", "A-B", "A B"} {
		if _, err := EnvAssignment(k, "v"); err == nil {
			t.Errorf("name %q accepted", k)
		}
	}
}

// TestUnitParses reads a rendered unit back with go-systemd's parser.
func TestUnitParses(t *testing.T) {
	s := service{
		Description: "100% test", User: "interlink",
		Exec:           []string{"/opt/x%y/bin/interlink", "--config", "/etc/a$b/c.yaml"},
		Env:            [][2]string{{"SLURM_CONF", "/etc/slurm %x/slurm.conf"}},
		ReadWritePaths: []string{"/home/interlink/jobs", "/var/lib/interlink"},
	}
	got := renderedOptions(t, s)
	argv, err := splitExec(got["ExecStart"])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.Exec, argv); diff != "" {
		t.Errorf("ExecStart (-want +got):\n%s", diff)
	}
	env, err := splitEnv(got["Environment"])
	if err != nil || env["SLURM_CONF"] != "/etc/slurm %x/slurm.conf" {
		t.Errorf("Environment %q -> %v, %v", got["Environment"], env, err)
	}
	if got["ProtectHome"] != "read-only" {
		t.Errorf("a data root under /home needs ProtectHome=read-only, got %q", got["ProtectHome"])
	}
	if got["PrivateTmp"] != "yes" {
		t.Errorf("no data under /tmp: want PrivateTmp=yes, got %q", got["PrivateTmp"])
	}
	if got["Description"] != "100%% test" {
		t.Errorf("Description %q: %% not escaped", got["Description"])
	}
	for _, k := range []string{"NoNewPrivileges", "ProtectSystem", "User", "ReadWritePaths", "SystemCallFilter", "CapabilityBoundingSet"} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s is missing", k)
		}
	}
}

// TestPrivateTmpKeepsSharedPaths: a data root under /tmp or /var/tmp must be
// the one SLURM jobs and dockerd see, so the unit keeps the host's /tmp.
func TestPrivateTmpKeepsSharedPaths(t *testing.T) {
	for _, tc := range []struct {
		path, want string
	}{
		{"/var/lib/interlink/jobs", "yes"},
		{"/tmp/interlink/jobs", "no"},
		{"/var/tmp/jobs", "no"},
		{"/tmpfs/jobs", "yes"},
	} {
		s := service{Description: "d", User: "interlink", Exec: []string{"/bin/true"}, ReadWritePaths: []string{tc.path}}
		if got := renderedOptions(t, s)["PrivateTmp"]; got != tc.want {
			t.Errorf("ReadWritePaths=%s: PrivateTmp=%s, want %s", tc.path, got, tc.want)
		}
	}
}

// renderedOptions renders the unit and reads it back with go-systemd's
// parser: option name to value (the last one of a name).
func renderedOptions(t *testing.T, s service) map[string]string {
	t.Helper()
	var b bytes.Buffer
	if err := s.render(&b); err != nil {
		t.Fatal(err)
	}
	opts, err := unit.DeserializeOptions(&b)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range opts {
		got[o.Name] = o.Value
	}
	return got
}
