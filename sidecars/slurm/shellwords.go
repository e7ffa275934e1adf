package slurm

import (
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// dataMarker stands for the data directory ($IL_DATA) inside a word of the
// script: the data directory is known only when the job runs on a node
// without the shared filesystem. Pod data never holds NUL (quoting refuses
// it), so the marker cannot be forged.
const dataMarker = "\x00IL_DATA\x00"

// dataRef is the word for rel inside the data directory.
func dataRef(rel string) string { return dataMarker + "/" + rel }

// words splits s into words as a shell would, without expanding anything:
// a variable, a command substitution or any other expansion is an error.
func words(s string) ([]string, error) {
	var out []string
	for w, err := range syntax.NewParser().WordsSeq(strings.NewReader(s)) {
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if !literal(w) {
			return nil, fmt.Errorf("%q: %q would be expanded by a shell; only plain and quoted words are accepted", s, s[w.Pos().Offset():w.End().Offset()])
		}
		v, err := expand.Literal(nil, w)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// literal tells whether w is made only of plain text and quotes.
func literal(w *syntax.Word) bool {
	for _, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			if strings.ContainsAny(p.Value, "~*?[") {
				return false // tilde and glob expansions
			}
		case *syntax.SglQuoted:
			if p.Dollar {
				return false
			}
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				if _, ok := q.(*syntax.Lit); !ok {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

// quoteAll quotes words for words() to read back; a word that cannot be
// quoted (it holds NUL) is left as is, and refused there.
func quoteAll(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		if q, err := quote(w); err == nil {
			out[i] = q
		} else {
			out[i] = w
		}
	}
	return out
}

// quote makes s one literal word of a bash script.
func quote(s string) (string, error) {
	q, err := syntax.Quote(s, syntax.LangBash)
	if err != nil {
		return "", fmt.Errorf("cannot quote %q: %w", s, err)
	}
	return q, nil
}

// ilEnvExec is the word for the helper's path in the job ("$IL_ENVEXEC").
const ilEnvExec = "\x00IL_ENVEXEC\x00"

// fdMarker stands, in a runtime's words, for the host side of mount i,
// which the job opens beneath its root (bindBeneath).
func fdMarker(i int) string { return fmt.Sprintf("\x00IL_FD%d\x00", i) }

// word renders w as one bash word; data paths become "$IL_DATA"/...; the
// image's entrypoint and command (podman) become their arrays.
func word(w string) (string, error) {
	switch w {
	case ilEnvExec:
		return `"$IL_ENVEXEC"`, nil
	case imageEntrypoint:
		return `"${il_ep[@]}"`, nil
	case imageCmd:
		return `"${il_cmd[@]}"`, nil
	}
	parts := strings.Split(w, dataMarker)
	var sb strings.Builder
	for i, p := range parts {
		if i > 0 {
			sb.WriteString(`"$IL_DATA"`)
		}
		if p == "" {
			continue
		}
		q, err := quote(p)
		if err != nil {
			return "", err
		}
		sb.WriteString(q)
	}
	if sb.Len() == 0 {
		return "''", nil
	}
	return sb.String(), nil
}

// line renders argv as one command line.
func line(argv []string) (string, error) {
	out := make([]string, len(argv))
	for i, a := range argv {
		w, err := word(a)
		if err != nil {
			return "", err
		}
		out[i] = w
	}
	return strings.Join(out, " "), nil
}

// wrap breaks s into lines of n characters.
func wrap(s string, n int) string {
	var sb strings.Builder
	for len(s) > n {
		sb.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	sb.WriteString(s)
	return sb.String()
}
