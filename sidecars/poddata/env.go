package poddata

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Env is a container's environment as a sidecar receives it. The virtual
// kubelet resolves env before a pod reaches interLink (virtual-kubelet's
// pod controller: envFrom and valueFrom read, $(VAR) references in values
// expanded, as the kubelet does), so a value is used as it is: expanding it
// again would turn an escaped $$(NAME) into NAME's value. An env name that
// is not one, or an entry still carrying valueFrom or envFrom, is an error
// naming it.
func Env(c *corev1.Container) ([][2]string, error) {
	var errs []error
	if len(c.EnvFrom) > 0 {
		errs = append(errs, errors.New("envFrom is not resolved (the virtual kubelet resolves it before a pod reaches a sidecar)"))
	}
	env := make([][2]string, 0, len(c.Env))
	for _, e := range c.Env {
		if msgs := validation.IsEnvVarName(e.Name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("env name %q: %s", e.Name, strings.Join(msgs, "; ")))
			continue
		}
		if e.ValueFrom != nil {
			errs = append(errs, fmt.Errorf("env %s: valueFrom is not resolved (the virtual kubelet resolves it before a pod reaches a sidecar)", e.Name))
			continue
		}
		env = append(env, [2]string{e.Name, e.Value})
	}
	return env, errors.Join(errs...)
}

// Expand replaces each $(NAME) in s by NAME's value in env (the last
// definition wins), and each $$ by $, as Kubernetes expands a container's
// command and args with its env: a reference to an unknown name, or an
// unclosed one, stays as written.
func Expand(s string, env [][2]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	lookup := func(name string) (string, bool) {
		for i := len(env) - 1; i >= 0; i-- {
			if env[i][0] == name {
				return env[i][1], true
			}
		}
		return "", false
	}
	var b strings.Builder
	from := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			continue
		}
		b.WriteString(s[from:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				break
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
		from = i + 1
	}
	return b.String() + s[from:]
}

// ExpandAll expands each of ss with env (nil stays nil).
func ExpandAll(ss []string, env [][2]string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Expand(s, env)
	}
	return out
}
