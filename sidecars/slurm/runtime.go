package slurm

import (
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
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
	// envFile is the data-relative path of the env file: quoted words for
	// envQuotedFile runtimes, NUL-separated entries in envDir for helpers.
	envFile string
	// envDir is the data-relative directory bound at helperDir: the helper
	// and its env file (envHelper; for envQuotedFile runtimes an empty one,
	// the helper only running the command).
	envDir string
	// extra options from the pod's annotations (Singularity/Apptainer only).
	options []string
	// enrootOptions are the options and mounts of the pod's enroot
	// annotations (enroot only).
	enrootOptions []string
	// siteImage: the image is an image directory of the site, its config
	// applied (siteImageRuntime).
	siteImage bool
	// msgPath is the container's terminationMessagePath, which the helper
	// copies to helperMsg when the command exits ("": none, the helper
	// does not run the command or the runtime cannot give the container
	// that file).
	msgPath string
}

// mount binds host (a word: a data path or an allowed host path) at ctr.
type mount struct {
	host, ctr string
	ro        bool
	// file: a file is bound (a ConfigMap key's subPath), not a directory.
	file bool
	// beneath, when set, is opened by the job at start (host is then an
	// fdMarker).
	beneath *beneathSpec
}

// beneathSpec is a path the job opens beneath root, a word (data path or
// allowed host directory), without following symlinks; mkdir makes the
// missing directories (an emptyDir's subPath).
type beneathSpec struct {
	root, rel string
	mkdir     bool
}

// envMode is how a runtime gets a container's environment.
type envMode int

const (
	// envQuotedFile: the runtime reads an env file of quoted shell words
	// itself (Singularity/Apptainer --env-file), inside the container.
	envQuotedFile envMode = iota
	// envHelper: the interlink-envexec helper, bound into the container,
	// reads a NUL-separated env file and execs the command.
	envHelper
)

// Where the helper and a container's env file are bound in the container.
const (
	helperDir  = "/.interlink"
	helperPath = helperDir + "/envexec"
	helperEnv  = helperDir + "/env"
)

// runtime turns a container into the commands of the job script. The
// container's env never reaches the job's shell or a host program's
// environment: each runtime applies it inside the container (envMode).
type runtime interface {
	env() envMode
	// image maps an image reference to the runtime's form.
	image(ref string) (string, error)
	// commands are the steps that run the container, the last one being
	// the container itself.
	commands(c *container, image string) [][]string
	// cleanup are the steps after the container ended, whatever its fate.
	cleanup(c *container) [][]string
}

// siteImageRuntime is a runtime that runs image directories of the site.
// An image it takes for one (imageDirs) is found by reference under the
// pod's image root (ch-image storage or a directory of images, references
// compared as Docker normalizes them) or given by its absolute path; its
// config (ENTRYPOINT, CMD, ENV, WORKDIR) applies as a kubelet applies an
// image's, and its bind points and working directory are made in it, as
// the container will resolve them (prepareImage).
type siteImageRuntime interface {
	imageDirs(ref string) bool
}

// helperArgv is the start of a helper runtime's container command: the
// helper, its env file and, when set, the working directory, the
// termination message path (messageArgs) and the container paths of the
// binds it makes read-only (for a runtime that cannot bind read-only
// itself).
func helperArgv(workDir string, readOnly []string, msg string) []string {
	argv := []string{helperPath}
	if workDir != "" {
		argv = append(argv, "-C", workDir)
	}
	argv = append(argv, messageArgs(msg)...)
	for _, p := range readOnly {
		argv = append(argv, "-r", p)
	}
	return append(argv, helperEnv, "--")
}

func newRuntime(name string, cfg *Config, imageRoot, prefix string) runtime {
	switch name {
	case RuntimeEnroot:
		return enroot{cfg: cfg, imageRoot: imageRoot, prefix: prefix}
	case RuntimeCharliecloud:
		return charliecloud{cfg: cfg, imageRoot: imageRoot}
	case RuntimePodman:
		return podman{cfg: cfg}
	case RuntimeApptainer:
		return singularity{cfg: cfg, bin: cfg.ApptainerPath, imageRoot: imageRoot, prefix: prefix}
	default:
		return singularity{cfg: cfg, bin: cfg.SingularityPath, imageRoot: imageRoot, prefix: prefix}
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
	prefix    string // ImagePrefix, or the pod's URI prefix
}

func (singularity) env() envMode { return envQuotedFile }

// imageDirs: a sandbox directory is an image of Singularity/Apptainer as it
// is. Image files (SIF, and the older .simg/.img) and URIs are run as
// they are, without the site's image config.
func (singularity) imageDirs(ref string) bool { return !hasScheme(ref) && !isImageFile(ref) }

// isImageFile tells whether ref names a Singularity/Apptainer image file.
func isImageFile(ref string) bool {
	return slices.ContainsFunc([]string{".sif", ".simg", ".img"}, func(ext string) bool { return strings.HasSuffix(ref, ext) })
}

func (s singularity) image(ref string) (string, error) {
	switch {
	case filepath.IsAbs(ref) || hasScheme(ref):
		return ref, nil // a SIF file, an image directory or a URI
	case s.imageRoot != "":
		return localImage(s.imageRoot, ref)
	default:
		return s.prefix + ref, nil
	}
}

func (s singularity) commands(c *container, image string) [][]string {
	sub := "exec"
	if len(c.command) == 0 {
		sub = "run"
	}
	// --quiet: the runtime's warnings stay out of the container's log,
	// its errors do not.
	argv := []string{s.bin, "--quiet", sub}
	argv = append(argv, s.cfg.SingularityDefaultOptions...)
	argv = append(argv, c.options...)
	if c.siteImage {
		// As a Kubernetes container: the image's root filesystem, its /tmp
		// included, writable (in memory, within the runtime's session size),
		// rather than a new /tmp over the image's that would hide the bind
		// points made there (prepareImage).
		argv = append(argv, "--writable-tmpfs", "--no-mount", "tmp")
	}
	switch c.gpu {
	case "nvidia":
		argv = append(argv, "--nv")
	case "amd":
		argv = append(argv, "--rocm")
	}
	// The env file's values are literal words: without --no-eval the
	// runtime would shell-evaluate them again in the container ($VAR,
	// $(...), backquotes), so that they would not arrive byte for byte.
	argv = append(argv, "--no-eval", "--env-file", dataRef(c.envFile))
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
	if c.envDir != "" {
		// The helper runs the command, with the env the runtime set: one
		// that cannot run exits 126 or 127, as a kubelet reports it (the
		// runtime's own exec ends 255 for any failure).
		argv = append(argv, helperArgv("", nil, c.msgPath)...)
	}
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
	prefix    string // ImagePrefix, or the pod's URI prefix
}

func (enroot) env() envMode { return envHelper }

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
	return e.prefix + ref, nil
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
	start := append([]string{e.cfg.EnrootPath, "start"}, e.cfg.EnrootDefaultOptions...)
	start = append(start, c.enrootOptions...)
	for _, m := range c.mounts {
		mnt := m.host + " " + m.ctr + " none x-create=dir,bind"
		if m.ro {
			mnt += ",ro"
		}
		start = append(start, "--mount", mnt)
	}
	start = append(start, c.id)
	// enroot has no working-directory option: the helper changes to it.
	start = append(start, helperArgv(c.workDir, nil, c.msgPath)...)
	if len(c.command) == 0 {
		// The image's own start (its entrypoint and command).
		start = append(start, "/etc/rc")
	}
	start = append(start, c.command...)
	return append(steps, append(start, c.args...))
}

func (e enroot) cleanup(c *container) [][]string {
	return [][]string{{e.cfg.EnrootPath, "remove", "--force", c.id}}
}

// charliecloud runs image directories with ch-run.
type charliecloud struct {
	cfg       *Config
	imageRoot string
}

// Charliecloud's --set-env strips quotes from values: the helper sets the
// env instead.
func (charliecloud) env() envMode { return envHelper }

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

// imageDirs: Charliecloud runs image directories only.
func (charliecloud) imageDirs(string) bool { return true }

// commands run ch-run; the sidecar made the bind points and the working
// directory in the image when it built the job (prepareImage).
func (c charliecloud) commands(ct *container, image string) [][]string {
	// A private /tmp and no host home: the host's files stay out of sight.
	// No variable of the job reaches the container (--unset-env); the
	// helper sets the pod's.
	// ch-run binds only read-write: the helper, started as uid 0 of the
	// container's user namespace (with its capabilities there, as a
	// Kubernetes container's root), remounts the read-only binds read-only
	// at the paths the binds went to (ctr, as prepareImage resolved it),
	// then drops the capabilities that could undo it (envexec).
	argv := []string{c.cfg.ChRunPath, "--private-tmp", "--unset-env=*", "--uid=0", "--gid=0"}
	var readOnly []string
	for _, m := range ct.mounts {
		argv = append(argv, "--bind="+m.host+":"+m.ctr)
		if m.ro {
			readOnly = append(readOnly, m.ctr)
		}
	}
	if ct.workDir != "" {
		argv = append(argv, "--cd="+ct.workDir)
	}
	argv = append(argv, image, "--")
	argv = append(argv, helperArgv("", readOnly, ct.msgPath)...)
	argv = append(argv, ct.command...)
	return [][]string{append(argv, ct.args...)}
}

func (charliecloud) cleanup(*container) [][]string { return nil }

// podman runs containers with podman run, on the host network. Images are
// references as Docker normalizes them (busybox is
// docker.io/library/busybox:latest), as a kubelet names them: podman never
// resolves a short name (no registry search, no prompt), and a pod cannot
// name a transport or a host path (docker-archive:/path, oci:...).
type podman struct{ cfg *Config }

func (podman) env() envMode { return envHelper }

func (podman) image(ref string) (string, error) { return normalizeRef(ref) }

// commands run podman run under the helper's subreaper mode: conmon, the
// parent of the container's processes, leaves podman's process tree; the
// helper adopts it, so that Slurm's process tracking counts the
// container's memory and signals it with the job (envexec reap). The
// container writes straight into the job's log pipe
// (--log-driver=passthrough). A container of the same name left by a
// killed job is removed first: podman 4.3 fails to remove one whose
// processes were killed with its conmon ("could not be stopped: container
// state improper"), but that failure records it as stopped, and --replace
// then removes it.
func (p podman) commands(c *container, image string) [][]string {
	steps := [][]string{{stepMayFail, p.cfg.PodmanPath, "rm", "--force", "--ignore", "--time=0", "--", c.id}}
	argv := []string{ilEnvExec, envexec.ReapMode, "--", p.cfg.PodmanPath, "run", "--rm", "--replace", "--name=" + c.id,
		"--network=host", "--log-driver=passthrough"}
	for _, m := range c.mounts {
		v := m.host + ":" + m.ctr
		if m.ro {
			v += ":ro"
		}
		argv = append(argv, "--volume="+v)
	}
	if c.gpu == "nvidia" {
		argv = append(argv, "--device=nvidia.com/gpu=all")
	}
	// The helper is the entrypoint; the pod's command, or else the image's
	// entrypoint (read by the job from the image), follows it. podman
	// starts in the image's WORKDIR; the helper changes to the pod's
	// workingDir, making it when missing (podman run --workdir refuses a
	// directory the image lacks, which a kubelet's runtime makes).
	ep, _ := json.Marshal(helperArgv(c.workDir, nil, c.msgPath)) // a []string always marshals
	argv = append(argv, "--entrypoint="+string(ep), image)
	if len(c.command) > 0 {
		return append(steps, append(append(argv, c.command...), c.args...))
	}
	args := []string{imageEntrypoint}
	if len(c.args) > 0 {
		args = append(args, c.args...)
	} else {
		args = append(args, imageCmd)
	}
	return append(steps, []string{stepReadImageConfig, p.cfg.PodmanPath, image}, append(argv, args...))
}

// Marks of podman's steps: a step whose failure (and output) is ignored; a
// step that reads the image's entrypoint and command into the job's arrays
// il_ep and il_cmd (pulling the image first), and the words that stand for
// those arrays in a later step.
const (
	stepMayFail         = "\x00IL_MAY_FAIL\x00"
	stepReadImageConfig = "\x00IL_READ_IMAGE_CONFIG\x00"
	imageEntrypoint     = "\x00IL_IMAGE_ENTRYPOINT\x00"
	imageCmd            = "\x00IL_IMAGE_CMD\x00"
)

func (p podman) cleanup(c *container) [][]string {
	return [][]string{{p.cfg.PodmanPath, "rm", "--force", "--ignore", c.id}}
}
