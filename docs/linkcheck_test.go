// Package docs holds interLink's documentation. Its Go code is tests only:
// TestLinks keeps the links in the top-level markdown files (README.md first)
// and in docs/**/*.md from breaking, and TestConfigDocIsFresh keeps
// docs/config.md equal to what the Config structs generate.
//
// Links are read with goldmark, never by hand. A relative link must name a file
// or folder inside the repository, and its #fragment must name a heading of the
// target markdown file (as a GitHub-style slug) or an explicit <a id> or
// <a name> in it. External links are not fetched; they only have to parse.
package docs

import (
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
	"github.com/yuin/goldmark/util"
)

// TestLinks checks every link and image in the repository's markdown.
func TestLinks(t *testing.T) {
	files, err := markdownFiles("..")
	if err != nil {
		t.Fatal(err)
	}
	c, err := newLinkChecker("..")
	if err != nil {
		t.Fatal(err)
	}
	broken, err := c.check(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Errorf("broken link: %s", b)
	}
	t.Logf("checked %d links in %d markdown files", c.links, len(files))
}

// TestCheckerFixture runs the checker on testdata/linkcheck as if it were a
// repository root and expects exactly the broken links listed there.
func TestCheckerFixture(t *testing.T) {
	root := filepath.Join("testdata", "linkcheck")
	files, err := markdownFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"README.md", "docs/guide.md"}; !slices.Equal(files, want) {
		t.Fatalf("markdownFiles(%s) = %q, want %q", root, files, want)
	}
	c, err := newLinkChecker(root)
	if err != nil {
		t.Fatal(err)
	}
	broken, err := c.check(files)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(broken))
	for _, b := range broken {
		got = append(got, b.String())
	}
	want := []string{
		`docs/guide.md:25: "missing.md": target does not exist`,
		`docs/guide.md:26: "../README.md#no-such-heading": no heading or anchor "no-such-heading" in README.md`,
		`docs/guide.md:27: "../../outside.md": target is outside the repository`,
		`docs/guide.md:28: "http://[::1": cannot parse URL: parse "http://[::1": missing ']' in host`,
		`docs/guide.md:29: "img/missing.png": target does not exist`,
		`docs/guide.md:30: "": empty link destination`,
		`docs/guide.md:31: "ftp://example.com/file": unsupported URL scheme "ftp"`,
		`docs/guide.md:32: "#usage-2": no heading or anchor "usage-2" in docs/guide.md`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("broken links:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	if c.links < len(want)+10 {
		t.Errorf("checked %d links, want the good ones counted too", c.links)
	}
}

// TestCheckerRequiresReadme makes sure a missing README.md fails loudly
// instead of leaving nothing to check.
func TestCheckerRequiresReadme(t *testing.T) {
	root := t.TempDir()
	_, err := markdownFiles(root)
	if err == nil || !strings.Contains(err.Error(), "README.md") {
		t.Fatalf("markdownFiles without README.md: err = %v, want an error naming README.md", err)
	}
}

func TestGitHubSlug(t *testing.T) {
	tests := []struct {
		heading string
		want    string
	}{
		{"Getting started", "getting-started"},
		{"What's new in v1.2?", "whats-new-in-v12"},
		{"API & CLI", "api--cli"},
		{"snake_case and kebab-case", "snake_case-and-kebab-case"},
		{"`make test`", "make-test"},
		{"Über Größe", "über-größe"},
		{"C++ / Go", "c--go"},
		{"Emoji 🚀 rocket", "emoji--rocket"},
		{"--flags--", "--flags--"},
		{"x² ½", "x-"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := githubSlug(tt.heading); got != tt.want {
			t.Errorf("githubSlug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

func TestSluggerDuplicates(t *testing.T) {
	var s slugger
	var got []string
	for _, h := range []string{"Usage", "Usage", "Usage-1", "Usage", "Other"} {
		got = append(got, s.slug(h))
	}
	// GitHub numbers repeats from the base slug and skips any already taken.
	want := []string{"usage", "usage-1", "usage-1-1", "usage-2", "other"}
	if !slices.Equal(got, want) {
		t.Errorf("slugs = %q, want %q", got, want)
	}
}

func TestSlugHeadingText(t *testing.T) {
	tests := []struct {
		markdown string
		want     string
	}{
		{"# Plain heading", "plain-heading"},
		{"## The `--config-test` flag", "the---config-test-flag"},
		{"## See [the *docs*](x.md)", "see-the-docs"},
		{"## Logo ![alt text](logo.png) here", "logo--here"},
		{"## A <code>tag</code> inside", "a-tag-inside"},
		{"## Escaped \\*star\\* &amp; entity", "escaped-star--entity"},
		{"Setext heading\n==============", "setext-heading"},
		{"# Trailing hashes ##", "trailing-hashes"},
	}
	md := goldmark.New(goldmark.WithExtensions(extension.GFM))
	for _, tt := range tests {
		src := []byte(tt.markdown)
		doc := parseMarkdown(md, src)
		got := doc.anchors()
		if !got[tt.want] || len(got) != 1 {
			t.Errorf("anchors of %q = %v, want only %q", tt.markdown, keys(got), tt.want)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// markdownFiles lists, relative to root and slash-separated, the markdown
// files TestLinks checks: every *.md at the root (README.md must be one) and
// every *.md under docs/, skipping testdata and hidden folders.
func markdownFiles(root string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(root, "README.md")); err != nil {
		where, _ := filepath.Abs(root)
		return nil, fmt.Errorf("README.md is missing at the repository root %s (write it; the link check starts there): %w", where, err)
	}
	top, err := filepath.Glob(filepath.Join(root, "*.md"))
	if err != nil {
		return nil, fmt.Errorf("list markdown files in %s: %w", root, err)
	}
	var files []string
	for _, f := range top {
		files = append(files, filepath.Base(f))
	}
	docs := filepath.Join(root, "docs")
	err = filepath.WalkDir(docs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == docs && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != docs && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return fs.SkipDir
			}
			return nil
		}
		if isMarkdown(p) {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list markdown files under %s: %w", docs, err)
	}
	sort.Strings(files)
	return files, nil
}

func isMarkdown(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".md" || ext == ".markdown"
}

// brokenLink is one link the checker rejects.
type brokenLink struct {
	File   string // slash-separated, relative to the checked root
	Line   int
	Target string // the destination as written in the file
	Reason string
}

func (b brokenLink) String() string {
	return fmt.Sprintf("%s:%d: %q: %s", b.File, b.Line, b.Target, b.Reason)
}

// linkChecker checks the links of markdown files inside one repository root.
type linkChecker struct {
	root    string // absolute
	md      goldmark.Markdown
	anchors map[string]map[string]bool // absolute path of a markdown file -> its anchors
	links   int                        // links checked so far
}

func newLinkChecker(root string) (*linkChecker, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolve repository root %s: %w", root, err)
	}
	return &linkChecker{
		root:    abs,
		md:      goldmark.New(goldmark.WithExtensions(extension.GFM)),
		anchors: map[string]map[string]bool{},
	}, nil
}

// check returns the broken links of files (slash-separated paths relative to
// the root), ordered by file and line.
func (c *linkChecker) check(files []string) ([]brokenLink, error) {
	var broken []brokenLink
	for _, rel := range files {
		abs := filepath.Join(c.root, filepath.FromSlash(rel))
		doc, err := c.parse(abs)
		if err != nil {
			return nil, err
		}
		var inFile []brokenLink
		for _, l := range doc.links() {
			c.links++
			if reason := c.checkLink(abs, l.dest); reason != "" {
				inFile = append(inFile, brokenLink{File: rel, Line: l.line, Target: l.raw, Reason: reason})
			}
		}
		slices.SortStableFunc(inFile, func(a, b brokenLink) int { return a.Line - b.Line })
		broken = append(broken, inFile...)
	}
	return broken, nil
}

func (c *linkChecker) parse(abs string) (*markdownDoc, error) {
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read markdown: %w", err)
	}
	return parseMarkdown(c.md, src), nil
}

// lineAnchor is the form of GitHub's links to lines of a non-markdown file.
var lineAnchor = regexp.MustCompile(`^L\d+(C\d+)?(-L\d+(C\d+)?)?$`)

// checkLink checks one destination (escapes and character references already
// resolved) found in the file at abs; it returns why the link is broken, or ""
// when it is fine.
func (c *linkChecker) checkLink(abs, dest string) string {
	if dest == "" {
		return "empty link destination"
	}
	u, err := url.Parse(dest)
	if err != nil {
		return "cannot parse URL: " + err.Error()
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "http" || scheme == "https":
		if u.Host == "" {
			return "URL has no host"
		}
		return ""
	case scheme == "mailto":
		if u.Opaque == "" {
			return "mailto URL has no address"
		}
		return ""
	case scheme != "":
		return fmt.Sprintf("unsupported URL scheme %q", u.Scheme)
	case u.Host != "":
		// Protocol-relative (//host/path): external, not fetched.
		return ""
	}

	target := abs
	if u.Path != "" {
		if strings.HasPrefix(u.Path, "/") {
			// GitHub resolves a leading slash against the repository root.
			target = filepath.Join(c.root, filepath.FromSlash(u.Path))
		} else {
			target = filepath.Join(filepath.Dir(abs), filepath.FromSlash(u.Path))
		}
	}
	rel, err := filepath.Rel(c.root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "target is outside the repository"
	}
	info, err := os.Stat(target)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "target does not exist"
		}
		return "cannot stat target: " + err.Error()
	}
	if u.Fragment == "" {
		return ""
	}
	switch {
	case info.IsDir():
		return fmt.Sprintf("anchor %q on a folder", u.Fragment)
	case !isMarkdown(target):
		if lineAnchor.MatchString(u.Fragment) {
			return ""
		}
		return fmt.Sprintf("anchor %q on a file that is not markdown", u.Fragment)
	}
	anchors, err := c.anchorsOf(target)
	if err != nil {
		return err.Error()
	}
	if !anchors[u.Fragment] {
		return fmt.Sprintf("no heading or anchor %q in %s", u.Fragment, filepath.ToSlash(rel))
	}
	return ""
}

func (c *linkChecker) anchorsOf(abs string) (map[string]bool, error) {
	if a, ok := c.anchors[abs]; ok {
		return a, nil
	}
	doc, err := c.parse(abs)
	if err != nil {
		return nil, err
	}
	a := doc.anchors()
	c.anchors[abs] = a
	return a, nil
}

// markdownDoc is one parsed markdown file.
type markdownDoc struct {
	src        []byte
	root       ast.Node
	lineStarts []int // byte offset at which each line starts
}

func parseMarkdown(md goldmark.Markdown, src []byte) *markdownDoc {
	d := &markdownDoc{src: src, root: md.Parser().Parse(text.NewReader(src)), lineStarts: []int{0}}
	for i, b := range src {
		if b == '\n' {
			d.lineStarts = append(d.lineStarts, i+1)
		}
	}
	return d
}

// lineAt returns the 1-based line of a byte offset.
func (d *markdownDoc) lineAt(off int) int {
	return sort.Search(len(d.lineStarts), func(i int) bool { return d.lineStarts[i] > off })
}

// lineOf returns the line a node starts on, falling back to its enclosing
// block when the node has no position of its own.
func (d *markdownDoc) lineOf(n ast.Node) int {
	for ; n != nil; n = n.Parent() {
		if n.Type() == ast.TypeBlock && n.Lines().Len() > 0 {
			return d.lineAt(n.Lines().At(0).Start)
		}
		if n.Kind() != ast.KindDocument {
			if p := n.Pos(); p >= 0 {
				return d.lineAt(p)
			}
		}
	}
	return 1
}

// mdLink is one link or image destination found in a document.
type mdLink struct {
	raw  string // as written
	dest string // with escapes and character references resolved
	line int
}

// links returns every link and image destination of the document: markdown
// links, images and autolinks, and href/src in raw HTML <a> and <img> tags.
func (d *markdownDoc) links() []mdLink {
	var out []mdLink
	add := func(raw []byte, n ast.Node) {
		dest := util.ResolveEntityNames(util.ResolveNumericReferences(util.UnescapePunctuations(raw)))
		out = append(out, mdLink{raw: string(raw), dest: string(dest), line: d.lineOf(n)})
	}
	d.walk(func(n ast.Node) {
		switch n := n.(type) {
		case *ast.Link:
			add(n.Destination, n)
		case *ast.Image:
			add(n.Destination, n)
		case *ast.AutoLink:
			u := n.URL(d.src)
			if n.AutoLinkType == ast.AutoLinkEmail && !strings.HasPrefix(strings.ToLower(string(u)), "mailto:") {
				u = append([]byte("mailto:"), u...)
			}
			out = append(out, mdLink{raw: string(u), dest: string(u), line: d.lineOf(n)})
		case *ast.RawHTML:
			out = append(out, d.htmlLinks(n.Segments)...)
		case *ast.HTMLBlock:
			out = append(out, d.htmlLinks(htmlBlockLines(n))...)
		}
	})
	return out
}

// anchors returns the fragments the document answers to: a GitHub slug per
// heading, and the id or name of every raw HTML <a>.
func (d *markdownDoc) anchors() map[string]bool {
	var s slugger
	set := map[string]bool{}
	d.walk(func(n ast.Node) {
		switch n := n.(type) {
		case *ast.Heading:
			var b strings.Builder
			d.inlineText(n, &b)
			set[s.slug(strings.TrimSpace(b.String()))] = true
		case *ast.RawHTML:
			for _, t := range d.htmlTags(n.Segments) {
				if t.anchor != "" {
					set[t.anchor] = true
				}
			}
		case *ast.HTMLBlock:
			for _, t := range d.htmlTags(htmlBlockLines(n)) {
				if t.anchor != "" {
					set[t.anchor] = true
				}
			}
		}
	})
	return set
}

// walk calls fn for every node of the document in source order.
func (d *markdownDoc) walk(fn func(ast.Node)) {
	// The walker never returns an error, so neither does Walk.
	_ = ast.Walk(d.root, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if entering {
			fn(n)
		}
		return ast.WalkContinue, nil
	})
}

// inlineText writes the text a reader sees in n, as GitHub takes it for a
// heading's slug: markup, raw HTML tags and images left out.
func (d *markdownDoc) inlineText(n ast.Node, b *strings.Builder) {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Text:
			v := util.ResolveEntityNames(util.ResolveNumericReferences(util.UnescapePunctuations(c.Segment.Value(d.src))))
			b.Write(v)
			if c.SoftLineBreak() {
				b.WriteByte(' ')
			}
		case *ast.String:
			b.Write(c.Value)
		case *ast.CodeSpan:
			for t := c.FirstChild(); t != nil; t = t.NextSibling() {
				switch t := t.(type) {
				case *ast.Text:
					b.Write(t.Segment.Value(d.src))
				case *ast.String:
					b.Write(t.Value)
				}
			}
		case *ast.AutoLink:
			b.Write(c.Label(d.src))
		case *ast.RawHTML, *ast.Image:
			// Tags and images add no text.
		default:
			d.inlineText(c, b)
		}
	}
}

// slugger gives GitHub's heading ids within one document: a repeated slug gets
// -1, -2, ... appended, skipping any already taken.
type slugger struct {
	seen map[string]int
}

func (s *slugger) slug(heading string) string {
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	base := githubSlug(heading)
	slug := base
	for {
		if _, taken := s.seen[slug]; !taken {
			break
		}
		s.seen[base]++
		slug = fmt.Sprintf("%s-%d", base, s.seen[base])
	}
	s.seen[slug] = 0
	return slug
}

// githubSlug turns a heading's text into GitHub's anchor for it: lower-cased;
// letters, marks, decimal and letter digits, '-' and '_' (and other connector
// punctuation) kept; each space turned into '-'; everything else removed.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-',
			unicode.IsLetter(r),
			unicode.IsMark(r),
			unicode.In(r, unicode.Nd, unicode.Nl, unicode.Pc):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// htmlTag is what the checker takes from one raw HTML tag.
type htmlTag struct {
	link    string // href of <a>, src of <img>
	hasLink bool   // whether the tag has that attribute at all
	anchor  string // id or name of <a>
	off     int    // source offset of the tag
}

var (
	htmlTagRE  = regexp.MustCompile(`(?is)<(a|img)(\s[^>]*)?>`)
	htmlAttrRE = regexp.MustCompile("(?is)(?:^|\\s)(href|src|id|name)\\s*=\\s*(?:\"([^\"]*)\"|'([^']*)'|([^\\s\"'=<>`]+))")
)

// htmlTags finds <a> and <img> tags in raw HTML spread over segments.
func (d *markdownDoc) htmlTags(segs *text.Segments) []htmlTag {
	var buf strings.Builder
	var starts, srcStarts []int
	for i := range segs.Len() {
		s := segs.At(i)
		starts = append(starts, buf.Len())
		srcStarts = append(srcStarts, s.Start)
		buf.Write(s.Value(d.src))
	}
	raw := buf.String()
	srcOffset := func(off int) int {
		i := sort.Search(len(starts), func(i int) bool { return starts[i] > off }) - 1
		if i < 0 {
			return 0
		}
		return srcStarts[i] + off - starts[i]
	}
	var tags []htmlTag
	for _, m := range htmlTagRE.FindAllStringSubmatchIndex(raw, -1) {
		name := strings.ToLower(raw[m[2]:m[3]])
		if m[4] < 0 {
			continue
		}
		t := htmlTag{off: srcOffset(m[0])}
		for _, a := range htmlAttrRE.FindAllStringSubmatch(raw[m[4]:m[5]], -1) {
			val := html.UnescapeString(a[2] + a[3] + a[4])
			switch attr := strings.ToLower(a[1]); {
			case name == "a" && attr == "href", name == "img" && attr == "src":
				t.link, t.hasLink = val, true
			case name == "a" && (attr == "id" || attr == "name"):
				t.anchor = val
			}
		}
		tags = append(tags, t)
	}
	return tags
}

// htmlLinks returns the href and src destinations of raw HTML.
func (d *markdownDoc) htmlLinks(segs *text.Segments) []mdLink {
	var out []mdLink
	for _, t := range d.htmlTags(segs) {
		if !t.hasLink {
			continue // e.g. a bare <a id="..."> target
		}
		out = append(out, mdLink{raw: t.link, dest: t.link, line: d.lineAt(t.off)})
	}
	return out
}

// htmlBlockLines returns the segments of an HTML block, closing line included.
func htmlBlockLines(n *ast.HTMLBlock) *text.Segments {
	segs := text.NewSegments()
	for i := range n.Lines().Len() {
		segs.Append(n.Lines().At(i))
	}
	if n.HasClosure() {
		segs.Append(n.ClosureLine)
	}
	return segs
}
