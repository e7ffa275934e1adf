package slurm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"
)

// The operator's job-script template (JobScriptTemplate): a Go text/template
// whose output goes into every job script after CommandPrefix, run by the
// job's shell on the compute node before the containers. It is the site's
// code; the pod's values reach it as data only: every string of the pod is a
// shellWord, which prints as one quoted shell word, so a value can neither
// become template code (a template is parsed once, from the operator's file)
// nor shell code.

// maxJobTemplate bounds the template file and each rendering.
const maxJobTemplate = 1 << 20

// shellWord is a string of the pod: printed by a template, it is one
// literal word of the job's shell (bash quoting), whatever it holds.
type shellWord string

// String quotes w for bash. A value bash cannot hold (a NUL byte) prints
// as an empty word; renderJobTemplate refuses such a pod first.
func (w shellWord) String() string {
	q, err := quote(string(w))
	if err != nil {
		return "''"
	}
	return q
}

// jobTemplateData is what a JobScriptTemplate reads of a pod.
type jobTemplateData struct {
	// Namespace, Name and UID of the pod.
	Namespace, Name, UID shellWord
	// Labels and Annotations of the pod.
	Labels, Annotations map[string]shellWord
	// InitContainers and Containers, in order: their name and image.
	InitContainers, Containers []jobTemplateContainer
	// Dir is the pod's directory on the sidecar's host.
	Dir shellWord
	// JobUID is the job's uid (sbatch --uid), or -1 for the sidecar's own.
	JobUID int64
}

// jobTemplateContainer is a container as a JobScriptTemplate reads it.
type jobTemplateContainer struct {
	Name, Image shellWord
}

// loadJobTemplate reads and parses the template at path ("" for none).
func loadJobTemplate(path string) (*template.Template, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path) //nolint:gosec // the operator's config names it
	if err != nil {
		return nil, fmt.Errorf("JobScriptTemplate: %w", err)
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxJobTemplate+1))
	if err != nil {
		return nil, fmt.Errorf("JobScriptTemplate %s: %w", path, err)
	}
	if len(b) > maxJobTemplate {
		return nil, fmt.Errorf("JobScriptTemplate %s is larger than %d bytes", path, maxJobTemplate)
	}
	t, err := template.New(path).Option("missingkey=error").Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("JobScriptTemplate: %w", err)
	}
	return t, nil
}

// renderJobTemplate renders t for the pod of b.
func renderJobTemplate(t *template.Template, b *builder) (string, error) {
	p := b.pod
	var bad []string
	word := func(what, v string) shellWord {
		if strings.ContainsRune(v, 0) {
			bad = append(bad, what)
		}
		return shellWord(v)
	}
	words := func(what string, m map[string]string) map[string]shellWord {
		out := make(map[string]shellWord, len(m))
		for k, v := range m {
			out[k] = word(what+" "+k, v)
		}
		return out
	}
	containers := func(cs []corev1.Container) []jobTemplateContainer {
		out := make([]jobTemplateContainer, 0, len(cs))
		for _, c := range cs {
			out = append(out, jobTemplateContainer{Name: shellWord(c.Name), Image: word("the image of container "+c.Name, c.Image)})
		}
		return out
	}
	d := jobTemplateData{Namespace: shellWord(p.Namespace), Name: shellWord(p.Name), UID: shellWord(p.UID),
		Labels: words("label", p.Labels), Annotations: words("annotation", p.Annotations),
		InitContainers: containers(p.Spec.InitContainers), Containers: containers(p.Spec.Containers),
		Dir: shellWord(b.dir), JobUID: b.uid}
	if len(bad) > 0 {
		sort.Strings(bad)
		return "", fmt.Errorf("a NUL byte cannot reach the job's shell (JobScriptTemplate): %s", strings.Join(bad, ", "))
	}
	var out bytes.Buffer
	if err := t.Execute(&limited{w: &out, n: maxJobTemplate}, d); err != nil {
		return "", fmt.Errorf("JobScriptTemplate %s: %w", t.Name(), err)
	}
	return out.String(), nil
}

// limited writes at most n bytes to w, then fails.
type limited struct {
	w io.Writer
	n int
}

var errJobTemplateTooLong = fmt.Errorf("its output is larger than %d bytes", maxJobTemplate)

func (l *limited) Write(b []byte) (int, error) {
	if len(b) > l.n {
		return 0, errJobTemplateTooLong
	}
	l.n -= len(b)
	return l.w.Write(b)
}

// errJobScript refuses a pod that carries a job script from interlink (the
// original's JobScriptTemplate or job script builder on interLink's side):
// interlink is trusted to carry pods, not to run code on the site.
var errJobScript = errors.New("it carries a job script from interlink (the original interLink's JobScriptTemplate or jobscriptURL builder), which this sidecar does not run: a site's job-script template is the sidecar's JobScriptTemplate")
