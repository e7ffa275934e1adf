package charts

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the generated parts of the chart (make generate)")

const (
	chartDir     = "interlink"
	valuesStart  = "<!-- values:start (generated from values.yaml by make generate; do not edit) -->\n"
	valuesEnd    = "<!-- values:end -->\n"
	dashboardDir = "../observability/dashboards"
	alertsFile   = "../observability/alerts/interlink.rules.yaml"
)

// TestValuesAreDocumented fails when a value of values.yaml has no "# --"
// comment.
func TestValuesAreDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := ValueDocs(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if d.Description == "" {
			t.Errorf("value %s has an empty \"# --\" comment", d.Key)
		}
	}
}

// TestReadmeValuesTableIsFresh fails when the values table of the chart's
// README differs from what values.yaml generates.
func TestReadmeValuesTableIsFresh(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := ValueDocs(b) // missing comments: TestValuesAreDocumented
	readme := filepath.Join(chartDir, "README.md")
	got, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(got), valuesStart)
	_, after, ok2 := strings.Cut(rest, valuesEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the markers %q and %q", readme, valuesStart, valuesEnd)
	}
	want := before + valuesStart + ValuesTable(docs) + valuesEnd + after
	if *update {
		if err := os.WriteFile(readme, []byte(want), 0o644); err != nil { //nolint:gosec // the chart's README, a file of this repository
			t.Fatal(err)
		}
		got = []byte(want)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("%s: the values table is stale; run make generate (-generated +file):\n%s", readme, diff)
	}
}

// TestChartFilesAreFresh fails when the chart's copies of the dashboards
// (observability/dashboards) and alert rules (observability/alerts) differ
// from their sources: Helm cannot read files outside the chart.
func TestChartFilesAreFresh(t *testing.T) {
	sources, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil || len(sources) == 0 {
		t.Fatalf("no dashboards in %s: %v", dashboardDir, err)
	}
	pairs := map[string]string{alertsFile: filepath.Join(chartDir, "files/alerts", filepath.Base(alertsFile))}
	for _, s := range sources {
		pairs[s] = filepath.Join(chartDir, "files/dashboards", filepath.Base(s))
	}
	for src, cp := range pairs {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(cp, want, 0o644); err != nil { //nolint:gosec // a copy inside the chart, from a file of this repository
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(cp)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not a fresh copy of %s (%v); run make generate", cp, src, err)
		}
	}
	// A dashboard removed from observability/ leaves no copy behind.
	copies, _ := filepath.Glob(filepath.Join(chartDir, "files/dashboards", "*.json"))
	for _, c := range copies {
		if !slices.ContainsFunc(sources, func(s string) bool { return filepath.Base(s) == filepath.Base(c) }) {
			if *update {
				_ = os.Remove(c)
				continue
			}
			t.Errorf("%s has no source in %s; run make generate", c, dashboardDir)
		}
	}
}
