// Package config loads a binary's Config struct: named defaults set by the
// caller, then an optional YAML file, then environment variables
// (caarlos0/env), then validation that reports every problem at once. It also
// renders the config reference (docs/config.md) from the struct tags.
//
// Field tags: `json:"Key"` is the YAML key (sigs.k8s.io/yaml reads json
// tags), `env:"NAME"` the environment variable, `doc:"..."` the description.
package config

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"iter"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
	"sigs.k8s.io/yaml"
)

// Validator is implemented by configs that check themselves. Validate
// returns every problem at once (errors.Join).
type Validator interface {
	Validate() error
}

// Load fills cfg (a pointer to a struct already holding its defaults) from
// the YAML file at path (if path is not empty) and the environment, then
// validates it. It returns the YAML keys it did not know, so the caller can
// warn about them: the original interLink shares one file between interLink
// and its plugins, so unknown keys are not an error.
func Load(cfg any, path string) (unknown []string, err error) {
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config file: %w", err)
		}
		if err := yaml.Unmarshal(raw, cfg); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		unknown = unknownKeys(raw, cfg)
	}
	if err := env.Parse(cfg); err != nil {
		return unknown, envError(cfg, err)
	}
	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return unknown, fmt.Errorf("invalid config: %w", err)
		}
	}
	return unknown, nil
}

// unknownKeys lists the top-level keys of raw that cfg does not have.
func unknownKeys(raw []byte, cfg any) []string {
	var all map[string]json.RawMessage
	if yaml.Unmarshal(raw, &all) != nil {
		return nil
	}
	known := map[string]bool{}
	for _, f := range Fields(cfg) {
		known[strings.SplitN(f.Key, ".", 2)[0]] = true
	}
	var out []string
	for k := range all {
		if !known[k] {
			out = append(out, k)
		}
	}
	return out
}

// Duration is a time.Duration read as "30s" from YAML and the environment
// (a bare number in YAML is seconds).
type Duration struct{ time.Duration }

// D returns a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// UnmarshalText implements encoding.TextUnmarshaler (used by caarlos0/env).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// UnmarshalJSON accepts "30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return d.UnmarshalText([]byte(s))
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return errors.New("duration must be a string such as \"30s\" or a number of seconds")
	}
	d.Duration = time.Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// MarshalText writes the duration as "30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Flags are the command-line flags every binary takes.
type Flags struct {
	// Path is the YAML config file ("" for none).
	Path string
	// Test validates the config and exits.
	Test bool
}

// ParseFlags parses args (os.Args[1:]) into Flags; defaultPath comes from the
// binary's config-path environment variable, if any.
func ParseFlags(name string, args []string, defaultPath string) (Flags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f Flags
	fs.StringVar(&f.Path, "config", defaultPath, "YAML config file")
	fs.BoolVar(&f.Test, "config-test", false, "validate the config and exit")
	err := fs.Parse(args)
	return f, err
}

// envError names the environment variable of each field caarlos0/env could
// not parse (its own message names only the Go field).
func envError(cfg any, err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("environment: %w", err)
	}
	byField := map[string]string{}
	collectEnv(reflect.Indirect(reflect.ValueOf(cfg)).Type(), "", byField)
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) && byField[pe.Name] != "" {
			out = append(out, fmt.Errorf("environment variable %s: %w", byField[pe.Name], pe.Err))
			continue
		}
		out = append(out, fmt.Errorf("environment: %w", e))
	}
	return errors.Join(out...)
}

func collectEnv(t reflect.Type, prefix string, into map[string]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
			collectEnv(f.Type, prefix+f.Tag.Get("envPrefix"), into)
			continue
		}
		if name := strings.Split(f.Tag.Get("env"), ",")[0]; name != "" {
			into[f.Name] = prefix + name
		}
	}
}

// ExpandHome turns a leading ~/ of a configured path into the user's home
// directory, and cleans the path.
func ExpandHome(p string) (string, error) {
	if !strings.HasPrefix(p, "~/") {
		return filepath.Clean(p), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %q: %w", p, err)
	}
	return filepath.Join(home, p[2:]), nil
}

// WithPort replaces the port of a host:port listen address (the original's
// separate port keys); a unix socket path, or an empty port, leaves it as is.
func WithPort(listen, port string) string {
	if port == "" || strings.HasPrefix(listen, "/") || strings.HasPrefix(listen, "unix://") {
		return listen
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	return net.JoinHostPort(host, port)
}

// SortedByKey ranges over m in the order of its keys, so that what a
// validation reports of a map comes out in the same order every time.
func SortedByKey[M ~map[K]V, K cmp.Ordered, V any](m M) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}
