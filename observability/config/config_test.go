package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string   `json:"Name" env:"SAMPLE_NAME" doc:"A name."`
	Wait    Duration `json:"Wait" env:"SAMPLE_WAIT" doc:"A wait."`
	Count   int      `json:"Count" env:"SAMPLE_COUNT"`
	Nested  nested   `json:"Nested" envPrefix:"SAMPLE_NESTED_"`
	ignored string
}

type nested struct {
	Enabled bool `json:"Enabled" env:"ENABLED" doc:"Pipe | inside."`
}

func TestLoadOrderAndUnknownKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("Name: file\nWait: 90\nCount: 2\nExtra: 1\nNested: {Enabled: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAMPLE_NAME", "env")
	cfg := sample{Name: "default", Wait: D(time.Second)}
	unknown, err := Load(&cfg, path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "env" || cfg.Wait.Duration != 90*time.Second || cfg.Count != 2 || !cfg.Nested.Enabled {
		t.Errorf("loaded %+v", cfg)
	}
	if len(unknown) != 1 || unknown[0] != "Extra" {
		t.Errorf("unknown keys %v", unknown)
	}
	_ = cfg.ignored
}

func TestDurationForms(t *testing.T) {
	t.Setenv("SAMPLE_WAIT", "1m30s")
	var cfg sample
	if _, err := Load(&cfg, ""); err != nil || cfg.Wait.Duration != 90*time.Second {
		t.Errorf("env duration: %v %v", cfg.Wait, err)
	}
	t.Setenv("SAMPLE_WAIT", "soon")
	if _, err := Load(&cfg, ""); err == nil || !strings.Contains(err.Error(), "SAMPLE_WAIT") {
		t.Errorf("bad env duration: %v", err)
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown("sample", "Intro.", &sample{Name: "x", Wait: D(time.Minute)})
	for _, want := range []string{"## sample", "| `Name` | `SAMPLE_NAME` | string | `x` | A name. |",
		"| `Wait` | `SAMPLE_WAIT` | duration | `1m0s` | A wait. |", "| `Nested.Enabled` | `SAMPLE_NESTED_ENABLED` | bool |  | Pipe \\| inside. |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// Common is a block of keys embedded in other configs.
type Common struct {
	Level string `json:"Level" env:"SAMPLE_LEVEL" doc:"A level."`
}

type embedding struct {
	Common
	Own string `json:"Own" env:"SAMPLE_OWN"`
}

func TestEmbeddedStructKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("Level: debug\nOwn: file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAMPLE_OWN", "env")
	var cfg embedding
	unknown, err := Load(&cfg, path)
	if err != nil || len(unknown) > 0 {
		t.Fatalf("load: unknown %v, %v", unknown, err)
	}
	if cfg.Level != "debug" || cfg.Own != "env" {
		t.Errorf("loaded %+v", cfg)
	}
	t.Setenv("SAMPLE_LEVEL", "warn")
	if _, err := Load(&cfg, ""); err != nil || cfg.Level != "warn" {
		t.Errorf("env of an embedded key: %+v, %v", cfg, err)
	}
	md := Markdown("sample", "Intro.", &cfg)
	if want := "| `Level` | `SAMPLE_LEVEL` | string | `warn` | A level. |"; !strings.Contains(md, want) {
		t.Errorf("markdown lacks %q:\n%s", want, md)
	}
}

func TestSortedByKey(t *testing.T) {
	m := map[string]int{"c": 3, "a": 1, "b": 2, "e": 5, "d": 4}
	var keys []string
	for k, v := range SortedByKey(m) {
		if m[k] != v {
			t.Fatalf("%s=%d, want %d", k, v, m[k])
		}
		keys = append(keys, k)
		if k == "d" {
			break
		}
	}
	if strings.Join(keys, "") != "abcd" {
		t.Fatalf("keys %v, want a b c d (then the break)", keys)
	}
}
