//go:build e2e

package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	// symlinkRefused: run, and its container refused to start on a bind
	// that crosses a symlink: it ended non-zero, its log saying so.
	symlinkRefused
	// refusedOrSymlink: refused naming the key, or symlinkRefused.
	refusedOrSymlink
	// imagePull: Pending, its container waiting as for a failed pull
	// (ErrImagePull or ImagePullBackOff), the message naming the key.
	imagePull
)

// crossesSymlink is what a container's log says when the job refused one
// of its binds for a symlink on the way.
const crossesSymlink = "crosses a symlink"

// hostile is one variant: a pod whose annotations, env or command try to
// run a command on the SLURM host, where it would leave a file in the
// marker directory.
type hostile struct {
	class, name string
	want        outcome
	key         string // the config key a refusal names (or, where no key allows it, the words it holds)
	annotations map[string]string
	env         []corev1.EnvVar
	command     []string            // default: sh -c 'echo ran'
	bin         bool                // carries the hostile scripts as a volume (see hostileBin)
	image       string              // default: busybox
	spec        func(p *corev1.Pod) // the rest of the pod: volumes, init containers
	logs        string              // accepted: what its logs hold
	// bigLog: its logs are not read whole (the variant reads what it needs).
	bigLog bool
	// within bounds the wait for it to end (default 2 minutes).
	within time.Duration
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
func annotationVariants(m, runtime string) []hostile {
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
		"options-subst", "--env=X=$("+touch(m, "annotation-options-subst")+")",
		// Options that would undo --containall or show the host's files.
		"options-short-bind", "-B /:/host",
		"options-mount", "--mount type=bind,src=/,dst=/host",
		"options-containall-false", "--containall=false",
		"options-contain-false", "--contain=false",
		"options-no-mount", "--no-mount tmp,home",
		"options-home", "--home /root",
		"options-env-file", "--env-file /etc/environment",
		"options-writable", "--writable",
		"options-overlay", "--overlay /",
		"options-fakeroot", "--fakeroot",
		"options-userns-false", "--userns=false",
		"options-pid-false", "--pid=false")...)
	// Allowed options, written to undo a clean environment: the container
	// still sees nothing of the job's (its variables, its data directory,
	// the host's /tmp).
	hs = append(hs, hostile{name: "options-cleanenv-false", want: accepted, logs: "contained",
		annotations: ann(options, "--cleanenv=false --no-eval=false"),
		command:     []string{"sh", "-c", `[ -z "${SLURM_JOB_ID-}${IL_DATA-}${IL_DIR-}" ] && ! ls ` + m + ` && echo contained`}})
	hs = append(hs, refusals("AllowedHostPaths", mounts,
		"mounts", "--bind /etc:/host-etc",
		"mounts-root", "--bind /:/host",
		"mounts-short", "-B /root:/r:rw",
		"mounts-subst", "--bind $("+touch(m, "annotation-mounts-subst")+"):/x")...)
	// The marker directory itself, bound into a container that writes there.
	hs = append(hs, hostile{name: "mounts-marker", want: refused, key: "AllowedHostPaths",
		annotations: ann(mounts, "--bind "+m+":/marker"), command: []string{"touch", "/marker/annotation-mounts-marker"}})
	hs = append(hs, refusals("AllowedImageRoots", root,
		"image-root", "/",
		"image-root-parent", "../../..",
		"image-root-subst", "$("+touch(m, "annotation-image-root-subst")+")")...)
	// Every runtime but the one this stack runs (the only one allowed).
	var other []string
	for _, r := range []string{"podman", "singularity", "apptainer", "charliecloud", "enroot"} {
		if r != runtime {
			other = append(other, "runtime-"+r, r)
		}
	}
	other = append(other, "runtime-subst", runtime+";"+touch(m, "annotation-runtime-subst"))
	return append(hs, refusals("AllowedRuntimes", runtimeAnn, other...)...)
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

// hostileBinName names the ConfigMap of hostileBin.
const hostileBinName = "hostile-bin"

// hostileBin is the ConfigMap of the env variants: scripts named after the
// programs the job runs on the host, and a shell start-up file (hook). Run
// on the host (the job's environment names the job) or in a container
// (whose environment is the pod's), each leaves a file naming where it ran.
func hostileBin(marker string) *corev1.ConfigMap {
	payload := "touch '" + marker + "'/\"${SLURM_JOB_NAME:-container}\"-"
	data := map[string]string{"hook": payload + "hook\n"}
	for _, p := range []string{"ch-run", "apptainer", "singularity", "newuidmap", "squashfuse", "fuse-overlayfs", "ldconfig",
		"mkdir", "bash", "sh", "cat", "mv", "date", "printf", "mpiexec", "podman"} {
		data[p] = "#!/bin/sh\n" + payload + p + "\n"
	}
	return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: hostileBinName}, Data: data}
}

// shell is a command for busybox's shell.
func shell(script string) []string { return []string{"sh", "-c", script} }

// volumeSpec adds v to the pod, mounted by its container at /v (below
// subPath) and, when init is set, by an init container running init
// first with v at /ed.
func volumeSpec(v corev1.Volume, subPath, init string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, v)
		c := &p.Spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/v", SubPath: subPath})
		if init != "" {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init", Image: "busybox",
				ImagePullPolicy: corev1.PullIfNotPresent, Command: shell(init), VolumeMounts: []corev1.VolumeMount{{Name: v.Name, MountPath: "/ed"}}})
		}
	}
}

func emptyDir() corev1.Volume {
	return corev1.Volume{Name: "ed", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func hostPathVolume(p string, typ corev1.HostPathType) corev1.Volume {
	v := corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p}}}
	if typ != "" {
		v.HostPath.Type = &typ
	}
	return v
}

// subPathVariants swap a directory of an emptyDir, in an init container,
// for a symlink out of it (to the host's /, the marker directory, root's
// home, a planted file, relative), before the container mounts it with a
// subPath and writes or reads through it. The job opens a subPath beneath
// its volume without following symlinks: the container must not start.
func subPathVariants(m, planted string) []hostile {
	swap := func(name, sub, link, target, command string) hostile {
		return hostile{name: name, want: symlinkRefused, command: shell(command),
			spec: volumeSpec(emptyDir(), sub, "rm -rf /ed/"+link+"; mkdir -p /ed/"+path.Dir(link)+"; ln -s "+target+" /ed/"+link)}
	}
	// /tmp, the marker directory's parent, as a subPath below a/.
	parent := strings.TrimPrefix(filepath.Dir(m), "/")
	return []hostile{
		{name: "ok", want: accepted, command: shell("cat /v/f"), logs: "inside",
			spec: volumeSpec(emptyDir(), "sub", "mkdir -p /ed/sub && echo inside >/ed/sub/f")},
		swap("to-root", "sub", "sub", "/", "ls /v; touch /v"+m+"/subpath-to-root"),
		swap("to-marker", "sub", "sub", m, "ls /v; touch /v/subpath-to-marker"),
		swap("to-root-home", "sub", "sub", "/root", "ls -la /v; cat /v/*"),
		swap("to-file", "f", "f", planted, "cat /v"),
		swap("deep", "a/b", "a/b", m, "touch /v/subpath-deep"),
		swap("deep-parent", path.Join("a", parent), "a", "/", "touch /v/"+filepath.Base(m)+"/subpath-deep-parent"),
		swap("relative", "sub", "sub", "../..", "ls -la /v; cat /v/*/*/*"),
		swap("relative-root", "sub", "sub", strings.Repeat("../", 16), "ls /v; touch /v"+m+"/subpath-relative-root"),
		swap("loop", "sub", "sub", "sub", "ls /v"),
	}
}

// hostPathVariants use hostPath volumes: allowed holds real (with a file
// named planted holding want), swap (empty, writable), escape -> /,
// escape2 -> the marker directory and inner -> real. Only real may be
// bound; a symlink under the allowed directory is refused when the pod is
// created or when its container starts.
func hostPathVariants(m, allowed, want string) []hostile {
	under := func(p string) string { return filepath.Join(allowed, p) }
	host := func(name string, o outcome, key, p string, typ corev1.HostPathType, command string) hostile {
		return hostile{name: name, want: o, key: key, command: shell(command), spec: volumeSpec(hostPathVolume(p, typ), "", "")}
	}
	const key = "AllowedHostPaths"
	hs := []hostile{
		{name: "real", want: accepted, command: shell("cat /v/planted"), logs: want,
			spec: volumeSpec(hostPathVolume(under("real"), corev1.HostPathDirectory), "", "")},
		host("escape", refusedOrSymlink, key, under("escape"), "", "ls /v; cat /v/root/*; touch /v"+m+"/hostpath-escape"),
		host("escape2", refusedOrSymlink, key, under("escape2"), corev1.HostPathDirectory, "touch /v/hostpath-escape2"),
		host("escape-below", refusedOrSymlink, key, under("escape"+filepath.Dir(m)), "", "touch /v/"+filepath.Base(m)+"/hostpath-escape-below"),
		host("inner", symlinkRefused, "", under("inner"), "", "cat /v/planted"),
		// A symlink the pod makes itself, in a directory it may write.
		{name: "swap", want: symlinkRefused, command: shell("ls /v; touch /v" + m + "/hostpath-swap"),
			spec: volumeSpec(hostPathVolume(under("swap"), ""), "link", "rm -rf /ed/link; ln -s / /ed/link")},
		host("etc", refused, key, "/etc", "", "cat /v/shadow"),
		host("etc-file", refused, key, "/etc/hostname", corev1.HostPathFile, "cat /v"),
		host("root", refused, key, "/", corev1.HostPathDirectory, "touch /v"+m+"/hostpath-root"),
		host("marker", refused, key, m, "", "touch /v/hostpath-marker"),
		host("sibling", refused, key, allowed+"-sibling", "", "cat /v/*"),
		host("dotdot", refused, key, allowed+"/../..", corev1.HostPathDirectory, "touch /v"+m+"/hostpath-dotdot"),
		{name: "subpath-dotdot", want: refused, key: "leaves its volume", command: shell("touch /v/hostpath-subpath-dotdot"),
			spec: volumeSpec(hostPathVolume(under("real"), ""), "../../.."+m, "")},
	}
	for i := range hs {
		// The API server refuses a '..' in a hostPath or a subPath.
		hs[i].apiMayRefuse = strings.Contains(hs[i].name, "dotdot")
	}
	return hs
}

// readVariants look for the data of others where a container on the host
// could find it: files planted in the host's /tmp and root's home, the
// victim's Secret in the sidecar's data directory (demoDir/jobs) and in its
// container, by name, glob, find and through /proc. Each prints what it
// found; none may print a planted secret.
func readVariants(demoDir string) []hostile {
	const planted = "interlink-hostile-planted-*"
	victim := demoDir + "/jobs/victim-*/data/volumes/*/*"
	hs := []hostile{
		{name: "tmp", command: shell("ls -la /tmp; cat /tmp/" + planted)},
		{name: "root-home", command: shell("ls -la /root; cat /root/* /root/.[!.]*")},
		{name: "home", command: shell("ls -la /home; cat /home/*/* /home/*/.[!.]*")},
		{name: "find", command: shell("find / -xdev -name '*planted*' -print -exec cat {} +")},
		{name: "find-all", command: shell("find / \\( -path /proc -o -path /sys \\) -prune -o -name '*planted*' -print -exec cat {} +")},
		{name: "demo-dir", command: shell("ls -la " + demoDir + " " + demoDir + "/jobs; cat " + victim + " " + demoDir + "/jobs/*/data/volumes/*/*")},
		{name: "proc-root", command: shell("cat /proc/1/root/etc/hostname; cat /proc/*/root/tmp/" + planted + " /proc/*/root/root/" + planted +
			" /proc/*/root" + victim + " /proc/*/root/secret/*")},
		{name: "proc-cwd", command: shell("ls /proc/*/cwd/; cat /proc/*/cwd/victim-*/data/volumes/*/* /proc/*/cwd/data/volumes/*/* /proc/*/cwd/volumes/*/* /proc/*/cwd/secret/*")},
	}
	for i := range hs {
		hs[i].want = harmless
		hs[i].command[2] += "; echo end"
	}
	return hs
}

// imageVariants give images that name no image directory: shell syntax, a
// name not there, a path out of the image root, the host's own root. Each
// is refused before anything is written for it.
func imageVariants(m, runtime string) []hostile {
	const invalid = "not a valid image reference"
	missing, parent, root := "is not under the image root", "escapes the image root", "ImageRoot"
	if runtime == "podman" {
		// Images are podman's, by reference: a path is no reference.
		missing, parent, root = "is not in podman's storage", invalid, invalid
	}
	return []hostile{
		{name: "semicolon", want: refused, key: invalid, image: "busybox;" + touch(m, "image-semicolon")},
		{name: "subst", want: refused, key: invalid, image: "$(" + touch(m, "image-subst") + ")"},
		{name: "backtick", want: refused, key: invalid, image: "`" + touch(m, "image-backtick") + "`"},
		{name: "newline", want: refused, key: invalid, image: "busybox\n" + touch(m, "image-newline"), apiMayRefuse: true},
		// Not refused for good: it waits for the image, as a kubelet's pull.
		{name: "missing", want: imagePull, key: missing, image: "nosuchimage"},
		{name: "parent", want: refused, key: parent, image: "../busybox"},
		// The host's / as an image directory: the host's files in the container.
		{name: "host-root", want: refused, key: root, image: "/", command: shell("cat /root/interlink-hostile-planted-*; echo ran")},
		{name: "proc-root", want: refused, key: root, image: "/proc/1/root", command: shell("cat /root/interlink-hostile-planted-*; echo ran")},
	}
}

// volumeVariants declare volumes no container mounts: one naming a
// ConfigMap that does not exist runs (as on a kubelet); a hostPath is
// refused all the same.
func volumeVariants() []hostile {
	// An existing ConfigMap that no container mounts: the VK sends only
	// mounted volumes' data, and the pod must run all the same (a missing
	// one would hold the pod, as a kubelet holds it).
	cm := corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: hostileBinName}}}}
	declare := func(v corev1.Volume) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, v) }
	}
	return []hostile{
		{name: "unmounted-configmap", want: accepted, logs: "ran", spec: declare(cm)},
		{name: "unmounted-hostpath", want: refused, key: "AllowedHostPaths", spec: declare(hostPathVolume("/etc", ""))},
	}
}

// hugeLine is a pod printing 200 MiB without a newline.
func hugeLine() hostile {
	return hostile{class: "log", name: "huge-line", want: accepted, bigLog: true, within: 15 * time.Minute,
		command: shell("head -c 209715200 /dev/zero | tr '\\0' x; sleep 5")}
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
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: hostileBinName}, DefaultMode: &mode}}}}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "bin", MountPath: "/data/volumes/bin"}}
	}
	if h.image != "" {
		c.Image = h.image
	}
	if h.spec != nil {
		h.spec(p)
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

// imageRoot is the ImageRoot of the demo's SLURM sidecar (the last one its
// config gives).
func (s *stack) imageRoot(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "config", "slurm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var root string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "ImageRoot:"); ok {
			root = strings.TrimSpace(v)
		}
	}
	if !filepath.IsAbs(root) {
		t.Fatalf("no absolute ImageRoot in the demo's slurm.yaml:\n%s", b)
	}
	return root
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

// judge waits until h's pod has ended and returns what it came to and
// what its containers printed (the pods it refused print nothing), failing
// t when that is not h.want.
func (s *stack) judge(t *testing.T, h hostile) (got, logs string) {
	t.Helper()
	if h.want == imagePull {
		return s.judgeImagePull(t, h), ""
	}
	if h.within > 0 {
		s.waitEnded(t, h.podName(), h.within)
	} else {
		s.waitPhase(t, h.podName(), "Succeeded", "Failed")
	}
	p, err := s.getPod(t, "default", h.podName())
	if err != nil {
		t.Fatal(err)
	}
	byProvider := p.Status.Phase == corev1.PodFailed && p.Status.Reason == "ProviderFailed"
	got = "ran: " + string(p.Status.Phase)
	exit := int32(0)
	if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
		exit = cs[0].State.Terminated.ExitCode
		got += fmt.Sprintf(", exit code %d", exit)
	}
	if byProvider {
		got = "refused: " + p.Status.Message
	} else if !h.bigLog {
		logs, _ = s.kubectlRun(t, "logs", "--all-containers=true", h.podName())
		if strings.Contains(logs, crossesSymlink) {
			got += ", " + crossesSymlink
		}
	}
	named := byProvider && strings.Contains(p.Status.Message, h.key)
	symlink := !byProvider && (p.Status.Phase == corev1.PodFailed || exit != 0) && strings.Contains(logs, crossesSymlink)
	ok := true
	switch {
	case h.want == refused && !byProvider:
		ok = false
		t.Errorf("pod %s %s, want it refused naming %s", p.Name, got, h.key)
	case h.want == refused && !named:
		ok = false
		t.Errorf("pod %s %s: the reason does not name %s", p.Name, got, h.key)
	case h.want == accepted && p.Status.Phase != corev1.PodSucceeded:
		ok = false
		t.Errorf("pod %s %s, want it run to Succeeded", p.Name, got)
	case h.want == accepted && !strings.Contains(logs, h.logs):
		ok = false
		t.Errorf("pod %s %s: its logs lack %q:\n%s", p.Name, got, h.logs, logs)
	case h.want == symlinkRefused && !symlink:
		ok = false
		t.Errorf("pod %s %s, want its container ended non-zero, its log saying %q:\n%s", p.Name, got, crossesSymlink, logs)
	case h.want == refusedOrSymlink && !named && !symlink:
		ok = false
		t.Errorf("pod %s %s, want it refused naming %s, or its container ended non-zero, its log saying %q:\n%s", p.Name, got, h.key, crossesSymlink, logs)
	}
	if !ok {
		s.keep(t, p)
	}
	return got, logs
}

// judgeImagePull waits until h's pod waits for its image, as a kubelet
// shows a failed pull.
func (s *stack) judgeImagePull(t *testing.T, h hostile) string {
	t.Helper()
	var got string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, err := s.getPod(t, "default", h.podName())
		if err != nil {
			t.Fatal(err)
		}
		got = "phase " + string(p.Status.Phase)
		if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Waiting != nil {
			w := cs[0].State.Waiting
			got = fmt.Sprintf("waiting %s: %s", w.Reason, w.Message)
			if p.Status.Phase == corev1.PodPending && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, h.key) {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("pod %s %s after 2 minutes, want it Pending, waiting for its image, the message naming %q", h.podName(), got, h.key)
			s.keep(t, p)
			return got
		}
		time.Sleep(time.Second)
	}
}

// waitEnded waits until pod is Succeeded or Failed.
func (s *stack) waitEnded(t *testing.T, pod string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p, _ := s.kubectlRun(t, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		if p == "Succeeded" || p == "Failed" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s is %q after %s, want it ended", pod, p, within)
		}
		time.Sleep(time.Second)
	}
}

// kept is where keep copies what a failure's report needs; made once.
var kept struct {
	sync.Once
	dir string
}

// keep copies, for a failure's report, the sidecar's log and what it keeps
// of pod p (its job's directory, files up to 1 MiB), or only the log when p
// is nil, to a directory left after the test, and logs where.
func (s *stack) keep(t *testing.T, p *corev1.Pod) {
	t.Helper()
	kept.Do(func() {
		kept.dir, _ = os.MkdirTemp("", "interlink-hostile-kept-")
		t.Logf("what the failures left (the sidecar's log, the failed pods' job directories) is kept in %s", kept.dir)
	})
	if kept.dir == "" {
		return
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err == nil {
			_ = os.MkdirAll(filepath.Dir(dst), 0o700)
			err = os.WriteFile(dst, b, 0o600) //nolint:gosec // dst is below the kept directory
		}
		if err != nil {
			t.Logf("keep %s: %v", src, err)
		}
	}
	copyFile(filepath.Join(s.Dir, "sidecar.log"), filepath.Join(kept.dir, "sidecar.log"))
	for _, f := range []string{"interlink-vk.log", "docker/dockerd.log", "docker/containerd/containerd.log"} {
		if _, err := os.Stat(filepath.Join(s.Dir, f)); err == nil {
			copyFile(filepath.Join(s.Dir, f), filepath.Join(kept.dir, f))
		}
	}
	if p == nil {
		return
	}
	job := filepath.Join(s.Dir, "jobs", p.Namespace+"-"+string(p.UID))
	_ = filepath.WalkDir(job, func(f string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil //nolint:nilerr // keep what can be read
		}
		if fi, err := d.Info(); err == nil && fi.Size() <= 1<<20 {
			rel, _ := filepath.Rel(job, f)
			copyFile(f, filepath.Join(kept.dir, p.Name, rel))
		}
		return nil
	})
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

// newSecret is a string that appears nowhere until the test writes it.
func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "interlink-hostile-secret-" + hex.EncodeToString(b)
}

// plant writes secret to a new file interlink-hostile-planted-* in dir,
// readable by anyone (only confinement keeps it from a container), removed
// when the test ends, and returns its path.
func plant(t *testing.T, dir, secret string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "interlink-hostile-planted-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	if _, err := f.WriteString(secret + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// checkNoNewEntry fails t for every name in dir that is not in before.
func checkNoNewEntry(t *testing.T, dir string, before []string) {
	t.Helper()
	for _, n := range entries(t, dir) {
		if !slices.Contains(before, n) {
			t.Errorf("a hostile image name left %s", filepath.Join(dir, n))
		}
	}
}

// vmRSS is the resident set of process pid, in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscan(v, &kb); err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// watchRSS samples the resident set of process pid every 100 ms until
// stop, which returns the largest sample in bytes.
func watchRSS(pid int) (stop func() (int64, error)) {
	var (
		mu   sync.Mutex
		most int64
		serr error
	)
	sample := func() {
		n, err := vmRSS(pid)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && serr == nil {
			serr = err
		}
		most = max(most, n)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() (int64, error) {
		close(quit)
		<-done
		sample()
		mu.Lock()
		defer mu.Unlock()
		return most, serr
	}
}

// sidecarPID is the demo's SLURM sidecar's process, from its PID file.
func (s *stack) sidecarPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "sidecar.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatalf("sidecar.pid: %v", err)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "interlink-slurm" {
		t.Fatalf("process %d of sidecar.pid is %q, not interlink-slurm", pid, comm)
	}
	return pid
}

// tail runs kubectl logs --tail=1 on pod, for at most 60 s, and returns
// the line it printed and how long it took.
func (s *stack) tail(pod string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, s.kubectl, "--kubeconfig", s.kubeconfig, "logs", "--tail=1", pod)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		return "", took, fmt.Errorf("kubectl logs --tail=1 %s (%s): %w: %s", pod, took.Round(time.Millisecond), err, stderr.String())
	}
	return strings.TrimSuffix(string(out), "\n"), took, nil
}

// linePiece is the most of a line the job writes as one log line.
const linePiece = 16384

// maxSidecarRSS bounds the SLURM sidecar's resident set while it serves a
// 200 MiB line.
const maxSidecarRSS = 300_000_000

// TestE2EHostilePods applies pods that try to run commands on the SLURM
// host, through every field of a pod that reaches the job, to make demo's
// real stack, and pods that try to leave their volumes through symlinks,
// bind host directories, read the data of others, name images that are
// not there, or print a 200 MiB line. Each must be refused, naming the
// config key that would allow it, or run confined in its container; none
// may touch the marker directory or print a planted secret, the sidecar's
// memory stays bounded, and a long-running pod of another namespace, with
// a Secret, lives through it all. It runs on each container runtime of
// HOSTILE_RUNTIMES (make demo's RUNTIME values; default: every runtime
// that runs here), one demo stack each, with the same variants.
func TestE2EHostilePods(t *testing.T) {
	requireRoot(t)
	runtimes := strings.Fields(os.Getenv("HOSTILE_RUNTIMES"))
	if len(runtimes) == 0 {
		runtimes = []string{"apptainer", "charliecloud", "podman"}
	}
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) { hostilePods(t, rt) })
	}
}

// hostilePods is TestE2EHostilePods on make demo's stack with runtime rt.
func hostilePods(t *testing.T, rt string) {
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
	// The one directory hostPath volumes may use: real, with a file to
	// read; swap, where a pod may make a symlink; symlinks out of it (to /
	// and to the marker directory) and back into it.
	allowed := filepath.Join(t.TempDir(), "allowed")
	hostFile := "planted in the allowed directory"
	for _, d := range []string{"real", "swap"} {
		if err := os.MkdirAll(filepath.Join(allowed, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(allowed+"-sibling", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(allowed, "real", "planted"), []byte(hostFile+"\n"), 0o644); err != nil { //nolint:gosec // read in a container
		t.Fatal(err)
	}
	for link, target := range map[string]string{"escape": "/", "escape2": marker, "inner": filepath.Join(allowed, "real")} {
		if err := os.Symlink(target, filepath.Join(allowed, link)); err != nil {
			t.Fatal(err)
		}
	}
	// -n with one value is allowed: the allow-list is checked, not a blanket refusal.
	conf := filepath.Join(t.TempDir(), "slurm-hostile.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "AllowedMPIFlags: [\"-n=\"]\nMpiexecPath: %s\nAllowedHostPaths: [%q]\n", mpiexec, allowed), 0o600); err != nil {
		t.Fatal(err)
	}
	s := runDemo(t, "AUTH=static", "RUNTIME="+rt, "DEMO_SLURM_CONFIG="+conf)
	t.Cleanup(func() {
		if t.Failed() {
			s.keep(t, nil)
		}
	})

	// Secrets of others the hostile pods look for: files on the host, in
	// /tmp and in root's home, and the victim's Secret.
	secrets := []struct{ what, value string }{
		{"the file planted in /tmp", newSecret(t)},
		{"the file planted in /root", newSecret(t)},
		{"the victim's Secret", newSecret(t)},
	}
	plant(t, "/tmp", secrets[0].value)
	rootPlanted := plant(t, "/root", secrets[1].value)
	victimSecret := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "victim", Name: "victim-secret"}, StringData: map[string]string{"token": secrets[2].value}}
	victim := demoPod("victim", "sleeper", "sleep", "3600")
	victim.Spec.Volumes = []corev1.Volume{{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "victim-secret"}}}}
	victim.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "secret", MountPath: "/secret"}}
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "victim"}}
	if out, err := s.apply(t, ns, victimSecret, victim); err != nil {
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
	// The victim's Secret is on the host where the read variants look.
	victimData := filepath.Join(s.Dir, "jobs", "victim-*", "data", "volumes", "*", "*")
	found, _ := filepath.Glob(victimData)
	if !slices.ContainsFunc(found, func(f string) bool {
		b, _ := os.ReadFile(f)
		return bytes.Contains(b, []byte(secrets[2].value))
	}) {
		t.Fatalf("the victim's Secret is not in %s: %v", victimData, found)
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

	imagesDir := s.imageRoot(t)
	imagesBefore, rootBefore := entries(t, imagesDir), entries(t, "/")
	type class struct {
		name     string
		variants []hostile
		showLogs bool               // log what its pods printed
		after    func(t *testing.T) // more checks once its pods ended
	}
	classes := []class{
		{name: "annotation", variants: annotationVariants(marker, rt)},
		{name: "sbatch", variants: sbatchVariants(marker)},
		{name: "mpi", variants: mpiVariants(marker)},
		{name: "env", variants: envVariants(marker)},
		{name: "subpath", variants: subPathVariants(marker, rootPlanted)},
		{name: "hostpath", variants: hostPathVariants(marker, allowed, hostFile)},
		{name: "read", variants: readVariants(s.Dir), showLogs: true},
		{name: "image", variants: imageVariants(marker, rt), after: func(t *testing.T) {
			// Refused before anything was written for them: nothing new in
			// the image root, nor in the host's / (bind points for the image /).
			checkNoNewEntry(t, imagesDir, imagesBefore)
			checkNoNewEntry(t, "/", rootBefore)
		}},
		{name: "volume", variants: volumeVariants()},
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
	row := func(h hostile, got string) {
		// A refusal's message ends with the sidecar's own words
		// ("pod default/NAME: REASON"), after those of interlink.
		if i := strings.LastIndex(got, h.podName()+": "); strings.HasPrefix(got, "refused: ") && i >= 0 {
			got = "refused: " + got[i+len(h.podName())+2:]
		}
		if len(got) > 200 {
			got = got[:200] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", h.class, h.name, strings.ReplaceAll(got, "\n", `\n`))
	}
	// checkSecrets fails t when logs hold a planted secret, and says which.
	checkSecrets := func(t *testing.T, pod, logs string) string {
		t.Helper()
		var leaked []string
		for _, sec := range secrets {
			if strings.Contains(logs, sec.value) {
				t.Errorf("pod %s printed %s", pod, sec.what)
				leaked = append(leaked, sec.what)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		return "; LEAKED " + strings.Join(leaked, ", ")
	}
	for _, c := range classes {
		t.Run(c.name, func(t *testing.T) {
			for _, h := range c.variants {
				got, ok := apiRefused[h.podName()]
				if ok {
					got = "refused by the API server: " + got
				} else {
					var logs string
					got, logs = s.judge(t, h)
					got += checkSecrets(t, h.podName(), logs)
					if c.showLogs {
						if len(logs) > 2000 {
							logs = logs[:2000] + "..."
						}
						t.Logf("pod %s printed:\n%s", h.podName(), logs)
					}
				}
				row(h, got)
			}
			if c.after != nil {
				c.after(t)
			}
			checkMarker(t, marker)
			checkVictim(t)
		})
	}

	// A 200 MiB line, alone (it holds a CPU of the demo's SLURM for
	// minutes): kubectl logs --tail=1 answers within 60 s while it is
	// written and after, and the sidecar's memory stays bounded.
	t.Run("log", func(t *testing.T) {
		h := hugeLine()
		pid := s.sidecarPID(t)
		before, err := vmRSS(pid)
		if err != nil {
			t.Fatal(err)
		}
		stop := watchRSS(pid)
		if out, err := s.apply(t, h.pod()); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		var during string
		var slowest time.Duration
		eventually(t, "a piece of the line in kubectl logs --tail=1 while it is written", 3*time.Minute, func() error {
			line, took, err := s.tail(h.podName())
			slowest = max(slowest, took)
			if err == nil && line == "" {
				err = fmt.Errorf("nothing yet")
			}
			during = line
			return err
		})
		phase, _ := s.kubectlRun(t, "get", "pod", h.podName(), "-o", "jsonpath={.status.phase}")
		if len(during) > linePiece || strings.Trim(during, "x") != "" {
			t.Errorf("kubectl logs --tail=1 %s while it ran: %d bytes, want up to %d x: %.100q", h.podName(), len(during), linePiece, during)
		}
		got, _ := s.judge(t, h)
		after, took, err := s.tail(h.podName())
		slowest = max(slowest, took)
		if err != nil {
			t.Error(err)
		} else if len(after) != linePiece || strings.Trim(after, "x") != "" {
			t.Errorf("kubectl logs --tail=1 %s once it ended: %d bytes, want %d x: %.100q", h.podName(), len(after), linePiece, after)
		}
		if slowest >= 60*time.Second {
			t.Errorf("kubectl logs --tail=1 %s took %s", h.podName(), slowest)
		}
		most, err := stop()
		if err != nil {
			t.Errorf("the sidecar's RSS: %v", err)
		}
		end, err := vmRSS(pid)
		if err != nil {
			t.Errorf("the sidecar's RSS after: %v", err)
		}
		mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
		t.Logf("the SLURM sidecar's RSS (VmRSS of process %d): %s before the pod, at most %s while it ran and its logs were read (sampled every 100 ms), %s after",
			pid, mb(before), mb(most), mb(end))
		if most > maxSidecarRSS || end > maxSidecarRSS {
			t.Errorf("the SLURM sidecar's RSS reached %s (%s after), over %s", mb(most), mb(end), mb(maxSidecarRSS))
		}
		row(h, fmt.Sprintf("%s; tail -1 while %s: %d chars; once ended: %d chars; slowest tail %s; sidecar RSS at most %s",
			got, phase, len(during), len(after), slowest.Round(time.Millisecond), mb(most)))
		checkMarker(t, marker)
		checkVictim(t)
	})
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
