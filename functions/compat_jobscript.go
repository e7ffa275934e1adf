package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	corev1 "k8s.io/api/core/v1"
	"mvdan.cc/sh/v3/syntax"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/tracing"
)

// Defaults of the job script settings.
const (
	// DefaultJobScriptMaxBytes caps a job script, rendered or built.
	DefaultJobScriptMaxBytes = 1 << 20
	// DefaultJobScriptBuilderTimeout bounds one call to a job script builder.
	DefaultJobScriptBuilderTimeout = 60 * time.Second
	// maxTemplateFileBytes caps the JobScriptTemplate file.
	maxTemplateFileBytes = 4 << 20
)

// JobScriptData is what a JobScriptTemplate is executed with: the
// original's RetrievedPodData, by its Go field names (.Pod, .Containers,
// .JobScriptBuild, .JobScript).
type JobScriptData struct {
	Pod        corev1.Pod
	Containers []api.RetrievedContainer
	// JobScriptBuild is the configured JobScriptBuildConfig (the original
	// leaves it empty here).
	JobScriptBuild ScriptBuildConfig
	// JobScript is empty while the template runs.
	JobScript string
}

// JobScripter fills the jobScript of a create, as the original interLink
// does: from the job script builder the request names (jobscriptURL), if
// JobScriptBuilderURLs allows it, else from JobScriptTemplate.
type JobScripter struct {
	tmpl     *template.Template
	tmplPath string
	allowed  []string
	build    ScriptBuildConfig
	jobCfg   json.RawMessage
	max      int64
	client   *http.Client
}

// NewJobScripter parses cfg.JobScriptTemplate (once: a bad template is an
// error naming the file and line), makes each of its actions print a
// shell-quoted word (quoteActions) and prepares the builder client. The
// zero JobScripter renders nothing and refuses every jobscriptURL.
func NewJobScripter(cfg Config) (*JobScripter, error) {
	j := &JobScripter{
		tmplPath: cfg.JobScriptTemplate,
		allowed:  cfg.JobScriptBuilderURLs,
		build:    cfg.JobScriptBuildConfig,
		max:      cfg.JobScriptMaxBytes,
	}
	if j.max <= 0 {
		j.max = DefaultJobScriptMaxBytes
	}
	if cfg.JobScriptTemplate != "" {
		f, err := os.Open(cfg.JobScriptTemplate)
		if err != nil {
			return nil, fmt.Errorf("JobScriptTemplate: %w", err)
		}
		src, err := io.ReadAll(io.LimitReader(f, maxTemplateFileBytes+1))
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("JobScriptTemplate: read %s: %w", cfg.JobScriptTemplate, err)
		}
		if len(src) > maxTemplateFileBytes {
			return nil, fmt.Errorf("JobScriptTemplate %s is larger than %d bytes", cfg.JobScriptTemplate, maxTemplateFileBytes)
		}
		// Errors name the file by its path and the line ("template: PATH:LINE: ...").
		j.tmpl, err = template.New(cfg.JobScriptTemplate).Funcs(template.FuncMap{funcShellQuote: shellQuote, funcRaw: raw}).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("JobScriptTemplate: %w", err)
		}
		quoteActions(j.tmpl)
	}
	for _, u := range j.allowed {
		if err := checkBuilderURL(u); err != nil {
			return nil, err
		}
	}
	if len(j.allowed) > 0 {
		jobCfg, err := json.Marshal(j.build.wire())
		if err != nil {
			return nil, fmt.Errorf("JobScriptBuildConfig: %w", err)
		}
		j.jobCfg = jobCfg
		timeout := cfg.JobScriptBuilderTimeout.Duration
		if timeout <= 0 {
			timeout = DefaultJobScriptBuilderTimeout
		}
		base, _ := http.DefaultTransport.(*http.Transport)
		tr := base.Clone()
		j.client = &http.Client{
			Transport: tracing.Transport(tr),
			Timeout:   timeout,
			// A redirect would lead to a URL JobScriptBuilderURLs does not list.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return j, nil
}

// Fill sets data.JobScript (and data.JobConfig for a builder) for the create
// request req; session is the caller's InterLink-Http-Session, passed on to
// the builder. Errors name the pod: Invalid for a jobscriptURL that is not
// allowed, Unavailable for a failing builder, Internal for a template that
// does not render.
func (j *JobScripter) Fill(ctx context.Context, session string, req *api.PodCreateRequests, data *api.RetrievedPodData) error {
	pod := &req.Pod
	if req.JobScriptURL != "" {
		if len(j.allowed) == 0 {
			return api.Invalid("pod %s/%s: jobscriptURL %q: this interlink calls no job script builder (its JobScriptBuilderURLs is empty); "+
				"list the builder there, or remove JobScriptBuilderURL from the virtual kubelet's config", pod.Namespace, pod.Name, shownURL(req.JobScriptURL))
		}
		if !slices.Contains(j.allowed, req.JobScriptURL) {
			return api.Invalid("pod %s/%s: jobscriptURL %q is not listed in interlink's JobScriptBuilderURLs, the job script builders it may call; "+
				"add it there, or remove JobScriptBuilderURL from the virtual kubelet's config", pod.Namespace, pod.Name, shownURL(req.JobScriptURL))
		}
		return j.callBuilder(ctx, session, req, data)
	}
	if j.tmpl == nil {
		return nil
	}
	w := &api.CappedBuffer{Max: j.max}
	err := j.tmpl.Execute(w, JobScriptData{Pod: data.Pod, Containers: data.Containers, JobScriptBuild: j.build})
	var unquotable *syntax.QuoteError
	switch {
	case w.Over:
		return api.NewError(api.ReasonInternal, "pod %s/%s: JobScriptTemplate %s renders more than JobScriptMaxBytes (%d bytes)", pod.Namespace, pod.Name, j.tmplPath, j.max)
	case errors.As(err, &unquotable):
		return api.Invalid("pod %s/%s: render JobScriptTemplate: a value of the pod cannot be a bash word (bash strings cannot hold a NUL byte): %w", pod.Namespace, pod.Name, err)
	case err != nil:
		return api.NewError(api.ReasonInternal, "pod %s/%s: render JobScriptTemplate: %w", pod.Namespace, pod.Name, err)
	}
	data.JobScript = w.String()
	return nil
}

// callBuilder POSTs the pod's data, with jobConfig, to the builder and takes
// its reply as the job script.
func (j *JobScripter) callBuilder(ctx context.Context, session string, req *api.PodCreateRequests, data *api.RetrievedPodData) error {
	pod := &req.Pod
	shown := shownURL(req.JobScriptURL)
	data.JobConfig = j.jobCfg
	body, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("pod %s/%s: encode job script builder request: %w", pod.Namespace, pod.Name, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.JobScriptURL, bytes.NewReader(body))
	if err != nil {
		return api.Invalid("pod %s/%s: jobscriptURL %q: %w", pod.Namespace, pod.Name, shown, redactURLError(err))
	}
	hr.Header.Set("Content-Type", "application/json")
	if session != "" {
		hr.Header.Set(api.HeaderSession, session)
	}
	resp, err := j.client.Do(hr)
	if err != nil {
		return api.Unavailable("pod %s/%s: job script builder %s: %w", pod.Namespace, pod.Name, shown, redactURLError(err))
	}
	defer func() { _ = resp.Body.Close() }()
	script, err := io.ReadAll(io.LimitReader(resp.Body, j.max+1))
	if err != nil {
		return api.Unavailable("pod %s/%s: read job script builder %s reply: %w", pod.Namespace, pod.Name, shown, err)
	}
	if resp.StatusCode/100 != 2 {
		return api.Unavailable("pod %s/%s: job script builder %s replied %s: %.200q", pod.Namespace, pod.Name, shown, resp.Status, script)
	}
	if int64(len(script)) > j.max {
		return api.Unavailable("pod %s/%s: job script builder %s replied more than JobScriptMaxBytes (%d bytes)", pod.Namespace, pod.Name, shown, j.max)
	}
	data.JobScript = string(script)
	return nil
}

// Template functions a JobScriptTemplate may end an action with (neither
// is in the original).
const (
	// funcShellQuote prints a value as one literal bash word. Every action
	// that prints gets it appended (see quoteActions).
	funcShellQuote = "shellquote"
	// funcRaw prints a value as it is, for the operator's trusted text
	// only (say .JobScriptBuild values): never for a pod's value.
	funcRaw = "raw"
)

// quoteActions makes every action of t and of the templates it defines
// that prints (declares no variable) end with shellquote, unless it ends
// with shellquote or raw already: a pod's value (which its author chose)
// is a literal bash word by default, as html/template escapes HTML by
// default. It walks the parse trees, so it runs once, before Execute.
func quoteActions(t *template.Template) {
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Root != nil {
			quoteList(tt.Tree, tt.Root)
		}
	}
}

func quoteList(tree *parse.Tree, l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			quotePipe(tree, n.Pipe)
		case *parse.IfNode:
			quoteList(tree, n.List)
			quoteList(tree, n.ElseList)
		case *parse.RangeNode:
			quoteList(tree, n.List)
			quoteList(tree, n.ElseList)
		case *parse.WithNode:
			quoteList(tree, n.List)
			quoteList(tree, n.ElseList)
		case *parse.ListNode:
			quoteList(tree, n)
		}
		// {{template}} runs a template that quoteActions walks itself;
		// text, comments, break and continue print no value.
	}
}

func quotePipe(tree *parse.Tree, p *parse.PipeNode) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) == 0 {
		return // {{ $x := ... }} and {{ $x = ... }} print nothing
	}
	last := p.Cmds[len(p.Cmds)-1]
	if len(last.Args) > 0 {
		if id, ok := last.Args[0].(*parse.IdentifierNode); ok && (id.Ident == funcShellQuote || id.Ident == funcRaw) {
			return
		}
	}
	p.Cmds = append(p.Cmds, &parse.CommandNode{
		NodeType: parse.NodeCommand,
		Pos:      last.Pos,
		Args:     []parse.Node{parse.NewIdentifier(funcShellQuote).SetTree(tree).SetPos(last.Pos)},
	})
}

// shellQuote is the template function shellquote: v, printed as
// text/template prints it, as one literal word of a bash script. A value
// bash cannot hold (a NUL byte) is an error that does not repeat it.
func shellQuote(v any) (string, error) {
	q, err := syntax.Quote(printed(v), syntax.LangBash)
	if err != nil {
		return "", fmt.Errorf("%s: %w", funcShellQuote, err)
	}
	return q, nil
}

// raw is the template function raw: v printed as it is, unquoted. For the
// operator's trusted text only.
func raw(v any) string { return printed(v) }

// printed is v as an action prints it: pointers followed, nil as nothing.
func printed(v any) string {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		if _, ok := rv.Interface().(fmt.Stringer); ok {
			break
		}
		if _, ok := rv.Interface().(error); ok {
			break
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() || (rv.Kind() == reflect.Pointer && rv.IsNil()) {
		return ""
	}
	return fmt.Sprint(rv.Interface())
}

// checkBuilderURL refuses a JobScriptBuilderURLs entry that is not a plain
// http(s)://host/path URL: credentials (userinfo, a ?token= query) belong
// in a header, and the URLs are logged and repeated in error replies.
func checkBuilderURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "":
		return fmt.Errorf("JobScriptBuilderURLs: %q is not an http(s)://host/path URL", shownURL(u))
	case p.User != nil || p.RawQuery != "" || p.ForceQuery || p.Fragment != "" || strings.Contains(u, "#"):
		return fmt.Errorf("JobScriptBuilderURLs: %q has user info, a query or a fragment: credentials belong in a header, not in a URL "+
			"(interlink logs builder URLs and repeats them in error replies); list the builder as http(s)://host/path", shownURL(u))
	}
	return nil
}

// shownURL is u fit for a log or an error reply: without user info, query
// or fragment, where credentials hide.
func shownURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	p.User, p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = nil, "", false, "", ""
	return p.String()
}

// shownURLs is shownURL of each of us.
func shownURLs(us []string) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = shownURL(u)
	}
	return out
}

// redactURLError replaces the URL a *url.Error repeats with its shownURL.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: shownURL(ue.URL), Err: ue.Err}
	}
	return err
}
