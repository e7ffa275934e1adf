package config

// The config reference (docs/config.md): every key of a Config struct, from
// its tags, as a Markdown table.

import (
	"encoding"
	"fmt"
	"reflect"
	"strings"
)

// Field describes one configuration key.
type Field struct {
	Key     string // YAML key, dotted for nested structs
	Env     string // environment variable, if any
	Type    string
	Default string
	Doc     string
}

// Fields lists the keys of cfg (a struct or pointer to one holding its
// defaults), in declaration order.
func Fields(cfg any) []Field {
	v := reflect.Indirect(reflect.ValueOf(cfg))
	return fields(v, "", "")
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

func fields(v reflect.Value, prefix, envPrefix string) []Field {
	var out []Field
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		key := strings.Split(sf.Tag.Get("json"), ",")[0]
		if key == "-" {
			continue
		}
		fv := v.Field(i)
		if sf.Anonymous && key == "" && sf.Type.Kind() == reflect.Struct {
			// An embedded struct's keys are its container's, as
			// encoding/json (and so the YAML file) reads them.
			out = append(out, fields(fv, prefix, envPrefix+sf.Tag.Get("envPrefix"))...)
			continue
		}
		if key == "" {
			key = sf.Name
		}
		if sf.Type.Kind() == reflect.Struct && !sf.Type.Implements(textMarshaler) {
			out = append(out, fields(fv, prefix+key+".", envPrefix+sf.Tag.Get("envPrefix"))...)
			continue
		}
		f := Field{Key: prefix + key, Type: typeName(sf.Type), Doc: sf.Tag.Get("doc"), Default: show(fv)}
		if e := strings.Split(sf.Tag.Get("env"), ",")[0]; e != "" {
			f.Env = envPrefix + e
		}
		out = append(out, f)
	}
	return out
}

func typeName(t reflect.Type) string {
	switch {
	case t.Name() == "Duration":
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Elem())
	case t.Kind() == reflect.Struct:
		return "object"
	default:
		return t.Kind().String()
	}
}

func show(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, _ := m.MarshalText()
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

// Markdown renders the reference table of cfg under a heading.
func Markdown(title, intro string, cfg any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s\n\n", title, intro)
	b.WriteString("| YAML key | env var | type | default | description |\n| --- | --- | --- | --- | --- |\n")
	for _, f := range Fields(cfg) {
		env := ""
		if f.Env != "" {
			env = "`" + f.Env + "`"
		}
		def := ""
		if f.Default != "" {
			def = "`" + strings.ReplaceAll(f.Default, "|", "\\|") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.Key, env, f.Type, def, strings.ReplaceAll(f.Doc, "|", "\\|"))
	}
	return b.String()
}
