//go:build e2e

package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The pod-behavior suite: ordinary pods, written once, run through kubectl
// against make demo's whole stack on each backend, checking what users'
// pods rely on a kubelet for. Its table is docs/slurm.md's runtime × case
// table.

var updateDocs = flag.Bool("update-docs", os.Getenv("INTERLINK_UPDATE_DOCS") == "1",
	"rewrite docs/slurm.md's pod-behavior table from this run")

// The test images (.ci/images.sh): each with its ENTRYPOINT, CMD, ENV and
// WORKDIR given by docker build.
const (
	imgBusybox = "busybox:latest"
	imgDebian  = "interlink-test/debian:bookworm"
	imgLinks   = "interlink-test/links:1"
	nsBehave   = "behavior"
)

// behaviorCase is one case: its objects (a pod, with the ConfigMaps and
// Secrets it needs) and the check of what the pod came to.
type behaviorCase struct {
	name string
	// what the case checks, for the docs' table.
	what string
	objs []any
	pod  *corev1.Pod
	// check returns nil when the pod behaved; it may wait (eventually).
	check func(t *testing.T, s *run, c *behaviorCase) error
}

// backend is one column of the table: a stack to start and what its
// runtime itself lacks (case name → the missing feature).
type backend struct {
	name        string
	start       func(t *testing.T, images string) *stack
	unsupported map[string]string
	// notYet are cases that fail on this backend for a reason of ours,
	// not the runtime's: left out of the run, and shown as such in the
	// table until fixed (case name → what fails).
	notYet map[string]string
}

func behaviorPod(name, image string, command ...string) *corev1.Pod {
	p := demoPod(nsBehave, name, command...)
	p.Spec.Containers[0].Image = image
	return p
}

func withContainer(p *corev1.Pod, c corev1.Container) *corev1.Pod {
	c.ImagePullPolicy = corev1.PullIfNotPresent
	p.Spec.Containers = append(p.Spec.Containers, c)
	return p
}

// pyDump is a python3 command printing, as one JSON line, the named env
// variables (env) or the base64 of the named files (files).
func pyDump(kind string, names ...string) []string {
	prog := map[string]string{
		"env":   `import json,os,sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))`,
		"files": `import base64,json,sys; print(json.dumps({p: base64.b64encode(open(p,"rb").read()).decode() for p in sys.argv[1:]}))`,
	}[kind]
	return append([]string{"/usr/bin/python3", "-c", prog}, names...)
}

// Env values a kubelet passes byte for byte.
var exactEnv = map[string]string{
	"SINGLE_QUOTES": "'''",
	"DOUBLE_QUOTES": `"a"b"`,
	"DOLLARS":       "$HOME ${HOME} $(id) `id`",
	"BACKSLASHES":   `a\b\\c\n`,
	"NEWLINES":      "line 1\nline 2\n",
	"UNICODE":       "héllo ✓ 日本語",
	"EMPTY":         "",
	"SPACES":        "  lead and trail  ",
	"SEMICOLON":     "a; touch /tmp/x && echo b",
}

func behaviorCases(port int) []*behaviorCase {
	var cs []*behaviorCase
	add := func(name, what string, pod *corev1.Pod, check func(*testing.T, *run, *behaviorCase) error, objs ...any) {
		pod.Name = name
		cs = append(cs, &behaviorCase{name: name, what: what, pod: pod, objs: append(objs, pod), check: check})
	}

	// command and args, as Kubernetes defines them over ENTRYPOINT and CMD.
	for _, c := range []struct {
		name, what    string
		command, args []string
		want          string
	}{
		{"cmd-image", "no command, no args: ENTRYPOINT + CMD", nil, nil, "entrypoint from-cmd"},
		{"cmd-args", "args only: ENTRYPOINT + args", nil, []string{"one arg", "two"}, "entrypoint one arg two"},
		{"cmd-command", "command only: CMD is not used", []string{"/bin/echo", "own command"}, nil, "own command"},
		{"cmd-both", "command and args", []string{"/bin/echo"}, []string{"x", "y"}, "x y"},
	} {
		p := behaviorPod("", imgDebian)
		p.Spec.Containers[0].Command, p.Spec.Containers[0].Args = c.command, c.args
		add(c.name, c.what, p, succeedsWith("main", c.want))
	}
	add("image-env-workdir", "the image's ENV and WORKDIR apply; the pod's env wins",
		withEnv(behaviorPod("", imgDebian, "/bin/sh", "-c", `printf '%s|%s|%s\n' "$PWD" "$IMAGE_VAR" "$OVERRIDDEN"`),
			corev1.EnvVar{Name: "OVERRIDDEN", Value: "by the pod"}),
		succeedsWith("main", "/srv/app|from the image|by the pod"))

	add("expansion", "$(VAR) in env, command and args; $$ escapes it",
		withEnv(behaviorPod("", imgBusybox, "echo", "$(B)", "$(C)", "$$(A)", "$(UNDEFINED)"),
			corev1.EnvVar{Name: "A", Value: "x"}, corev1.EnvVar{Name: "B", Value: "$(A)-y"}, corev1.EnvVar{Name: "C", Value: "$$(A)"}),
		succeedsWith("main", "x-y $(A) $(A) $(UNDEFINED)"))

	// env, envFrom, secretKeyRef, byte for byte.
	envCM := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: nsBehave, Name: "env-from"},
		Data: map[string]string{"FROM_CM_QUOTES": `it's "quoted"`, "FROM_CM_NEWLINE": "a\nb"}}
	envSecret := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Namespace: nsBehave, Name: "env-secret"},
		Data: map[string][]byte{"value": []byte("s3cr$t\\n\nend")}}
	want := map[string]string{"FROM_CM_QUOTES": `it's "quoted"`, "FROM_CM_NEWLINE": "a\nb", "FROM_SECRET": "s3cr$t\\n\nend", "POD_NAME": "env-exact"} //nolint:gosec // test data, no credential
	p := behaviorPod("", imgDebian)
	for _, k := range slices.Sorted(maps.Keys(exactEnv)) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: k, Value: exactEnv[k]})
		want[k] = exactEnv[k]
	}
	p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env,
		corev1.EnvVar{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "env-secret"}, Key: "value"}}},
		corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})
	p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env-from"}}}}
	p.Spec.Containers[0].Command = pyDump("env", slices.Sorted(maps.Keys(want))...)
	add("env-exact", "env, envFrom, secretKeyRef and fieldRef values byte for byte", p, dumpIs("main", want), envCM, envSecret)

	// ConfigMap, Secret, projected and downward-API files, byte for byte.
	fileCM := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: nsBehave, Name: "files"},
		Data:       map[string]string{"newline": "a\n", "no-newline": "no newline", "quotes": "'\"$`\\", "blank-lines": "l1\n\nl2\n\n"},
		BinaryData: map[string][]byte{"binary": {0, 1, 2, 0xfe, 0xff, '\n'}}}
	fileSecret := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Namespace: nsBehave, Name: "files-secret"},
		Data: map[string][]byte{"key": []byte("-----BEGIN-----\nbinary\x00byte\n")}}
	p = behaviorPod("", imgDebian)
	p.Labels = map[string]string{"app": "files", "quoted": "a-b"}
	p.Annotations = map[string]string{"note": "with \"quotes\" and\nnewline"}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "files"}}}},
		{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "files-secret"}}},
		{Name: "downward", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "note", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['note']"}},
			{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
		{Name: "projected", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "files"}, Items: []corev1.KeyToPath{{Key: "quotes", Path: "cm/quotes"}}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "files-secret"}, Items: []corev1.KeyToPath{{Key: "key", Path: "secret/key"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}}}}}},
	}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "cm", MountPath: "/cm"}, {Name: "secret", MountPath: "/secret"},
		{Name: "downward", MountPath: "/downward"}, {Name: "projected", MountPath: "/projected"}}
	files := map[string]string{
		"/cm/newline": "a\n", "/cm/no-newline": "no newline", "/cm/quotes": "'\"$`\\", "/cm/blank-lines": "l1\n\nl2\n\n",
		"/cm/binary": "\x00\x01\x02\xfe\xff\n", "/secret/key": "-----BEGIN-----\nbinary\x00byte\n",
		"/downward/labels":     "app=\"files\"\nquoted=\"a-b\"",
		"/downward/note":       "with \"quotes\" and\nnewline",
		"/downward/name":       "files-exact",
		"/projected/cm/quotes": "'\"$`\\", "/projected/secret/key": "-----BEGIN-----\nbinary\x00byte\n", "/projected/namespace": nsBehave,
	}
	p.Spec.Containers[0].Command = pyDump("files", slices.Sorted(maps.Keys(files))...)
	add("files-exact", "ConfigMap, Secret, projected and downward-API files byte for byte", p, filesAre("main", files), fileCM, fileSecret)

	// readOnly, a shared emptyDir, a configMap mount (always read-only).
	p = behaviorPod("", imgBusybox, "sh", "-c", "echo data > /shared/w && sleep 8")
	p.Spec.Containers[0].Name = "writer"
	p.Spec.Volumes = []corev1.Volume{emptyDir(), {Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "files"}}}}}
	p.Spec.Volumes[0].Name = "shared"
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	withContainer(p, corev1.Container{Name: "reader", Image: imgBusybox, Command: []string{"sh", "-c", `
for i in $(seq 50); do [ -s /shared/w ] && break; sleep 0.2; done
touch /shared/mine 2>/dev/null && echo CREATED
rm -f /shared/w 2>/dev/null
[ -e /shared/w ] && echo KEPT
touch /cm/new 2>/dev/null && echo CONFIGMAP-WRITTEN
cat /shared/w`},
		VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/shared", ReadOnly: true}, {Name: "cm", MountPath: "/cm"}}})
	add("readonly-mounts", "a readOnly mount and a ConfigMap mount cannot be written", p, succeedsWith("reader", "KEPT\ndata"))

	p = behaviorPod("", imgBusybox, "sh", "-c", "echo from-writer > /shared/f; sleep 6")
	p.Spec.Containers[0].Name = "writer"
	p.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	withContainer(p, corev1.Container{Name: "reader", Image: imgBusybox, Command: []string{"sh", "-c",
		"for i in $(seq 50); do [ -s /shared/f ] && break; sleep 0.2; done; cat /shared/f; echo from-reader > /shared/g"},
		VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}})
	add("emptydir-shared", "an emptyDir shared by the containers of a pod", p, succeedsWith("reader", "from-writer"))

	// subPath of a ConfigMap key and of an emptyDir directory.
	p = behaviorPod("", imgBusybox, "sh", "-c", "cat /etc/app.conf; echo; cat /data/f; ls /data")
	p.Spec.Volumes = []corev1.Volume{{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "files"}}}},
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: imgBusybox, ImagePullPolicy: corev1.PullIfNotPresent,
		Command:      []string{"sh", "-c", "mkdir -p /all/sub/dir && echo in-subdir > /all/sub/dir/f && echo outside > /all/top"},
		VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/all"}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cm", MountPath: "/etc/app.conf", SubPath: "no-newline"},
		{Name: "work", MountPath: "/data", SubPath: "sub/dir"}}
	add("subpath", "subPath of a ConfigMap key and of an emptyDir directory", p, succeedsWith("main", "no newline\nin-subdir\nf"), fileCM)

	// init containers in order, and a failed one.
	p = behaviorPod("", imgBusybox, "cat", "/w/order")
	p.Spec.Volumes = []corev1.Volume{{Name: "w", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	for i := range 3 {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("init-%d", i+1), Image: imgBusybox, ImagePullPolicy: corev1.PullIfNotPresent,
			Command:      []string{"sh", "-c", fmt.Sprintf("sleep 0.%d; echo %d >> /w/order", 3-i, i+1)},
			VolumeMounts: []corev1.VolumeMount{{Name: "w", MountPath: "/w"}}})
	}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "w", MountPath: "/w"}}
	add("init-order", "init containers run one after another, before the containers", p, succeedsWith("main", "1\n2\n3"))
	p = behaviorPod("", imgBusybox, "echo", "main-ran")
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: imgBusybox, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sh", "-c", "exit 3"}}}
	add("init-failed", "a failed init container fails the pod; the containers never start", p, initFailed)

	// exit codes and their reasons.
	add("exit-0", "exit code 0: Completed, Succeeded", behaviorPod("", imgBusybox, "true"), exited(0, corev1.PodSucceeded, "Completed"))
	add("exit-1", "exit code 1: Error, Failed", behaviorPod("", imgBusybox, "sh", "-c", "exit 1"), exited(1, corev1.PodFailed, "Error"))
	add("exit-126", "a command that is not executable: 126", behaviorPod("", imgBusybox, "/etc/passwd"), exited(126, corev1.PodFailed, ""))
	add("exit-127", "a command that does not exist: 127", behaviorPod("", imgBusybox, "/no/such/program"), exited(127, corev1.PodFailed, ""))
	p = behaviorPod("", imgDebian, "/usr/bin/python3", "-c", "import time; b = b'x' * (300 << 20); print('allocated', flush=True); time.sleep(60)")
	p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")}
	add("exit-oom", "over its memory limit: OOMKilled, 137", p, exited(137, corev1.PodFailed, "OOMKilled"))

	// restartPolicy.
	p = behaviorPod("", imgBusybox, "sh", "-c", "if [ -e /w/ran ]; then echo second; exit 0; fi; touch /w/ran; echo first; exit 1")
	p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	p.Spec.Volumes = []corev1.Volume{{Name: "w", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "w", MountPath: "/w"}}
	add("restart-onfailure", "restartPolicy OnFailure: a failed container runs again", p, restartedOnFailure)
	p = behaviorPod("", imgBusybox, "sh", "-c", "echo run; sleep 1")
	p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	add("restart-always", "restartPolicy Always: an ended container runs again", p, restartedAlways)

	// logs.
	add("logs", "logs with --timestamps, --since-time, --tail and -f",
		behaviorPod("", imgBusybox, "sh", "-c", "sleep 20; for i in 1 2 3 4 5; do echo line-$i; sleep 1; done; echo done"), logsBehave)

	// workingDir.
	add("workdir", "workingDir, made when the image lacks it", behaviorPod("", imgBusybox, "pwd"), succeedsWith("main", "/made/by/the/runtime"))
	cs[len(cs)-1].pod.Spec.Containers[0].WorkingDir = "/made/by/the/runtime"

	// images whose /var/run, /tmp or /etc paths are symlinks.
	p = behaviorPod("", imgDebian, "/bin/sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token")
	add("symlink-var-run", "the ServiceAccount token under /var/run -> /run", p, succeedsWith("main", nsBehave+"\ntoken"))
	p = behaviorPod("", imgLinks, "sh", "-c", "echo x > /tmp/scratch/f && cat /tmp/scratch/f && cat /etc/app/conf/newline && cat /var/run/secrets/kubernetes.io/serviceaccount/namespace")
	p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "files"}}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/tmp/scratch"}, {Name: "cm", MountPath: "/etc/app/conf"}}
	add("symlink-tmp-etc", "mounts under /tmp -> /var/tmp and /etc/app -> /opt/app", p, succeedsWith("main", "x\na\n"+nsBehave))

	// containers of one pod share localhost.
	p = behaviorPod("", imgBusybox, "sh", "-c", fmt.Sprintf("mkdir -p /tmp/www && echo pong > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:%d -h /tmp/www", port))
	p.Spec.Containers[0].Name = "server"
	withContainer(p, corev1.Container{Name: "client", Image: imgBusybox, Command: []string{"sh", "-c",
		fmt.Sprintf("for i in $(seq 100); do wget -qO- http://127.0.0.1:%d/ 2>/dev/null && exit 0; sleep 0.2; done; exit 1", port)}})
	add("localhost", "containers of a pod share localhost", p, clientGotPong)

	// image references, normalized as Docker does.
	for i, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest"} {
		add(fmt.Sprintf("image-ref-%d", i+1), "image reference "+ref, behaviorPod("", ref, "echo", "ok"), succeedsWith("main", "ok"))
	}
	add("image-missing", "a missing image: waiting ErrImagePull/ImagePullBackOff, Pending",
		behaviorPod("", "interlink-test/absent:1", "true"), waitsForImage("interlink-test/absent:1"))
	return cs
}

func withEnv(p *corev1.Pod, env ...corev1.EnvVar) *corev1.Pod {
	p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, env...)
	return p
}

// within is how long a case's pod may take to come to what it checks.
const within = 3 * time.Minute

// run is the suite on one backend: its stack and the pods of its
// namespace, read once a second for every check at once.
type run struct {
	*stack
	mu   sync.Mutex
	pods map[string]*corev1.Pod
	err  error
}

// watch reads the namespace's pods every second until ctx ends.
func (s *run) watch(ctx context.Context, t *testing.T) {
	for {
		out, err := exec.CommandContext(ctx, s.kubectl, "--kubeconfig", s.kubeconfig, "get", "pods", "-n", nsBehave, "-o", "json").Output()
		var list corev1.PodList
		if err == nil {
			err = json.Unmarshal(out, &list)
		}
		s.mu.Lock()
		s.err = err
		if err == nil {
			s.pods = map[string]*corev1.Pod{}
			for i := range list.Items {
				s.pods[list.Items[i].Name] = &list.Items[i]
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// waitPod waits until cond holds for the case's pod, for up to within.
func (s *run) waitPod(t *testing.T, name string, cond func(p *corev1.Pod) error) (*corev1.Pod, error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		p, err := s.pods[name], s.err
		s.mu.Unlock()
		if err == nil && p == nil {
			err = fmt.Errorf("no pod %s", name)
		}
		if err == nil {
			if err = cond(p); err == nil {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return p, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func ended(p *corev1.Pod) error {
	if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		return fmt.Errorf("phase %s (%s)", p.Status.Phase, p.Status.Message)
	}
	return nil
}

func statusOf(p *corev1.Pod, container string) *corev1.ContainerStatus {
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if cs.Name == container {
			return &cs
		}
	}
	return nil
}

func (s *run) logsOf(t *testing.T, pod, container string, args ...string) (string, error) {
	t.Helper()
	return s.kubectlRun(t, append([]string{"logs", "-n", nsBehave, pod, "-c", container}, args...)...)
}

// succeedsWith: the pod Succeeds and container's logs are want.
func succeedsWith(container, want string) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		p, err := s.waitPod(t, c.pod.Name, ended)
		if err != nil {
			return err
		}
		logs, lerr := s.logsOf(t, c.pod.Name, container)
		if p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("phase %s, want Succeeded; %s logs: %q", p.Status.Phase, container, logs)
		}
		if lerr != nil {
			return fmt.Errorf("kubectl logs: %w: %s", lerr, logs)
		}
		if got := strings.TrimRight(logs, "\n"); got != want {
			return fmt.Errorf("%s logs %q, want %q", container, got, want)
		}
		return nil
	}
}

// dumpIs: the pod Succeeds and container printed the JSON object want.
func dumpIs(container string, want map[string]string) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		if _, err := s.waitPod(t, c.pod.Name, ended); err != nil {
			return err
		}
		logs, err := s.logsOf(t, c.pod.Name, container)
		if err != nil {
			return fmt.Errorf("kubectl logs: %w: %s", err, logs)
		}
		var got map[string]*string
		if err := json.Unmarshal([]byte(strings.TrimSpace(logs)), &got); err != nil {
			return fmt.Errorf("%s printed %q: %w", container, logs, err)
		}
		var diffs []string
		for _, k := range slices.Sorted(maps.Keys(want)) {
			switch v := got[k]; {
			case v == nil:
				diffs = append(diffs, fmt.Sprintf("%s unset, want %q", k, want[k]))
			case *v != want[k]:
				diffs = append(diffs, fmt.Sprintf("%s=%q, want %q", k, *v, want[k]))
			}
		}
		if len(diffs) > 0 {
			return errors.New(strings.Join(diffs, "; "))
		}
		return nil
	}
}

// filesAre: the pod Succeeds and the files hold want byte for byte.
func filesAre(container string, want map[string]string) func(*testing.T, *run, *behaviorCase) error {
	enc := map[string]string{}
	for k, v := range want {
		enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	check := dumpIs(container, enc)
	return func(t *testing.T, s *run, c *behaviorCase) error {
		err := check(t, s, c)
		if err != nil {
			return fmt.Errorf("file contents (base64): %w", err)
		}
		return nil
	}
}

func initFailed(t *testing.T, s *run, c *behaviorCase) error {
	p, err := s.waitPod(t, c.pod.Name, ended)
	if err != nil {
		return err
	}
	if p.Status.Phase != corev1.PodFailed {
		return fmt.Errorf("phase %s, want Failed", p.Status.Phase)
	}
	is := statusOf(p, "init")
	if is == nil || is.State.Terminated == nil || is.State.Terminated.ExitCode != 3 {
		return fmt.Errorf("init container %+v, want terminated with exit code 3", is)
	}
	if ms := statusOf(p, "main"); ms != nil && (ms.State.Running != nil || ms.State.Terminated != nil && ms.State.Terminated.Reason == "Completed") {
		return fmt.Errorf("main container %+v, want it never started", ms.State)
	}
	if logs, _ := s.logsOf(t, c.pod.Name, "main"); strings.Contains(logs, "main-ran") {
		return errors.New("the main container ran after its init container failed")
	}
	return nil
}

// exited: the pod ends in phase with its container's exit code and, when
// given, reason (exit codes of a command that cannot run have no one
// reason across kubelets: StartError, ContainerCannotRun, Error).
func exited(code int32, phase corev1.PodPhase, reason string) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		p, err := s.waitPod(t, c.pod.Name, ended)
		if err != nil {
			return err
		}
		cs := statusOf(p, "main")
		if cs == nil || cs.State.Terminated == nil {
			return fmt.Errorf("phase %s, container %+v, want it terminated", p.Status.Phase, cs)
		}
		term := cs.State.Terminated
		if p.Status.Phase != phase || term.ExitCode != code || (reason != "" && term.Reason != reason) || term.Reason == "" || (code != 0 && term.Reason == "Completed") {
			return fmt.Errorf("phase %s, exit code %d, reason %q (%s), want %s, %d, %q", p.Status.Phase, term.ExitCode, term.Reason, term.Message, phase, code, reason)
		}
		return nil
	}
}

func restartedOnFailure(t *testing.T, s *run, c *behaviorCase) error {
	p, err := s.waitPod(t, c.pod.Name, ended)
	if err != nil {
		return err
	}
	cs := statusOf(p, "main")
	if p.Status.Phase != corev1.PodSucceeded || cs == nil || cs.RestartCount != 1 {
		return fmt.Errorf("phase %s, status %+v, want Succeeded after one restart", p.Status.Phase, cs)
	}
	if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 1 {
		return fmt.Errorf("last termination %+v, want exit code 1", cs.LastTerminationState)
	}
	logs, _ := s.logsOf(t, c.pod.Name, "main")
	if !strings.Contains(logs, "second") {
		return fmt.Errorf("logs %q, want the second run's", logs)
	}
	return nil
}

func restartedAlways(t *testing.T, s *run, c *behaviorCase) error {
	p, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
		if cs := statusOf(p, "main"); cs == nil || cs.RestartCount < 1 {
			return fmt.Errorf("phase %s, status %+v, want restarted", p.Status.Phase, cs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return fmt.Errorf("phase %s, want the pod still running", p.Status.Phase)
	}
	return nil
}

var tsLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z) (.*)$`)

func logsBehave(t *testing.T, s *run, c *behaviorCase) error {
	// -f from while it runs (it prints nothing for 20 s: every backend
	// shows it Running by then, however busy), to its end.
	if _, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.kubectl, "--kubeconfig", s.kubeconfig, "logs", "-f", "-n", nsBehave, c.pod.Name)
	var followed bytes.Buffer
	cmd.Stdout, cmd.Stderr = &followed, &followed
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl logs -f: %w: %s", err, followed.String())
	}
	want := "line-1\nline-2\nline-3\nline-4\nline-5\ndone"
	if got := strings.TrimSpace(followed.String()); got != want {
		return fmt.Errorf("kubectl logs -f ended with %q, want %q", got, want)
	}
	if _, err := s.waitPod(t, c.pod.Name, ended); err != nil {
		return err
	}
	out, err := s.logsOf(t, c.pod.Name, "main", "--timestamps")
	if err != nil {
		return fmt.Errorf("--timestamps: %w: %s", err, out)
	}
	var stamps []string
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := tsLine.FindStringSubmatch(sc.Text())
		if m == nil {
			return fmt.Errorf("--timestamps line %q has no RFC 3339 timestamp", sc.Text())
		}
		stamps, lines = append(stamps, m[1]), append(lines, m[3])
	}
	if strings.Join(lines, "\n") != want {
		return fmt.Errorf("--timestamps lines %q", lines)
	}
	if !slices.IsSorted(stamps) {
		return fmt.Errorf("timestamps out of order: %q", stamps)
	}
	if out, err = s.logsOf(t, c.pod.Name, "main", "--tail=2"); err != nil || strings.TrimSpace(out) != "line-5\ndone" {
		return fmt.Errorf("--tail=2: %q %w", out, err)
	}
	if out, err = s.logsOf(t, c.pod.Name, "main", "--since-time="+stamps[3]); err != nil || strings.TrimSpace(out) != "line-4\nline-5\ndone" {
		return fmt.Errorf("--since-time=%s (line-4's): %q %w", stamps[3], out, err)
	}
	if out, err = s.logsOf(t, c.pod.Name, "main", "--since=10m"); err != nil || strings.TrimSpace(out) != want {
		return fmt.Errorf("--since=10m: %q %w", out, err)
	}
	return nil
}

func clientGotPong(t *testing.T, s *run, c *behaviorCase) error {
	p, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
		if cs := statusOf(p, "client"); cs == nil || cs.State.Terminated == nil {
			return fmt.Errorf("client %+v", cs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	logs, _ := s.logsOf(t, c.pod.Name, "client")
	if term := statusOf(p, "client").State.Terminated; term.ExitCode != 0 || strings.TrimSpace(logs) != "pong" {
		return fmt.Errorf("client exit code %d, logs %q, want 0 and pong", term.ExitCode, logs)
	}
	return nil
}

func waitsForImage(image string) func(*testing.T, *run, *behaviorCase) error {
	return func(t *testing.T, s *run, c *behaviorCase) error {
		_, err := s.waitPod(t, c.pod.Name, func(p *corev1.Pod) error {
			cs := statusOf(p, "main")
			if cs == nil || cs.State.Waiting == nil {
				return fmt.Errorf("phase %s, status %+v", p.Status.Phase, cs)
			}
			w := cs.State.Waiting
			if p.Status.Phase != corev1.PodPending || (w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff") || !strings.Contains(w.Message, image) {
				return fmt.Errorf("phase %s, waiting %s: %s; want Pending, ErrImagePull or ImagePullBackOff naming %s", p.Status.Phase, w.Reason, w.Message, image)
			}
			return nil
		})
		return err
	}
}

// buildImages builds the test images (.ci/images.sh caches them, and links
// them into a directory of this run's: containers write bind points there).
func buildImages(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	cmd := exec.Command(filepath.Join(repoDir, ".ci/images.sh"), "build", dir)
	cmd.Dir = repoDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf(".ci/images.sh build: %v\n%s", err, out)
	}
	return dir
}

// behaviorBackends are the table's columns.
func behaviorBackends() []backend {
	return []backend{
		{name: "Charliecloud", start: func(t *testing.T, images string) *stack {
			return runDemo(t, "AUTH=static", "RUNTIME=charliecloud", "DEMO_IMAGE_ROOT="+filepath.Join(images, "ch"), "SLURM_NODE_CPUS=16")
		}, unsupported: map[string]string{
			"termination-message": "ch-run binds the host's /dev, where a container has no /dev/termination-log of its own",
		}},
		// Apptainer on the same image directories, as sandboxes (the demo
		// builds it, and sets ApptainerPath and --userns).
		{name: "Apptainer", start: func(t *testing.T, images string) *stack {
			return runDemo(t, "AUTH=static", "RUNTIME=apptainer", "DEMO_IMAGE_ROOT="+filepath.Join(images, "ch"), "SLURM_NODE_CPUS=16")
		}},
		// Podman (Debian's 4.3) in the jobs, on a private storage the demo
		// makes (.ci/podman.sh up) and loads with the test images. The
		// sidecar shares its host and storage with the jobs (make demo sets
		// PodmanLocalStorage): it checks the images at create (a missing
		// one is ErrImagePull).
		{name: "Podman", start: func(t *testing.T, images string) *stack {
			return runDemo(t, "AUTH=static", "RUNTIME=podman", "SLURM_NODE_CPUS=16")
		}},
		{name: "Docker", start: func(t *testing.T, images string) *stack {
			s := runDemo(t, "AUTH=static", "SIDECAR=docker")
			env, err := os.ReadFile(filepath.Join(s.Dir, "docker", "env"))
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`DOCKER_HOST=(\S+)`).FindSubmatch(env)
			if m == nil {
				t.Fatalf("no DOCKER_HOST in %s", env)
			}
			if out, err := exec.Command("docker", "--host", string(m[1]), "load", "-i", filepath.Join(images, "images.tar")).CombinedOutput(); err != nil {
				t.Fatalf("docker load: %v\n%s", err, out)
			}
			return s
		}},
	}
}

// TestE2EPodBehavior runs the suite on each backend and checks (or, with
// -update-docs, rewrites) docs/slurm.md's table.
func TestE2EPodBehavior(t *testing.T) {
	requireRoot(t)
	images := buildImages(t)
	port := 20000 + rand.IntN(20000) //nolint:gosec // a port, not a secret
	backends := behaviorBackends()
	waves := [][]*behaviorCase{behaviorCases(port), lifecycleCases(port), usageCases()}
	cases := slices.Concat(waves...)
	results := map[string]map[string]string{}
	var recap []string // the failed cases, said again at the end
	t.Cleanup(func() {
		if len(recap) > 0 {
			t.Logf("failed cases:\n%s", strings.Join(recap, "\n"))
		}
	})
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			results[b.name] = map[string]string{}
			s := b.start(t, images)
			t.Cleanup(func() {
				if t.Failed() {
					s.keep(t, nil)
				}
			})
			ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: nsBehave}}
			if out, err := s.apply(t, ns); err != nil {
				t.Fatalf("kubectl apply: %v\n%s", err, out)
			}
			// Pods need the namespace's default ServiceAccount, which the
			// controller-manager makes.
			eventually(t, "the default ServiceAccount of "+nsBehave, time.Minute, func() error {
				out, err := s.kubectlRun(t, "get", "serviceaccount", "-n", nsBehave, "default")
				if err != nil {
					return fmt.Errorf("%w: %s", err, out)
				}
				return nil
			})
			r := &run{stack: s}
			ctx, cancel := context.WithCancel(context.Background())
			watched := make(chan struct{})
			go func() { r.watch(ctx, t); close(watched) }()
			var mu sync.Mutex
			record := func(c, result string, err error) {
				mu.Lock()
				results[b.name][c] = result
				if err != nil {
					recap = append(recap, fmt.Sprintf("%s/%s: %v", b.name, c, err))
				}
				mu.Unlock()
			}
			// Every case of a wave at once: their pods run side by side, as
			// users' do. The lifecycle cases come second: their timing is
			// what they check, on a node not loaded with the first wave;
			// the usage cases last, alone, so that their CPU is theirs.
			for i, wave := range waves {
				t.Run(fmt.Sprintf("wave-%d", i+1), func(t *testing.T) {
					runWave(t, b, r, wave, record)
				})
			}
			cancel()
			<-watched
			s.mustKubectl(t, "delete", "namespace", nsBehave, "--wait=true", "--timeout=120s")
		})
	}
	if len(results) == 0 || t.Failed() && !*updateDocs {
		return
	}
	// The columns of backends this run left out (go test -run) are the
	// table's as it is.
	doc := docTable(t)
	for _, b := range backends {
		if _, ran := results[b.name]; !ran {
			results[b.name] = doc[b.name]
		}
	}
	checkBehaviorTable(t, behaviorTable(backends, cases, results))
}

// docTable reads docs/slurm.md's table: backend -> case -> result.
// runWave applies the objects of a wave's cases (but those the backend
// cannot run) and checks every case at once.
func runWave(t *testing.T, b backend, r *run, cases []*behaviorCase, record func(c, result string, err error)) {
	var objs []any
	seen := map[string]bool{}
	for _, c := range cases {
		if _, skip := b.unsupported[c.name]; skip {
			continue
		}
		if _, skip := b.notYet[c.name]; skip {
			continue
		}
		for _, o := range c.objs {
			if m, ok := o.(metav1.ObjectMetaAccessor); ok {
				k := fmt.Sprintf("%T/%s", o, m.GetObjectMeta().GetName())
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			objs = append(objs, o)
		}
	}
	if out, err := r.apply(t, objs...); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			if why, ok := b.notYet[c.name]; ok {
				record(c.name, "not yet: "+why, nil)
				continue
			}
			if why, ok := b.unsupported[c.name]; ok {
				record(c.name, "unsupported: "+why, nil)
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				if err := c.check(t, r, c); err != nil {
					t.Errorf("%s: %v", c.what, err)
					record(c.name, "FAIL", fmt.Errorf("%s: %w", c.what, err))
					if p, perr := r.getPod(t, nsBehave, c.name); perr == nil {
						t.Logf("pod status: %+v", p.Status)
					}
					return
				}
				record(c.name, "pass", nil)
			})
		}
	})
	// The next wave starts on an empty node.
	if out, err := r.kubectlRun(t, "delete", "pods", "--all", "-n", nsBehave, "--wait=true", "--timeout=180s"); err != nil {
		t.Errorf("kubectl delete pods: %v\n%s", err, out)
	}
}

func docTable(t *testing.T) map[string]map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoDir, "docs", "slurm.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	begin, end := bytes.Index(doc, []byte(tableBegin)), bytes.Index(doc, []byte(tableEnd))
	if begin < 0 || end < begin {
		return out
	}
	var header []string
	for _, line := range strings.Split(string(doc[begin+len(tableBegin):end]), "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		switch {
		case len(cells) < 3 || strings.HasPrefix(line, "|---"):
		case header == nil:
			header = cells
		default:
			name := strings.Trim(cells[0], "`")
			for i := 2; i < len(cells) && i < len(header); i++ {
				if out[header[i]] == nil {
					out[header[i]] = map[string]string{}
				}
				out[header[i]][name] = cells[i]
			}
		}
	}
	return out
}

// behaviorTable is the runtime × case table in Markdown.
func behaviorTable(backends []backend, cases []*behaviorCase, results map[string]map[string]string) string {
	var b strings.Builder
	b.WriteString("| case | what it checks |")
	for _, be := range backends {
		b.WriteString(" " + be.name + " |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(backends)) + "\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "| `%s` | %s |", c.name, strings.ReplaceAll(c.what, "|", `\|`))
		for _, be := range backends {
			r := results[be.name][c.name]
			if r == "" {
				r = "not run"
			}
			b.WriteString(" " + r + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

const (
	tableBegin = "<!-- pod-behavior table: generated by TestE2EPodBehavior (examples/demo); INTERLINK_UPDATE_DOCS=1 rewrites it -->\n"
	tableEnd   = "<!-- end of pod-behavior table -->\n"
)

// checkBehaviorTable compares docs/slurm.md's table with this run's, or
// rewrites it with -update-docs.
func checkBehaviorTable(t *testing.T, table string) {
	t.Helper()
	path := filepath.Join(repoDir, "docs", "slurm.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := bytes.Index(doc, []byte(tableBegin)), bytes.Index(doc, []byte(tableEnd))
	if begin < 0 || end < begin {
		t.Fatalf("docs/slurm.md lacks the table's markers %q and %q", tableBegin, tableEnd)
	}
	cur := string(doc[begin+len(tableBegin) : end])
	if cur == table {
		return
	}
	if !*updateDocs {
		t.Errorf("docs/slurm.md's pod-behavior table is not this run's: run the suite with INTERLINK_UPDATE_DOCS=1 (INTERLINK_UPDATE_DOCS=1 make behavior). This run's:\n%s", table)
		return
	}
	out := slices.Concat(doc[:begin+len(tableBegin)], []byte(table), doc[end:])
	if err := os.WriteFile(path, out, 0o644); err != nil { //nolint:gosec // a doc
		t.Fatal(err)
	}
	t.Logf("docs/slurm.md's table rewritten")
}
