package poddata

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestExpand: the cases of Kubernetes' own expansion tests
// (third_party/forked/golang/expansion), plus bytes it must keep.
func TestExpand(t *testing.T) {
	vars := map[string]string{"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": "", "VAR_SPACE": " "}
	var env [][2]string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, [2]string{k, vars[k]})
	}
	for in, want := range map[string]string{ //nolint:gosec // no credentials: expansion cases
		"":                                   "",
		"$(VAR_A)":                           "A",
		"___$(VAR_B)___":                     "___B___",
		"$(VAR_A)-$(VAR_A)":                  "A-A",
		"$(VAR_A)$(VAR_B)$(VAR_C)":           "ABC",
		"$(VAR_REF)":                         "$(VAR_A)", // not expanded twice
		"$(VAR_EMPTY)x":                      "x",
		"$(VAR_SPACE)":                       " ",
		"$(UNKNOWN)":                         "$(UNKNOWN)",
		"$$(VAR_A)":                          "$(VAR_A)",
		"$$$(VAR_A)":                         "$A",
		"$$$$(VAR_A)":                        "$$(VAR_A)",
		"$$":                                 "$",
		"$$$":                                "$$",
		"f00__(VAR_A)__":                     "f00__(VAR_A)__",
		"$(VAR_A":                            "$(VAR_A",
		"$(VAR_A)$(":                         "A$(",
		"$":                                  "$",
		"$x $HOME ${A} $é $日":                "$x $HOME ${A} $é $日",
		"\\$(VAR_A) \"q\" 'q' `id` \n\t\x01": "\\A \"q\" 'q' `id` \n\t\x01",
		"$(touch /tmp/pwned)":                "$(touch /tmp/pwned)",
		"$()":                                "$()",
	} {
		if got := Expand(in, env); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEnv: env values pass as they are (the VK expanded them: a second
// expansion would undo $$ escapes); names are checked; valueFrom and
// envFrom, which the VK resolves, are errors naming them.
func TestEnv(t *testing.T) {
	c := &corev1.Container{Name: "c", Env: []corev1.EnvVar{{Name: "A", Value: "$(B) $$ 'q'"}, {Name: "B", Value: ""}}}
	env, err := Env(c)
	if err != nil || !slices.Equal(env, [][2]string{{"A", "$(B) $$ 'q'"}, {"B", ""}}) {
		t.Errorf("%q %v", env, err)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "1BAD"}, corev1.EnvVar{Name: "S", ValueFrom: &corev1.EnvVarSource{}})
	c.EnvFrom = []corev1.EnvFromSource{{}}
	_, err = Env(c)
	for _, want := range []string{`env name "1BAD"`, "env S: valueFrom is not resolved", "envFrom is not resolved"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v, want it to say %q", err, want)
		}
	}
	if got := ExpandAll([]string{"echo", "$(A)", "$$(A)"}, [][2]string{{"A", "1"}, {"A", "2"}}); !slices.Equal(got, []string{"echo", "2", "$(A)"}) {
		t.Errorf("ExpandAll: %q", got)
	}
	if ExpandAll(nil, nil) != nil {
		t.Error("nil args became non-nil")
	}
}
