package slurm

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
)

// hostile are values that would run code, split words or leave a
// directory if they reached a shell or a path unquoted.
var hostile = []string{
	"$(touch /tmp/pwned)",
	"`touch /tmp/pwned`",
	"'; touch /tmp/pwned; echo '",
	"\"; touch /tmp/pwned; echo \"",
	"a\nb; touch /tmp/pwned",
	"${HOME}",
	"$HOME/x",
	"~root",
	"*",
	"a b\tc",
	"x&&y||z|w;v>u<t",
	"!!",
	"\\",
	"#comment",
	"../../../etc/passwd",
	"IL_EOF",
	"\x01\x7f\u00e9\u2028",
}

// expansions counts the nodes of a script that expand or run something.
func expansions(t *testing.T, script string) (n int) {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "job.sh")
	if err != nil {
		t.Fatalf("the script does not parse: %v\n%s", err, script)
	}
	syntax.Walk(f, func(node syntax.Node) bool {
		switch node.(type) {
		case *syntax.CmdSubst, *syntax.ParamExp, *syntax.ArithmExp, *syntax.ProcSubst, *syntax.ExtGlob, *syntax.BraceExp:
			n++
		}
		return true
	})
	return n
}

// literalWords returns every word of the script that is plain text once
// quotes are removed, with data paths as "$IL_DATA".
func literalWords(t *testing.T, script string) map[string]bool {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "job.sh")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	syntax.Walk(f, func(node syntax.Node) bool {
		w, ok := node.(*syntax.Word)
		if !ok {
			return true
		}
		var sb strings.Builder
		for _, p := range w.Parts {
			if dq, ok := p.(*syntax.DblQuoted); ok && len(dq.Parts) == 1 {
				if pe, ok := dq.Parts[0].(*syntax.ParamExp); ok && pe.Short {
					continue // never a pod value
				}
				if pe, ok := dq.Parts[0].(*syntax.ParamExp); ok {
					sb.WriteString("$" + pe.Param.Value)
					continue
				}
			}
			v, err := expand.Literal(nil, &syntax.Word{Parts: []syntax.WordPart{p}})
			if err != nil {
				return true
			}
			sb.WriteString(v)
		}
		out[sb.String()] = true
		return true
	})
	return out
}

// TestHostileValuesStayWords puts hostile values in every place pod data
// reaches the script: command, args, env values, working directory, image,
// runtime options and ConfigMap contents. Each script must parse, hold no
// more expansions than the benign one, pass bash -n, and carry each value
// as one whole word.
func TestHostileValuesStayWords(t *testing.T) {
	for _, rt := range runtimes {
		for _, shared := range []bool{true, false} {
			cfg := testConfig(t)
			cfg.Runtime, cfg.SharedFS = rt, shared
			if rt == RuntimeCharliecloud {
				cfg.ImageRoot = "/images"
			}
			pod := testPod
			if rt == RuntimePodman {
				pod = podmanTestPod // podman runs image references only
			}
			benign := render(t, cfg, pod())
			base := expansions(t, benign)
			for _, v := range hostile {
				data := pod()
				c := &data.Pod.Spec.Containers[0]
				c.Command = []string{v}
				c.Args = []string{v, "--flag=" + v}
				c.Env = append(c.Env, corev1.EnvVar{Name: "HOSTILE", Value: v})
				if !strings.HasPrefix(v, "../") {
					c.WorkingDir = "/w/" + v
				}
				data.Containers[1].ConfigMaps[0].Data["key"] = v
				data.Pod.Annotations[AnnotationSingularityOptions] = "'" + strings.ReplaceAll(v, "'", "") + "'"
				j, err := buildJob(&cfg, nil, data, "/data/interlink/jobs/team-a-"+testUID)
				if err != nil {
					if api.ReasonOf(err) != api.ReasonInvalid {
						t.Errorf("%s %q: %v, want a job or an Invalid error", rt, v, err)
					}
					continue
				}
				if n := expansions(t, j.script); n != base {
					t.Errorf("%s shared=%v %q: %d expansions, the benign script has %d:\n%s", rt, shared, v, n, base, j.script)
				}
				bashSyntax(t, j.script)
				words := literalWords(t, j.script)
				for _, want := range []string{v, "--flag=" + v} {
					if !words[want] {
						t.Errorf("%s shared=%v: %q is not one word of the script", rt, shared, want)
					}
				}
			}
		}
	}
}

// FuzzJobScript: whatever the pod holds (command, env name and value,
// ConfigMap key, every annotation that reaches the host, with every
// allow-list open), the script parses, gains no expansion, keeps the
// command one word and runs only the operator's programs; or the pod is
// refused.
func FuzzJobScript(f *testing.F) {
	for _, v := range hostile {
		f.Add(v, "NAME", v, v, v)
	}
	f.Add("sh", "BASH_ENV", "/x", "k", "-n 1 /bin/sh -c id --")
	f.Add("sh", "PATH", "data/volumes/bin", "k", "--bind /etc:/x")
	f.Add("sh", "X", "y", "k", "--mount /scratch/a:/x:ro")
	f.Add("sh", "X", "y", "k", "--root --env 'A=$(id)'")
	f.Add("sh", "X", "y", "k", "oras://registry.example/")
	f.Fuzz(func(t *testing.T, cmd, name, env, key, ann string) {
		cfg := testConfig(t)
		cfg.AllowedMPIFlags, cfg.AllowedHostPaths = []string{"-n="}, []string{"/scratch"}
		cfg.AllowedEnrootOptions = []string{"--root", "--env="}
		if len(cmd)%2 == 1 {
			cfg.Runtime = RuntimeEnroot // where the enroot annotations apply
		}
		cfg.AllowedImageRoots = append(cfg.AllowedImageRoots, "oras://registry.example/")
		base := expansions(t, render(t, cfg, testPod()))
		data := testPod()
		c := &data.Pod.Spec.Containers[0]
		c.Command = []string{cmd}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: env})
		data.Containers[1].ConfigMaps[0].Data[key] = env
		for _, a := range []string{AnnotationFlags, AnnotationMPIFlags, AnnotationSingularityOptions, AnnotationSingularityMounts,
			AnnotationEnrootOptions, AnnotationEnrootMounts, AnnotationImageRoot, AnnotationFlavorOriginal} {
			data.Pod.Annotations[a] = ann
		}
		j, err := buildJob(&cfg, nil, data, "/data/interlink/jobs/team-a-"+testUID)
		if err != nil {
			if api.ReasonOf(err) != api.ReasonInvalid {
				t.Fatalf("%v, want a job or an Invalid error", err)
			}
			return
		}
		if n := expansions(t, j.script); n != base {
			t.Fatalf("%d expansions, want %d", n, base)
		}
		if !literalWords(t, j.script)[cmd] {
			t.Fatalf("command %q is not one word", cmd)
		}
		allowed := hostPrograms(&cfg)
		cmds, _ := commandWords(t, j.script, map[string]bool{cfg.MpiexecPath: true, "exec": true},
			map[string]bool{cfg.SingularityPath: true, cfg.EnrootPath: true}, "IL_ENVEXEC")
		for _, w := range cmds {
			if !allowed[w] {
				t.Fatalf("the script runs %q", w)
			}
		}
		for _, fl := range j.files {
			if !poddata.IsLocal(fl.Path) {
				t.Fatalf("file %q leaves the data directory", fl.Path)
			}
		}
	})
}

// commandWords returns the first word of every simple command of the
// script (and, for a command that runs another, such as mpiexec, the words
// before the program it runs), and the names it assigns.
// The helper's bind mode is a launcher too: its words up to "--" are data
// (paths it opens), the word after "--" the program it runs.
func commandWords(t *testing.T, script string, launchers map[string]bool, programs map[string]bool, helper string) (cmds, assigned []string) {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "job.sh")
	if err != nil {
		t.Fatalf("the script does not parse: %v", err)
	}
	syntax.Walk(f, func(node syntax.Node) bool {
		switch n := node.(type) {
		case *syntax.CallExpr:
			for _, a := range n.Assigns {
				assigned = append(assigned, a.Name.Value)
			}
			// The helper's bind and reap modes run a program too: their
			// words up to "--" are data (paths it opens); they are taken
			// out here, so that the program they run is checked.
			args := slices.Clone(n.Args)
			for i := 0; i+1 < len(args); i++ {
				b, _ := expand.Literal(nil, args[i+1])
				if !isParam(args[i], helper) || b != envexec.BindMode && b != envexec.ReapMode {
					continue
				}
				end := slices.IndexFunc(args[i:], func(a *syntax.Word) bool { return a.Lit() == "--" })
				if end < 0 {
					t.Fatalf("the helper's %s mode without --", b)
				}
				args = append(args[:i], args[i+end+1:]...)
				i-- // the program run may be the helper again
			}
			for i, a := range args {
				w, err := expand.Literal(nil, a)
				if err != nil {
					w = "<expansion>"
				}
				if i == 0 {
					cmds = append(cmds, w)
					if !launchers[w] {
						break
					}
					continue
				}
				if programs[w] {
					break
				}
				// A launcher's own words: each must be an option or the
				// value of an allowed one, never a program.
				if !strings.HasPrefix(w, "-") && !strings.HasPrefix(args[i-1].Lit(), "-") {
					cmds = append(cmds, w)
				}
			}
		case *syntax.DeclClause:
			for _, a := range n.Args {
				if a.Name != nil {
					assigned = append(assigned, a.Name.Value)
				}
			}
		}
		return true
	})
	return cmds, assigned
}

// isParam tells whether w is "$name".
func isParam(w *syntax.Word, name string) bool {
	if len(w.Parts) != 1 {
		return false
	}
	dq, ok := w.Parts[0].(*syntax.DblQuoted)
	if !ok || len(dq.Parts) != 1 {
		return false
	}
	pe, ok := dq.Parts[0].(*syntax.ParamExp)
	return ok && pe.Param.Value == name
}

// hostPrograms are the only commands a job script may run: the operator's
// programs, the job's own functions and shell builtins.
func hostPrograms(cfg *Config) map[string]bool {
	ok := map[string]bool{}
	for _, p := range programKeys(cfg) {
		ok[*p] = true
	}
	for _, w := range []string{"mkdir", "cd", "kill", "return", "trap", "printf", "date", "read", "mv", "exit", "wait", "cp",
		"il_now", "il_log", "il_run", "il_file", "il_cleanup", "rm", "base64", "chmod", "dirname", "mapfile", "seq", "sleep",
		"set", "exec", "<expansion>", "[[", "unset", "for", "local", "umask", "ssh", "", ":",
		"echo", "il_pid", "il_signal", "il_stop", "shift",
		"/usr/lib/x86_64-linux-gnu/libtsocks.so"} {
		ok[w] = true
	}
	for i := range 5 {
		ok[fmt.Sprintf("il_c%d", i)], ok[fmt.Sprintf("il_c%d_cleanup", i)] = true, true
	}
	return ok
}

// TestNoPodWordInCommandPosition puts hostile values in every annotation
// that reaches the host (with every allow-list open) and hostile env names
// and values in the container: each pod is refused, or its script runs only
// the operator's programs and builtins, assigns no pod name and sources
// nothing.
func TestNoPodWordInCommandPosition(t *testing.T) {
	values := append(slices.Clone(hostile), "-n 1 /bin/sh -c 'touch /tmp/x' --", "-n 1 : /bin/id", "-V", "--version",
		"--help", "--test-only", "--te", "--exclusive /tmp/evil.sh", "--bind /etc:/x", "--bind=/scratch/../etc:/x",
		"-B /scratch:/s,/etc:/e", "--home /", "--nv --no-home=false", "/etc", "podman", "../x", "-n=1;touch /x",
		"--mount /scratch/a:/x:ro", "-m /scratch:/s,/etc:/e", "--mount '/scratch/a /etc none bind'", "--root --env A=B",
		"--root /bin/sh", "docker://", "oras://registry.example/", "oras://registry.example/$(id)", "gpu", "default")
	names := []string{"PATH", "LD_PRELOAD", "BASH_ENV", "ENV", "IFS", "SHELLOPTS", "PS4", "PROMPT_COMMAND", "BASHOPTS",
		"IL_DATA", "IL_DIR", "SLURM_CONF", "a.b-c", "_"}
	for _, rt := range runtimes {
		cfg := testConfig(t)
		cfg.Runtime, cfg.ImageRoot = rt, "/images"
		cfg.AllowedRuntimes = slices.Clone(runtimes)
		cfg.AllowedMPIFlags = []string{"-n=", "-np="}
		cfg.AllowedHostPaths = []string{"/scratch"}
		cfg.AllowedImageRoots = []string{"/images2", "oras://registry.example/"}
		cfg.AllowedEnrootOptions = []string{"--root", "--env="}
		cfg.Flavors = Flavors{{Name: "default", SlurmFlags: []string{"--partition=cpu"}}, {Name: "gpu", GPU: true}}
		allowed := hostPrograms(&cfg)
		built := 0
		for _, v := range values {
			for _, ann := range []string{AnnotationFlags, AnnotationMPIFlags, AnnotationSingularityOptions, AnnotationSingularityMounts,
				AnnotationImageRoot, AnnotationRuntime, AnnotationEnrootOptions, AnnotationEnrootMounts, AnnotationFlavorOriginal} {
				data := testPod()
				if rt == RuntimePodman || ann == AnnotationRuntime && v == RuntimePodman {
					data = podmanTestPod() // podman runs image references only
				}
				data.Pod.Annotations[ann] = v
				for _, n := range names {
					c := &data.Pod.Spec.Containers[0]
					c.Env = append(c.Env, corev1.EnvVar{Name: n, Value: v})
				}
				j, err := buildJob(&cfg, nil, data, "/data/interlink/jobs/team-a-"+testUID)
				if err != nil {
					if api.ReasonOf(err) != api.ReasonInvalid {
						t.Errorf("%s %s=%q: %v, want a job or an Invalid error", rt, ann, v, err)
					}
					continue
				}
				runtimesAt := map[string]bool{cfg.SingularityPath: true, cfg.ApptainerPath: true, cfg.EnrootPath: true, cfg.ChRunPath: true, cfg.PodmanPath: true}
				cmds, assigned := commandWords(t, j.script, map[string]bool{cfg.MpiexecPath: true, "exec": true}, runtimesAt, "IL_ENVEXEC")
				for _, c := range cmds {
					if !allowed[c] {
						t.Errorf("%s %s=%q: the script runs %q", rt, ann, v, c)
					}
				}
				for _, a := range assigned {
					if a != "IL_DIR" && a != "IL_DATA" && a != "IL_NOW" && a != "IL_SSH_PID" && a != "IL_SOCKS_PORT" && a != "code" &&
						a != "il_exit" && a != "il_pids" && a != "il_code" && a != "t" && a != "s" && a != "line" && a != "name" && a != "IFS" &&
						a != "TZ" && a != "IL_ENVEXEC" && a != "IL_PROBER" && a != "IL_PROBER_PID" && a != "il_ep" && a != "il_cmd" &&
						!slices.Contains([]string{"base", "started", "ended", "last", "backoff", "since", "delay", "restarts"}, a) {
						t.Errorf("%s: the script assigns %q", rt, a)
					}
				}
				for _, n := range names {
					if n != "IFS" && n != "IL_DATA" && n != "IL_DIR" && regexp.MustCompile(`(^|[\s'"])`+regexp.QuoteMeta(n)+`=`).MatchString(j.script) {
						t.Errorf("%s: env name %s reaches the script", rt, n)
					}
				}
				if strings.Contains(j.script, "\n\t. ") || strings.Contains(j.script, "source ") || strings.Contains(j.script, "set -a") {
					t.Errorf("%s: the script sources a file", rt)
				}
				built++
			}
		}
		if built == 0 {
			t.Errorf("%s: every pod was refused: nothing was checked", rt)
		}
	}
}
