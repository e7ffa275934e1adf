//go:build e2e

package demo

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// What a hostile pod must come to.
type outcome int

const (
	// refused: Failed with reason ProviderFailed, the message naming the
	// config key that would allow it.
	refused outcome = iota
	// accepted: run as a job, to Succeeded.
	accepted
	// harmless: refused or run, as long as nothing runs on the host.
	harmless
)

// hostile is one variant: a pod whose annotations, env or command try to
// run a command on the SLURM host, where it would leave a file in the
// marker directory.
type hostile struct {
	class, name string
	want        outcome
	key         string // the config key a refusal names
	annotations map[string]string
	env         []corev1.EnvVar
	command     []string // default: sh -c 'echo ran'
	bin         bool     // carries the hostile scripts as a volume (see hostileBin)
	// apiMayRefuse: an env name that only an API server with relaxed env
	// name validation (Kubernetes 1.34 on) accepts.
	apiMayRefuse bool
}

func (h hostile) podName() string { return h.class + "-" + h.name }

// touch is a command leaving name in the marker directory.
func touch(marker, name string) string { return "touch " + marker + "/" + name }

func ann(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func envVars(kv ...string) []corev1.EnvVar {
	var e []corev1.EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		e = append(e, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
	}
	return e
}

// refusals are variants the sidecar must refuse naming key.
func refusals(key, annotation string, nameValues ...string) []hostile {
	var hs []hostile
	for i := 0; i+1 < len(nameValues); i += 2 {
		hs = append(hs, hostile{name: nameValues[i], want: refused, key: key, annotations: ann(annotation, nameValues[i+1])})
	}
	return hs
}

// annotationVariants use the other annotations that reach the job script or
// the runtime's command line: each is off unless the operator allows it.
func annotationVariants(m string) []hostile {
	const (
		preExec    = "slurm-job.vk.io/pre-exec"
		options    = "slurm-job.vk.io/singularity-options"
		mounts     = "slurm-job.vk.io/singularity-mounts"
		root       = "slurm-job.vk.io/image-root"
		runtimeAnn = "interlink.io/runtime"
	)
	hs := refusals("AllowPreExec", preExec,
		"pre-exec", touch(m, "annotation-pre-exec"),
		"pre-exec-subst", "echo $("+touch(m, "annotation-pre-exec-subst")+")")
	hs = append(hs, refusals("AllowedSingularityOptions", options,
		"options", "--bind /:/host",
		"options-subst", "--env=X=$("+touch(m, "annotation-options-subst")+")")...)
	hs = append(hs, refusals("AllowedHostPaths", mounts,
		"mounts", "--bind /etc:/host-etc",
		"mounts-subst", "--bind $("+touch(m, "annotation-mounts-subst")+"):/x")...)
	// The marker directory itself, bound into a container that writes there.
	hs = append(hs, hostile{name: "mounts-marker", want: refused, key: "AllowedHostPaths",
		annotations: ann(mounts, "--bind "+m+":/marker"), command: []string{"touch", "/marker/annotation-mounts-marker"}})
	hs = append(hs, refusals("AllowedImageRoots", root,
		"image-root", "/",
		"image-root-parent", "../../..",
		"image-root-subst", "$("+touch(m, "annotation-image-root-subst")+")")...)
	return append(hs, refusals("AllowedRuntimes", runtimeAnn,
		"runtime-podman", "podman",
		"runtime-singularity", "singularity",
		"runtime-subst", "charliecloud;"+touch(m, "annotation-runtime-subst"))...)
}

// sbatchVariants give sbatch options that change what it prints (its reply
// must be taken only as a job ID), that name paths, commands or the job's
// identity, and allowed options with hostile values.
func sbatchVariants(m string) []hostile {
	hs := []hostile{{name: "allowed", want: accepted, annotations: ann("slurm-job.vk.io/flags", "--nice=10 --time=00:05:00")}}
	return append(hs, refusals("AllowedSbatchFlags", "slurm-job.vk.io/flags",
		"short-v", "-V",
		"version", "--version",
		"vers", "--vers",
		"help", "--help",
		"usage", "--usage",
		"test-only", "--test-only",
		"te", "--te",
		"clusters", "--clusters=x",
		"short-m", "-M x",
		"output", "--output="+m+"/sbatch-output",
		"short-o", "-o "+m+"/sbatch-short-o",
		"error", "--error="+m+"/sbatch-error",
		"wrap", "--wrap='"+touch(m, "sbatch-wrap")+"'",
		"chdir", "--chdir=/",
		"short-d", "-D /",
		"export", "--export=ALL",
		"export-file", "--export-file=/etc/environment",
		"get-user-env", "--get-user-env",
		"uid", "--uid=0",
		"gid", "--gid=0",
		"array", "--array=0-1",
		"comment", "--comment=interlink-pod=victim",
		"subst", "--time=$("+touch(m, "sbatch-subst")+")",
		"backtick", "--nice=`"+touch(m, "sbatch-backtick")+"`",
		"semicolon", "--nice=1;"+touch(m, "sbatch-semicolon"),
		"newline", "--nice=1\n--wrap='"+touch(m, "sbatch-newline")+"'",
	)...)
}

// mpiVariants put a host command among the mpi-flags, whose words come
// before the container's command on the job's mpiexec line; the demo
// allows -n with one value (AllowedMPIFlags: ["-n="]).
func mpiVariants(m string) []hostile {
	const flags = "slurm-job.vk.io/mpi-flags"
	sh := func(name string) string { return "/bin/sh -c '" + touch(m, "mpi-"+name) + "'" }
	hs := []hostile{
		// mpich's mpiexec starts its processes with srun inside the job.
		{name: "allowed", want: accepted, annotations: ann(flags, "-n 1")},
		// One quoted value: refused, or handed to mpiexec as one word.
		{name: "quoted-value", want: harmless, annotations: ann(flags, "-n '1; "+touch(m, "mpi-quoted-value")+"'")},
	}
	return append(hs, refusals("AllowedMPIFlags", flags,
		"program", "-n 1 "+sh("program"),
		"separator", "-n 1 "+sh("separator")+" --",
		"separator-first", "-n 1 -- "+sh("separator-first"),
		"mpmd", "-n 1 "+sh("mpmd")+" : -n 1",
		"colon-value", "-n : -n 1 "+sh("colon-value")+" :",
		"dash-value", "-n -launcher-exec /bin/sh",
		"option", "-n 1 -launcher-exec /bin/sh",
		"smuggle", "-n=1;"+touch(m, "mpi-smuggle"),
		"subst", "-n $("+touch(m, "mpi-subst")+")",
		"backtick", "-n `"+touch(m, "mpi-backtick")+"`",
		"variable", "-n 1$IFS/bin/sh$IFS-c$IFS'"+touch(m, "mpi-variable")+"'",
		"newline", "-n 1\n"+touch(m, "mpi-newline"),
	)...)
}

// envVariants give the container env that would run a host command if it
// reached the job's shell or a program on the host: a PATH to the pod's own
// scripts named after host programs (relative: the job's shell runs in the
// pod's directory), shell start-up files, options and prompts, exported
// functions, names and values made to break quoting. Run or refused, either
// way nothing may land in the marker directory.
func envVariants(m string) []hostile {
	const path = "data/volumes/bin:/usr/bin:/bin"
	const hook = "data/volumes/bin/hook"
	subst := func(name string) string { return "$(" + touch(m, "env-"+name) + ")" }
	fn := func(name string) string { return "() { " + touch(m, "env-bash-func-"+name) + "; }" }
	hs := []hostile{
		{name: "path", env: envVars("PATH", path)},
		{name: "path-subst", env: envVars("PATH", subst("path-subst")+":"+path)},
		{name: "bash-env", env: envVars("BASH_ENV", hook)},
		{name: "bash-env-subst", env: envVars("BASH_ENV", subst("bash-env-subst"))},
		{name: "env", env: envVars("ENV", hook)},
		{name: "env-subst", env: envVars("ENV", "`"+touch(m, "env-env-subst")+"`")},
		{name: "xtrace-ps4", env: envVars("SHELLOPTS", "xtrace", "PS4", subst("xtrace-ps4"))},
		{name: "bashopts", env: envVars("BASHOPTS", "extdebug:failglob:xpg_echo")},
		{name: "ifs", env: envVars("IFS", "/")},
		{name: "ld-preload", env: envVars("LD_PRELOAD", "/nonexistent.so")},
		{name: "prompt-command", env: envVars("PROMPT_COMMAND", touch(m, "env-prompt-command"))},
		{name: "value-newline", env: envVars("GREETING", "hi\n"+touch(m, "env-value-newline")+"\n")},
		{name: "value-quotes", env: envVars("GREETING", `x'"; `+touch(m, "env-value-quotes")+" #")},
		{name: "all", env: envVars("PATH", path, "BASH_ENV", hook, "ENV", hook, "SHELLOPTS", "xtrace", "PS4", subst("all-ps4"),
			"BASHOPTS", "extdebug", "IFS", "/", "LD_PRELOAD", "/nonexistent.so", "PROMPT_COMMAND", touch(m, "env-all-prompt-command"))},
		// The container itself writing to the marker's path: the
		// confinement the other variants rely on (a private /tmp).
		{name: "container", command: []string{"touch", m + "/env-container"}},
		{name: "name-subst", apiMayRefuse: true, env: envVars("X"+subst("name-subst"), "1")},
		{name: "name-semicolon", apiMayRefuse: true, env: envVars("A;"+touch(m, "env-name-semicolon")+";B", "1")},
		{name: "name-backtick", apiMayRefuse: true, env: envVars("`"+touch(m, "env-name-backtick")+"`", "1")},
		// Functions a bash on the host would import, hiding the script's commands.
		{name: "bash-func", apiMayRefuse: true, env: envVars("BASH_FUNC_mkdir%%", fn("mkdir"), "BASH_FUNC_cd%%", fn("cd"),
			"BASH_FUNC_ch-run%%", fn("ch-run"), "BASH_FUNC_printf%%", fn("printf"), "BASH_FUNC_mv%%", fn("mv"))},
	}
	for i := range hs {
		hs[i].want, hs[i].bin = harmless, true
	}
	return hs
}

// hostileBin is the ConfigMap of the env variants: scripts named after the
// programs the job runs on the host, and a shell start-up file (hook). Run
// on the host (the job's environment names the job) or in a container
// (whose environment is the pod's), each leaves a file naming where it ran.
func hostileBin(marker string) *corev1.ConfigMap {
	payload := "touch '" + marker + "'/\"${SLURM_JOB_NAME:-container}\"-"
	data := map[string]string{"hook": payload + "hook\n"}
	for _, p := range []string{"ch-run", "mkdir", "bash", "sh", "cat", "mv", "date", "printf", "mpiexec", "podman"} {
		data[p] = "#!/bin/sh\n" + payload + p + "\n"
	}
	return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "hostile-bin"}, Data: data}
}

// demoPod is a busybox pod for the demo's virtual node, as examples/pods/hello.yaml.
func demoPod(namespace, name string, command ...string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"type": "virtual-kubelet"},
			Tolerations:   []corev1.Toleration{{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "main", Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent,
				Command: command}},
		},
	}
}

func (h hostile) pod() *corev1.Pod {
	cmd := h.command
	if cmd == nil {
		cmd = []string{"sh", "-c", "echo ran"}
	}
	p := demoPod("default", h.podName(), cmd...)
	p.Labels = map[string]string{"hostile": h.class}
	p.Annotations = h.annotations
	c := &p.Spec.Containers[0]
	c.Env = h.env
	if h.bin {
		// At data/volumes/bin in the pod's directory on the host, and at the
		// same path from the container's / for its relative PATH.
		mode := int32(0o755)
		p.Spec.Volumes = []corev1.Volume{{Name: "bin", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "hostile-bin"}, DefaultMode: &mode}}}}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "bin", MountPath: "/data/volumes/bin"}}
	}
	return p
}

// apply applies the objects as one multi-document YAML.
func (s *stack) apply(t *testing.T, objs ...any) (string, error) {
	t.Helper()
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	f := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(f, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return s.kubectlRun(t, "apply", "-f", f)
}

func (s *stack) getPod(t *testing.T, namespace, name string) (*corev1.Pod, error) {
	t.Helper()
	out, err := s.kubectlRun(t, "get", "pod", "-n", namespace, name, "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("kubectl get pod %s/%s: %w: %s", namespace, name, err, out)
	}
	var p corev1.Pod
	return &p, json.Unmarshal([]byte(out), &p)
}

// squeue lists the demo SLURM's jobs that have not ended: "ID NAME STATE" lines.
func (s *stack) squeue(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `. "$0" && exec squeue --noheader --format='%i %j %T'`, filepath.Join(s.Dir, "slurm", "env"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("squeue: %v %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// judge waits until h's pod has ended and returns what it came to,
// failing t when that is not h.want.
func (s *stack) judge(t *testing.T, h hostile) string {
	t.Helper()
	s.waitPhase(t, h.podName(), "Succeeded", "Failed")
	p, err := s.getPod(t, "default", h.podName())
	if err != nil {
		t.Fatal(err)
	}
	byProvider := p.Status.Phase == corev1.PodFailed && p.Status.Reason == "ProviderFailed"
	got := "ran: " + string(p.Status.Phase)
	if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
		got += fmt.Sprintf(", exit code %d", cs[0].State.Terminated.ExitCode)
	}
	if byProvider {
		got = "refused: " + p.Status.Message
	}
	switch {
	case h.want == refused && !byProvider:
		t.Errorf("pod %s %s, want it refused naming %s", p.Name, got, h.key)
	case h.want == refused && !strings.Contains(p.Status.Message, h.key):
		t.Errorf("pod %s %s: the reason does not name %s", p.Name, got, h.key)
	case h.want == accepted && p.Status.Phase != corev1.PodSucceeded:
		t.Errorf("pod %s %s, want it run to Succeeded", p.Name, got)
	}
	return got
}

// checkMarker fails t for every file a payload left in the marker directory.
func checkMarker(t *testing.T, marker string) {
	t.Helper()
	entries, err := os.ReadDir(marker)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a hostile payload reached the host: it left %s", filepath.Join(marker, e.Name()))
	}
}

// TestE2EHostilePods applies pods that try to run commands on the SLURM
// host, through every field of a pod that reaches the job, to make demo's
// real stack. Each must be refused, naming the config key that would allow
// it, or run confined in its container; none may touch the marker
// directory, and a long-running pod of another namespace lives through it all.
func TestE2EHostilePods(t *testing.T) {
	requireRoot(t)
	mpiexec, err := exec.LookPath("mpiexec")
	if err != nil {
		e2eenv.Prerequisite(t, "mpiexec (Debian's mpich; .ci/slurm.sh install installs it)")
	}
	if mpiexec, err = filepath.Abs(mpiexec); err != nil {
		t.Fatal(err)
	}
	marker, err := os.MkdirTemp("", "interlink-hostile-marker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(marker) })
	// Writable by whoever a payload would run as.
	if err := os.Chmod(marker, 0o777); err != nil { //nolint:gosec // the payloads' target
		t.Fatal(err)
	}
	// -n with one value is allowed: the allow-list is checked, not a blanket refusal.
	conf := filepath.Join(t.TempDir(), "slurm-hostile.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "AllowedMPIFlags: [\"-n=\"]\nMpiexecPath: %s\n", mpiexec), 0o600); err != nil {
		t.Fatal(err)
	}
	s := runDemo(t, "AUTH=static", "DEMO_SLURM_CONFIG="+conf)

	victim := demoPod("victim", "sleeper", "sleep", "3600")
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "victim"}}
	if out, err := s.apply(t, ns, victim); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	var jobID string
	eventually(t, "the victim pod running", 2*time.Minute, func() error {
		p, err := s.getPod(t, "victim", "sleeper")
		if err != nil {
			return err
		}
		if jobID = p.Annotations[api.AnnotationJobID]; p.Status.Phase != corev1.PodRunning || jobID == "" {
			return fmt.Errorf("phase %s, job %q", p.Status.Phase, jobID)
		}
		return nil
	})
	if t.Failed() {
		t.FailNow()
	}
	// checkVictim: still Running, as the same job, in squeue too.
	checkVictim := func(t *testing.T) {
		t.Helper()
		p, err := s.getPod(t, "victim", "sleeper")
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Annotations[api.AnnotationJobID]; p.Status.Phase != corev1.PodRunning || p.Status.Reason != "" || got != jobID {
			t.Errorf("the victim pod: phase %s, reason %q (%s), job %q; want Running as job %s", p.Status.Phase, p.Status.Reason, p.Status.Message, got, jobID)
		}
		if q := s.squeue(t); !strings.Contains("\n"+q+"\n", "\n"+jobID+" victim-sleeper RUNNING\n") {
			t.Errorf("the victim's job %s is not running:\n%s", jobID, q)
		}
	}

	classes := []struct {
		name     string
		variants []hostile
	}{
		{"annotation", annotationVariants(marker)},
		{"sbatch", sbatchVariants(marker)},
		{"mpi", mpiVariants(marker)},
		{"env", envVariants(marker)},
	}
	// Every pod at once; names only some API servers accept, one by one.
	objs := []any{hostileBin(marker)}
	var maybe []hostile
	for _, c := range classes {
		for i := range c.variants {
			h := &c.variants[i]
			h.class = c.name
			if h.apiMayRefuse {
				maybe = append(maybe, *h)
			} else {
				objs = append(objs, h.pod())
			}
		}
	}
	if out, err := s.apply(t, objs...); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	apiRefused := map[string]string{}
	for _, h := range maybe {
		if out, err := s.apply(t, h.pod()); err != nil {
			apiRefused[h.podName()] = strings.TrimSpace(out)
		}
	}

	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tVARIANT\tOUTCOME")
	for _, c := range classes {
		t.Run(c.name, func(t *testing.T) {
			for _, h := range c.variants {
				got, ok := apiRefused[h.podName()]
				if ok {
					got = "refused by the API server: " + got
				} else {
					got = s.judge(t, h)
				}
				// A refusal's message ends with the sidecar's own words
				// ("pod default/NAME: REASON"), after those of interlink.
				if i := strings.LastIndex(got, h.podName()+": "); strings.HasPrefix(got, "refused: ") && i >= 0 {
					got = "refused: " + got[i+len(h.podName())+2:]
				}
				if len(got) > 200 {
					got = got[:200] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.name, h.name, strings.ReplaceAll(got, "\n", `\n`))
			}
			checkMarker(t, marker)
			checkVictim(t)
		})
	}
	_ = tw.Flush()
	t.Logf("hostile pods:\n%s", table.String())

	s.mustKubectl(t, "delete", "pods", "-l", "hostile", "--wait=true", "--timeout=90s")
	checkVictim(t)
	s.mustKubectl(t, "delete", "pod", "-n", "victim", "sleeper", "--wait=true", "--timeout=90s")
	eventually(t, "no job left after the pods were deleted", 30*time.Second, func() error {
		if q := s.squeue(t); q != "" {
			return fmt.Errorf("jobs left in squeue:\n%s", q)
		}
		return nil
	})
	checkMarker(t, marker)
}
