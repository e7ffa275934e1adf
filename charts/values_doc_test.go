package charts

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"testing"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
)

// ValueDoc is one documented value of a chart's values.yaml.
type ValueDoc struct {
	Key, Type, Default, Description string
}

// ValueDocs reads the "# --" comments of a values.yaml (helm-docs' style):
// each leaf value, or a map documented as a whole, must have one. It returns
// the documented values in file order and an error naming every value that
// lacks its comment.
func ValueDocs(values []byte) ([]ValueDoc, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: not a map")
	}
	var out []ValueDoc
	var missing []string
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			desc, ok := description(k.HeadComment)
			switch {
			case ok:
				out = append(out, ValueDoc{Key: key, Type: typeOf(v), Default: defaultOf(v), Description: desc})
			case v.Kind == yaml.MappingNode && len(v.Content) > 0:
				walk(key+".", v)
			default:
				missing = append(missing, key)
			}
		}
	}
	walk("", doc.Content[0])
	if len(missing) > 0 {
		return out, fmt.Errorf("values without a \"# --\" comment: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// description returns the text of a "# -- text" comment (continued on the
// following comment lines), and whether there is one.
func description(comment string) (string, bool) {
	var parts []string
	found := false
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if rest, ok := strings.CutPrefix(line, "--"); ok {
			found, parts = true, []string{strings.TrimSpace(rest)}
			continue
		}
		if found && line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " "), found
}

func typeOf(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch v.Tag {
	case "!!int":
		return "int"
	case "!!bool":
		return "bool"
	case "!!float":
		return "float"
	}
	return "string"
}

// defaultOf renders a value compactly, as JSON.
func defaultOf(v *yaml.Node) string {
	var x any
	if err := v.Decode(&x); err != nil {
		return v.Value
	}
	b, err := json.Marshal(x)
	if err != nil {
		return v.Value
	}
	return string(b)
}

// ValuesTable renders the values as a Markdown table.
func ValuesTable(docs []ValueDoc) string {
	var b strings.Builder
	b.WriteString("| key | type | default | description |\n| --- | --- | --- | --- |\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, d := range docs {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", d.Key, d.Type, cell(d.Default), cell(d.Description))
	}
	return b.String()
}

func TestValueDocsNamesUndocumentedValues(t *testing.T) {
	docs, err := ValueDocs([]byte("# -- documented\na: 1\nb:\n  # -- nested, continued\n  # on two lines\n  c: x\n  d: [1]\ne: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "b.d, e") {
		t.Errorf("err = %v, want one naming b.d and e", err)
	}
	want := []ValueDoc{{"a", "int", "1", "documented"}, {"b.c", "string", `"x"`, "nested, continued on two lines"}}
	if diff := cmp.Diff(want, docs); diff != "" {
		t.Errorf("docs (-want +got):\n%s", diff)
	}
}
