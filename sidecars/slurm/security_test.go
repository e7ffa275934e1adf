package slurm

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
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
			benign := render(t, cfg, testPod())
			base := expansions(t, benign)
			for _, v := range hostile {
				data := testPod()
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

// FuzzJobScript: whatever the pod holds, the script parses, gains no
// expansion, and keeps the command one word; or the pod is refused.
func FuzzJobScript(f *testing.F) {
	for _, v := range hostile {
		f.Add(v, v, v)
	}
	f.Fuzz(func(t *testing.T, cmd, env, key string) {
		cfg := testConfig(t)
		base := expansions(t, render(t, cfg, testPod()))
		data := testPod()
		c := &data.Pod.Spec.Containers[0]
		c.Command = []string{cmd}
		c.Env = append(c.Env, corev1.EnvVar{Name: "FUZZ", Value: env})
		data.Containers[1].ConfigMaps[0].Data[key] = env
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
		for _, fl := range j.files {
			if !poddata.IsLocal(fl.Path) {
				t.Fatalf("file %q leaves the data directory", fl.Path)
			}
		}
	})
}
