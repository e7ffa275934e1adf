package docs

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/seed-3f807049/interlink/observability"
)

// metric is one metric as its source declares it.
type metric struct {
	name, kind, help, component string
	labels                      []string
}

// constructors maps client_golang's constructors to metric types.
var constructors = map[string]string{
	"NewCounter": "counter", "NewCounterVec": "counter", "NewGauge": "gauge", "NewGaugeVec": "gauge",
	"NewGaugeFunc": "gauge", "NewHistogram": "histogram", "NewHistogramVec": "histogram", "NewDesc": "gauge",
}

// sourceMetrics finds every interlink_ metric the repository's non-test Go
// files declare: calls of prometheus.NewX with an Opts literal (Name, Help,
// ConstLabels) and, for vectors, a []string of labels; NewDesc with its
// name, help and labels.
func sourceMetrics(t *testing.T) []metric {
	t.Helper()
	var out []metric
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".." || d.Name() == "testdata" || d.Name() == "examples") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		component := strings.Split(filepath.ToSlash(strings.TrimPrefix(path, "../")), "/")
		comp := component[0]
		if comp == "sidecars" && len(component) > 2 {
			comp = "sidecars/" + component[1]
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || ident(sel.X) != "prometheus" || constructors[sel.Sel.Name] == "" || len(call.Args) == 0 {
				return true
			}
			m := metric{kind: constructors[sel.Sel.Name], component: comp}
			if sel.Sel.Name == "NewDesc" {
				m.name, m.help = str(call.Args[0]), str(call.Args[1])
				if len(call.Args) > 2 {
					m.labels = strs(call.Args[2])
				}
			} else {
				lit, ok := call.Args[0].(*ast.CompositeLit)
				if !ok {
					return true
				}
				for _, e := range lit.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					switch ident(kv.Key) {
					case "Name":
						m.name = str(kv.Value)
					case "Help":
						m.help = str(kv.Value)
					case "ConstLabels":
						if cl, ok := kv.Value.(*ast.CompositeLit); ok {
							for _, e := range cl.Elts {
								if kv, ok := e.(*ast.KeyValueExpr); ok {
									m.labels = append(m.labels, str(kv.Key))
								}
							}
						}
					}
				}
				if len(call.Args) > 1 {
					m.labels = append(m.labels, strs(call.Args[1])...)
				}
			}
			if strings.HasPrefix(m.name, "interlink_") {
				out = append(out, m)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b metric) int { return strings.Compare(a.name+a.component, b.name+b.component) })
	return slices.CompactFunc(out, func(a, b metric) bool { return a.name == b.name && a.component == b.component })
}

func ident(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

func str(e ast.Expr) string {
	if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
		s, _ := strconv.Unquote(bl.Value)
		return s
	}
	return ""
}

func strs(e ast.Expr) []string {
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range cl.Elts {
		if s := str(el); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func renderMetrics(ms []metric) string {
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n<!-- Generated from the sources by \"make generate\"; do not edit. -->\n\n")
	b.WriteString("Every binary serves these on `/metrics` (Prometheus text format), from its own registry, with\n")
	b.WriteString("`interlink_build_info{binary, version}` and the Go and process collectors. See\n")
	b.WriteString("[observability.md](observability.md) for scraping, dashboards and alerts.\n\n")
	b.WriteString("| metric | type | labels | component | description |\n| --- | --- | --- | --- | --- |\n")
	for _, m := range ms {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", m.name, m.kind, strings.Join(m.labels, ", "), m.component, strings.ReplaceAll(m.help, "|", "\\|"))
	}
	return b.String()
}

// TestMetricsDocIsFresh fails when docs/metrics.md differs from what the
// sources declare. Run "make generate" to rewrite it.
func TestMetricsDocIsFresh(t *testing.T) {
	want := renderMetrics(sourceMetrics(t))
	if *update {
		if err := os.WriteFile("metrics.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("metrics.md")
	if err != nil {
		t.Fatalf("docs/metrics.md: %v (run make generate)", err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("docs/metrics.md is stale; run make generate (-generated +file):\n%s", diff)
	}
}

var metricRef = regexp.MustCompile(`\binterlink_[a-z_]+`)

// known reports whether a name in a query is a declared metric (or one of
// a histogram's series).
func known(ms []metric, name string) bool {
	for _, m := range ms {
		if name == m.name || m.kind == "histogram" && (name == m.name+"_bucket" || name == m.name+"_sum" || name == m.name+"_count") {
			return true
		}
	}
	return false
}

// TestDashboardsAndAlertsUseDeclaredMetrics: every dashboard panel has a
// query using an interlink_ metric, and every metric a dashboard or an alert
// names is one the sources declare.
func TestDashboardsAndAlertsUseDeclaredMetrics(t *testing.T) {
	ms := sourceMetrics(t)
	files, _ := filepath.Glob("../observability/dashboards/*.json")
	if len(files) < 2 {
		t.Fatalf("dashboards: %v, want at least 2", files)
	}
	for _, f := range files {
		panels, err := observability.ReadDashboard(f)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[int]bool{}
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", f, p.ID)
			}
			ids[p.ID] = true
			uses := false
			for _, tg := range p.Targets {
				for _, name := range metricRef.FindAllString(tg.Expr, -1) {
					uses = true
					if !known(ms, name) {
						t.Errorf("%s: panel %q uses %s, which no source declares", f, p.Title, name)
					}
				}
			}
			if !uses {
				t.Errorf("%s: panel %q uses no interlink_ metric", f, p.Title)
			}
		}
	}
	b, err := os.ReadFile("../observability/alerts/interlink.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, name := range metricRef.FindAllString(r.Expr, -1) {
				if !known(ms, name) {
					t.Errorf("alert %s uses %s, which no source declares", r.Alert, name)
				}
			}
		}
	}
}
