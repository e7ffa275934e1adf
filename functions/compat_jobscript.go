package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"text/template"
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
// error naming the file and line) and prepares the builder client.
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
		j.tmpl, err = template.New(cfg.JobScriptTemplate).Funcs(template.FuncMap{"shellquote": shellQuote}).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("JobScriptTemplate: %w", err)
		}
	}
	if len(j.allowed) > 0 {
		raw, err := json.Marshal(j.build.wire())
		if err != nil {
			return nil, fmt.Errorf("JobScriptBuildConfig: %w", err)
		}
		j.jobCfg = raw
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
		if !slices.Contains(j.allowed, req.JobScriptURL) {
			return api.Invalid("pod %s/%s: jobscriptURL %q is not listed in interlink's JobScriptBuilderURLs, the job script builders it may call; "+
				"add it there, or remove JobScriptBuilderURL from the virtual kubelet's config", pod.Namespace, pod.Name, req.JobScriptURL)
		}
		return j.callBuilder(ctx, session, req, data)
	}
	if j.tmpl == nil {
		return nil
	}
	w := &cappedBuffer{max: j.max}
	err := j.tmpl.Execute(w, JobScriptData{Pod: data.Pod, Containers: data.Containers, JobScriptBuild: j.build})
	if errors.Is(err, errJobScriptTooLarge) || w.over {
		return api.NewError(api.ReasonInternal, "pod %s/%s: JobScriptTemplate %s renders more than JobScriptMaxBytes (%d bytes)", pod.Namespace, pod.Name, j.tmplPath, j.max)
	}
	if err != nil {
		return api.NewError(api.ReasonInternal, "pod %s/%s: render JobScriptTemplate: %w", pod.Namespace, pod.Name, err)
	}
	data.JobScript = w.buf.String()
	return nil
}

// callBuilder POSTs the pod's data, with jobConfig, to the builder and takes
// its reply as the job script.
func (j *JobScripter) callBuilder(ctx context.Context, session string, req *api.PodCreateRequests, data *api.RetrievedPodData) error {
	pod := &req.Pod
	data.JobConfig = j.jobCfg
	body, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("pod %s/%s: encode job script builder request: %w", pod.Namespace, pod.Name, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.JobScriptURL, bytes.NewReader(body))
	if err != nil {
		return api.Invalid("pod %s/%s: jobscriptURL %q: %w", pod.Namespace, pod.Name, req.JobScriptURL, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if session != "" {
		hr.Header.Set(api.HeaderSession, session)
	}
	resp, err := j.client.Do(hr)
	if err != nil {
		return api.Unavailable("pod %s/%s: job script builder %s: %w", pod.Namespace, pod.Name, req.JobScriptURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	script, err := io.ReadAll(io.LimitReader(resp.Body, j.max+1))
	if err != nil {
		return api.Unavailable("pod %s/%s: read job script builder %s reply: %w", pod.Namespace, pod.Name, req.JobScriptURL, err)
	}
	if resp.StatusCode/100 != 2 {
		return api.Unavailable("pod %s/%s: job script builder %s replied %s: %.200q", pod.Namespace, pod.Name, req.JobScriptURL, resp.Status, script)
	}
	if int64(len(script)) > j.max {
		return api.Unavailable("pod %s/%s: job script builder %s replied more than JobScriptMaxBytes (%d bytes)", pod.Namespace, pod.Name, req.JobScriptURL, j.max)
	}
	data.JobScript = string(script)
	return nil
}

// shellQuote is the template function shellquote (not in the original):
// s as one literal word of a bash script.
func shellQuote(s string) (string, error) {
	q, err := syntax.Quote(s, syntax.LangBash)
	if err != nil {
		return "", fmt.Errorf("shellquote %q: %w", s, err)
	}
	return q, nil
}

var errJobScriptTooLarge = errors.New("job script too large")

// cappedBuffer is a buffer that refuses to grow past max.
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int64
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if int64(c.buf.Len())+int64(len(p)) > c.max {
		c.over = true
		return 0, errJobScriptTooLarge
	}
	return c.buf.Write(p)
}
