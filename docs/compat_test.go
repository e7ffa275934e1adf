package docs

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	east "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"
)

// testName is a Go test (or one of its subtests) named in a "checked by" cell.
var testName = regexp.MustCompile(`\b(Test[A-Z0-9_]\w*)(/[\w/.-]+)?`)

// TestCompatRowsAreTested: every row of docs/compat.md names, in its
// "checked by" column, at least one Go test that exists in the repository,
// and no table of it is empty.
func TestCompatRowsAreTested(t *testing.T) {
	src, err := os.ReadFile("compat.md")
	if err != nil {
		t.Fatal(err)
	}
	tests := goTests(t)
	md := goldmark.New(goldmark.WithExtensions(extension.Table))
	doc := md.Parser().Parse(text.NewReader(src))
	tables, rows := 0, 0
	err = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		tbl, ok := n.(*east.Table)
		if !entering || !ok {
			return ast.WalkContinue, nil
		}
		tables++
		header := cells(tbl.FirstChild(), src)
		col := len(header) - 1
		if col < 0 || header[col] != "checked by" {
			t.Errorf("a table of compat.md whose last column is %q, not \"checked by\"", header)
			return ast.WalkSkipChildren, nil
		}
		n0 := rows
		for r := tbl.FirstChild().NextSibling(); r != nil; r = r.NextSibling() {
			rows++
			c := cells(r, src)
			if len(c) <= col {
				t.Errorf("row %q has no \"checked by\" cell", c)
				continue
			}
			names := testName.FindAllStringSubmatch(c[col], -1)
			if len(names) == 0 {
				t.Errorf("row %q names no test", c[0])
			}
			for _, m := range names {
				if !tests[m[1]] {
					t.Errorf("row %q names %s, which is no test of the repository", c[0], m[1])
				}
			}
		}
		if rows == n0 {
			t.Errorf("table with columns %q has no rows", header)
		}
		return ast.WalkSkipChildren, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tables == 0 {
		t.Fatal("compat.md has no tables")
	}
	t.Logf("%d rows in %d tables, each checked by a test", rows, tables)
}

// cells is the text of a table row's (or header's) cells.
func cells(row ast.Node, src []byte) []string {
	var out []string
	for c := row.FirstChild(); c != nil; c = c.NextSibling() {
		var b bytes.Buffer
		_ = ast.Walk(c, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
			if entering && n.Kind() == ast.KindText {
				b.Write(n.(*ast.Text).Segment.Value(src))
			}
			if entering && n.Kind() == ast.KindString {
				b.Write(n.(*ast.String).Value)
			}
			return ast.WalkContinue, nil
		})
		out = append(out, strings.TrimSpace(b.String()))
	}
	return out
}

// goTests is the set of the repository's test function names.
func goTests(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	out := map[string]bool{}
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != ".." || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p) //nolint:gosec // the repository's own files
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
