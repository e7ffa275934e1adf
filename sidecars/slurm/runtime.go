package slurm

import (
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// container is one container of a job, in the terms every runtime needs.
type container struct {
	name    string
	id      string // unique on the cluster: il-<pod uid>-<name>
	image   string // the reference as the pod gives it
	command []string
	args    []string
	env     [][2]string
	workDir string
	mounts  []mount
	gpu     string // "", "nvidia" or "amd"
	// envFile is the data-relative path of the env file, for runtimes that
	// read one.
	envFile string
	// extra options from the pod's annotations (Singularity/Apptainer only).
	options []string
}

// mount binds host (a word: a data path or an allowed host path) at ctr.
type mount struct {
	host, ctr string
	ro        bool
}

// runtime turns a container into the commands of the job script.
type runtime interface {
	// usesEnvFile tells whether the container's env goes in a file (mode
	// 0600, values quoted), never in a command's arguments where any user
	// of the node could read them.
	usesEnvFile() bool
	// sourcesEnvFile tells whether the job sources that file before the
	// runtime's command, which takes the variables from its environment.
	sourcesEnvFile() bool
	// image maps an image reference to the runtime's form.
	image(ref string) (string, error)
	// commands are the steps that run the container, the last one being
	// the container itself.
	commands(c *container, image string) [][]string
	// cleanup are the steps after the container ended, whatever its fate.
	cleanup(c *container) [][]string
}

func newRuntime(name string, cfg *Config, imageRoot string) runtime {
	switch name {
	case RuntimeEnroot:
		return enroot{cfg: cfg, imageRoot: imageRoot}
	case RuntimeCharliecloud:
		return charliecloud{cfg: cfg, imageRoot: imageRoot}
	case RuntimePodman:
		return podman{cfg: cfg}
	case RuntimeApptainer:
		return singularity{cfg: cfg, bin: cfg.ApptainerPath, imageRoot: imageRoot}
	default:
		return singularity{cfg: cfg, bin: cfg.SingularityPath, imageRoot: imageRoot}
	}
}

// hasScheme tells whether ref is a URI such as docker://busybox.
func hasScheme(ref string) bool { return strings.Contains(ref, "://") }

// localImage resolves ref under root: a path that stays inside root, or an
// error naming the reference.
func localImage(root, ref string) (string, error) {
	if !filepath.IsLocal(ref) {
		return "", fmt.Errorf("image %q escapes the image root %s", ref, root)
	}
	return filepath.Join(root, ref), nil
}

// singularity runs containers with Singularity or Apptainer (the same CLI).
type singularity struct {
	cfg       *Config
	bin       string
	imageRoot string
}

func (singularity) usesEnvFile() bool    { return true }
func (singularity) sourcesEnvFile() bool { return false }

func (s singularity) image(ref string) (string, error) {
	switch {
	case filepath.IsAbs(ref) || hasScheme(ref):
		return ref, nil // a SIF file, an image directory or a URI
	case s.imageRoot != "":
		return localImage(s.imageRoot, ref)
	default:
		return s.cfg.ImagePrefix + ref, nil
	}
}

func (s singularity) commands(c *container, image string) [][]string {
	sub := "exec"
	if len(c.command) == 0 {
		sub = "run"
	}
	argv := []string{s.bin, sub}
	argv = append(argv, s.cfg.SingularityDefaultOptions...)
	argv = append(argv, c.options...)
	switch c.gpu {
	case "nvidia":
		argv = append(argv, "--nv")
	case "amd":
		argv = append(argv, "--rocm")
	}
	argv = append(argv, "--env-file", dataRef(c.envFile))
	for _, m := range c.mounts {
		b := m.host + ":" + m.ctr
		if m.ro {
			b += ":ro"
		}
		argv = append(argv, "--bind", b)
	}
	if c.workDir != "" {
		argv = append(argv, "--pwd", c.workDir)
	}
	argv = append(argv, image)
	argv = append(argv, c.command...)
	argv = append(argv, c.args...)
	return [][]string{argv}
}

func (singularity) cleanup(*container) [][]string { return nil }

// enroot imports the image (unless it is a local squashfs file), creates a
// container from it, starts it and removes it.
type enroot struct {
	cfg       *Config
	imageRoot string
}

func (enroot) usesEnvFile() bool    { return true }
func (enroot) sourcesEnvFile() bool { return true }

func (e enroot) image(ref string) (string, error) {
	switch {
	case filepath.IsAbs(ref):
		return ref, nil
	case e.imageRoot != "" && strings.HasSuffix(ref, ".sqsh"):
		return localImage(e.imageRoot, ref)
	case hasScheme(ref):
		return ref, nil
	}
	// enroot separates the registry from the repository with '#'.
	if i := strings.IndexByte(ref, '/'); i > 0 && strings.ContainsAny(ref[:i], ".:") {
		ref = ref[:i] + "#" + ref[i+1:]
	}
	return e.cfg.ImagePrefix + ref, nil
}

func (e enroot) commands(c *container, image string) [][]string {
	var steps [][]string
	if !strings.HasSuffix(image, ".sqsh") {
		sqsh := dataRef(path.Join("images", c.name+".sqsh"))
		steps = append(steps, []string{"mkdir", "-p", dataRef("images")},
			[]string{e.cfg.EnrootPath, "import", "--output", sqsh, image})
		image = sqsh
	}
	steps = append(steps, []string{e.cfg.EnrootPath, "create", "--force", "--name", c.id, image})
	start := []string{e.cfg.EnrootPath, "start", "--rw"}
	for _, kv := range c.env {
		start = append(start, "--env", kv[0]) // its value from the sourced env file
	}
	for _, m := range c.mounts {
		start = append(start, "--mount", m.host+":"+m.ctr)
	}
	start = append(start, c.id)
	cmd := append(append([]string{}, c.command...), c.args...)
	if c.workDir != "" && len(cmd) > 0 {
		// enroot has no working-directory option.
		cmd = append([]string{"/bin/sh", "-c", `cd -- "$0" && exec "$@"`, c.workDir}, cmd...)
	}
	return append(steps, append(start, cmd...))
}

func (e enroot) cleanup(c *container) [][]string {
	return [][]string{{e.cfg.EnrootPath, "remove", "--force", c.id}}
}

// charliecloud runs image directories with ch-run.
type charliecloud struct {
	cfg       *Config
	imageRoot string
}

// Charliecloud takes the env as arguments (ch-run cannot import variables
// by name once --unset-env cleared them): values are literal but visible to
// the node's users while the container runs.
func (charliecloud) usesEnvFile() bool    { return false }
func (charliecloud) sourcesEnvFile() bool { return false }

func (c charliecloud) image(ref string) (string, error) {
	switch {
	case filepath.IsAbs(ref):
		return ref, nil
	case hasScheme(ref):
		return "", fmt.Errorf("image %q: Charliecloud runs image directories; set ImageRoot or give a path", ref)
	case c.imageRoot != "":
		return localImage(c.imageRoot, ref)
	default:
		return ref, nil // a name in ch-image's storage
	}
}

func (c charliecloud) commands(ct *container, image string) [][]string {
	var steps [][]string
	if len(ct.mounts) > 0 || ct.workDir != "" {
		// ch-run binds only onto directories that exist in the image, and
		// starts only in one that exists.
		mk := []string{"mkdir", "-p", "--"}
		for _, m := range ct.mounts {
			mk = append(mk, image+m.ctr)
		}
		if ct.workDir != "" {
			mk = append(mk, image+path.Clean("/"+ct.workDir))
		}
		steps = append(steps, mk)
	}
	// --env-no-expand: values are literal, ch-run expands no $VAR in them.
	argv := []string{c.cfg.ChRunPath, "--env-no-expand", "--unset-env=*"}
	hasPath := false
	for _, kv := range ct.env {
		argv = append(argv, "--set-env="+kv[0]+"="+kv[1])
		hasPath = hasPath || kv[0] == "PATH"
	}
	if !hasPath {
		argv = append(argv, "--set-env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	for _, m := range ct.mounts {
		argv = append(argv, "--bind="+m.host+":"+m.ctr)
	}
	if ct.workDir != "" {
		argv = append(argv, "--cd="+ct.workDir)
	}
	argv = append(argv, image, "--")
	argv = append(argv, ct.command...)
	return append(steps, append(argv, ct.args...))
}

func (charliecloud) cleanup(*container) [][]string { return nil }

// podman runs containers with podman run, on the host network.
type podman struct{ cfg *Config }

func (podman) usesEnvFile() bool    { return true }
func (podman) sourcesEnvFile() bool { return true }

func (podman) image(ref string) (string, error) { return ref, nil }

func (p podman) commands(c *container, image string) [][]string {
	argv := []string{p.cfg.PodmanPath, "run", "--rm", "--name=" + c.id, "--network=host"}
	for _, kv := range c.env {
		argv = append(argv, "--env="+kv[0]) // its value from the sourced env file
	}
	for _, m := range c.mounts {
		v := m.host + ":" + m.ctr
		if m.ro {
			v += ":ro"
		}
		argv = append(argv, "--volume="+v)
	}
	if c.workDir != "" {
		argv = append(argv, "--workdir="+c.workDir)
	}
	if c.gpu == "nvidia" {
		argv = append(argv, "--device=nvidia.com/gpu=all")
	}
	if len(c.command) > 0 {
		ep, _ := json.Marshal(c.command) // a []string always marshals
		argv = append(argv, "--entrypoint="+string(ep))
	}
	argv = append(argv, image)
	return [][]string{append(argv, c.args...)}
}

func (p podman) cleanup(c *container) [][]string {
	return [][]string{{p.cfg.PodmanPath, "rm", "--force", "--ignore", c.id}}
}
