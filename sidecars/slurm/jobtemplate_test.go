package slurm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-3f807049/interlink/functions/api"
)

// jobTemplateFile writes a JobScriptTemplate and returns its path.
func jobTemplateFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.tmpl")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSlurmJobScriptTemplate: the operator's template goes into the job script
// after CommandPrefix, with the pod's fields.
func TestSlurmJobScriptTemplate(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandPrefix = "module load site"
	cfg.JobScriptTemplate = jobTemplateFile(t, `echo "setup for" {{.Namespace}} {{.Name}} {{.UID}} uid={{.JobUID}}
{{range .Containers}}echo image {{.Image}} of {{.Name}}
{{end}}`)
	tmpl, err := loadJobTemplate(cfg.JobScriptTemplate)
	if err != nil {
		t.Fatal(err)
	}
	j, err := buildJob(&cfg, &site{jobTemplate: tmpl}, testPod(), "/data/interlink/jobs/team-a-"+testUID)
	if err != nil {
		t.Fatal(err)
	}
	want := "# JobScriptTemplate (from the sidecar's config)\necho \"setup for\" team-a web " + testUID + " uid=-1\necho image ghcr.io/acme/app:v1 of main\necho image /images/tools.sif of sidecar\n"
	if !strings.Contains(j.script, want) {
		t.Errorf("script lacks the rendered template %q:\n%s", want, j.script)
	}
	if strings.Index(j.script, "module load site") > strings.Index(j.script, "# JobScriptTemplate") {
		t.Error("the template's output comes before CommandPrefix")
	}
	bashSyntax(t, j.script)
}

// TestSlurmJobScriptTemplateKeepsPodValuesData: pod values that look like
// template code or shell code print as themselves, one word each: the
// rendered line, run by bash, prints each value back byte for byte, and
// runs nothing.
func TestSlurmJobScriptTemplateKeepsPodValuesData(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	values := map[string]string{
		"template": "{{.Dir}}{{range .Containers}}x{{end}}",
		"subst":    "$(touch " + marker + ")",
		"backtick": "`touch " + marker + "`",
		"quotes":   `it's "quoted" \ and ; touch ` + marker,
		"newline":  "a\ntouch " + marker,
		"empty":    "",
		"glob":     "/*",
	}
	cfg := testConfig(t)
	var tmpl strings.Builder
	keys := []string{"template", "subst", "backtick", "quotes", "newline", "empty", "glob"}
	for _, k := range keys {
		tmpl.WriteString(`printf '%s|' {{index .Annotations "` + k + `"}}` + "\n")
	}
	cfg.JobScriptTemplate = jobTemplateFile(t, tmpl.String())
	tt, err := loadJobTemplate(cfg.JobScriptTemplate)
	if err != nil {
		t.Fatal(err)
	}
	data := testPod()
	for k, v := range values {
		data.Pod.Annotations[k] = v
	}
	data.Pod.Name = "{{.UID}}"
	b := &builder{cfg: &cfg, pod: &data.Pod, dir: "/d", uid: -1}
	out, err := renderJobTemplate(tt, b)
	if err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to run the rendered template: %v", err)
	}
	got, err := exec.Command(bash, "-c", out).CombinedOutput() //nolint:gosec // the test's own script
	if err != nil {
		t.Fatalf("bash: %v\n%s\n%s", err, out, got)
	}
	var want strings.Builder
	for _, k := range keys {
		want.WriteString(values[k] + "|")
	}
	if string(got) != want.String() {
		t.Errorf("the values printed %q, want %q (template output:\n%s)", got, want.String(), out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a pod value ran as shell code")
	}
	if strings.Contains(out, "/d") {
		t.Errorf("a pod value ran as template code: %s", out)
	}
}

// TestSlurmJobScriptTemplateErrors: a bad template is refused at load, naming
// the file and line; output past the cap, and a pod carrying a job script
// from interlink, are refused.
func TestSlurmJobScriptTemplateErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.JobScriptTemplate = jobTemplateFile(t, "echo ok\necho {{.Name\n")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "job.tmpl:2") {
		t.Errorf("a template that does not parse: %v, want an error naming job.tmpl:2", err)
	}
	cfg.JobScriptTemplate = filepath.Join(t.TempDir(), "missing.tmpl")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "JobScriptTemplate") {
		t.Errorf("a missing template: %v", err)
	}
	cfg.JobScriptTemplate = jobTemplateFile(t, `{{range .Containers}}{{printf "%0900000d" 0}}{{end}}`)
	tmpl, err := loadJobTemplate(cfg.JobScriptTemplate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildJob(&cfg, &site{jobTemplate: tmpl}, testPod(), "/d"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an output past the cap: %v", err)
	}
	data := testPod()
	data.Pod.Annotations["nul"] = "a\x00b"
	if _, err := buildJob(&cfg, &site{jobTemplate: tmpl}, data, "/d"); err == nil || !strings.Contains(err.Error(), "annotation nul") {
		t.Errorf("a NUL byte in an annotation: %v, want an error naming it", err)
	}
	data = testPod()
	data.JobScript = "#!/bin/sh\ntouch /tmp/x\n"
	if _, err := buildJob(&cfg, nil, data, "/d"); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), "JobScriptTemplate") {
		t.Errorf("a job script from interlink: %v, want a 400 naming JobScriptTemplate", err)
	}
}
