package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
)

// runnableInfo marks a fenced block of the docs that `make test` runs
// against the demo (docs/runnable_e2e_test.go).
const runnableInfo = "sh runnable"

// runnableBlock is one such block and where it is.
type runnableBlock struct {
	file string
	line int
	code string
}

// runnableBlocks reads the runnable blocks of the repository's markdown
// (README.md, the top-level files and docs/), in file order.
func runnableBlocks(t *testing.T) []runnableBlock {
	t.Helper()
	files, err := markdownFiles("..")
	if err != nil {
		t.Fatal(err)
	}
	md := goldmark.New(goldmark.WithExtensions(extension.GFM))
	var blocks []runnableBlock
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		d := parseMarkdown(md, src)
		d.walk(func(n ast.Node) {
			fc, ok := n.(*ast.FencedCodeBlock)
			if !ok || fc.Info == nil {
				return
			}
			info := strings.TrimSpace(string(fc.Info.Segment.Value(src)))
			if !strings.Contains(info, "runnable") {
				return
			}
			if info != runnableInfo {
				t.Errorf("%s:%d: a block marked %q: write %q", f, d.lineOf(n), info, runnableInfo)
				return
			}
			var code strings.Builder
			for i := 0; i < fc.Lines().Len(); i++ {
				seg := fc.Lines().At(i)
				code.Write(seg.Value(src))
			}
			blocks = append(blocks, runnableBlock{file: f, line: d.lineOf(n), code: code.String()})
		})
	}
	return blocks
}

// TestRunnableBlocksParse checks, quickly, that the runnable blocks exist
// and are valid bash; the e2e test runs them.
func TestRunnableBlocksParse(t *testing.T) {
	blocks := runnableBlocks(t)
	if len(blocks) < 5 {
		t.Errorf("only %d runnable blocks in the docs; getting-started, operations and writing-a-sidecar have some", len(blocks))
	}
	for _, b := range blocks {
		cmd := exec.Command("bash", "-n")
		cmd.Stdin = strings.NewReader(b.code)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s:%d: not valid bash: %v\n%s", b.file, b.line, err, out)
		}
	}
}
