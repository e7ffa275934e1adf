package slurm

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
)

// imageEnv turns an image's NAME=VALUE entries into env pairs; an entry
// without a valid name is left out.
func imageEnv(entries []string) [][2]string {
	out := make([][2]string, 0, len(entries))
	for _, e := range entries {
		if k, v, ok := strings.Cut(e, "="); ok && len(validation.IsEnvVarName(k)) == 0 {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

// container describes one container of the pod; fs are its env file, if
// its runtime uses one.
func (b *builder) container(c *corev1.Container, vols map[string]poddata.Volume, rt runtime) (*container, []poddata.File, error) {
	if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
		return nil, nil, fmt.Errorf("container name %q: %s", c.Name, strings.Join(msgs, "; "))
	}
	ct := &container{
		name: c.Name, id: containerID(b.pod.UID, c.Name), image: c.Image, workDir: c.WorkingDir,
	}
	var errs []error
	var files []poddata.File
	img, err := rt.image(c.Image)
	if err == nil && filepath.IsAbs(c.Image) {
		err = b.checkImagePath(c.Image)
	}
	// The site's image directories are found by reference under the image
	// root, as Docker normalizes references, and their config (ENTRYPOINT,
	// CMD, ENV, WORKDIR) applies as a container runtime's does
	// (siteImageRuntime).
	sr, dirs := rt.(siteImageRuntime)
	dirs = dirs && err == nil && sr.imageDirs(c.Image) && b.site.images != nil && (filepath.IsAbs(c.Image) || b.imageRoot != "")
	var icfg *imageConfig
	if dirs {
		img, icfg, err = b.site.images.find(b.imageRoot, c.Image)
	}
	imageOK := err == nil
	if err != nil {
		errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
	}
	if c.Image == "" || strings.HasPrefix(c.Image, "-") {
		errs = append(errs, fmt.Errorf("container %s: image %q is empty or starts with '-'", c.Name, c.Image))
	}
	ct.image, ct.siteImage = img, dirs && imageOK
	env, err := poddata.Env(c)
	if err != nil {
		errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
	}
	// As the kubelet does: $(VAR) in command and args from the pod's env
	// (not the image's).
	ct.env, ct.command, ct.args = env, poddata.ExpandAll(c.Command, env), poddata.ExpandAll(c.Args, env)
	if icfg != nil {
		ct.env = append(imageEnv(icfg.Env), ct.env...) // the pod's values win
		if len(c.Command) == 0 {
			// As Kubernetes defines it: the image's ENTRYPOINT, with the
			// pod's args or else the image's CMD.
			ct.command = icfg.Entrypoint
			if len(c.Args) == 0 {
				ct.args = icfg.Cmd
			}
		}
		if ct.workDir == "" {
			ct.workDir = icfg.WorkingDir
		}
	}
	if dirs && imageOK && len(ct.command)+len(ct.args) == 0 {
		errs = append(errs, fmt.Errorf("container %s: no command to run: the pod gives none and image %s has no ENTRYPOINT or CMD (%s in its directory)", c.Name, c.Image, chConfigPulled))
	}
	if dirs && len(ct.command) == 0 {
		// Neither the pod nor the image gives a command (ENTRYPOINT): the
		// args (the pod's, or else the image's CMD) are the command, run
		// as they are (not the image's own start, as an image file's).
		ct.command, ct.args = ct.args, nil
	}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			if b.cfg.ExportPodData {
				errs = append(errs, fmt.Errorf("container %s: volume mount %q names no volume", c.Name, m.Name))
			}
			continue
		}
		dir, hostPath, mkdir, err := poddata.Mount(v, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
			continue
		}
		files = append(files, mkdir...)
		host := hostPath
		if host == "" {
			host = dataRef(dir)
		}
		mnt := mount{host: host, ctr: path.Clean(m.MountPath), ro: v.ReadOnly || m.ReadOnly, file: b.dataFiles[dir]}
		if hostPath != "" && b.site.images != nil {
			// A host file (the sidecar's host sees the allowed paths).
			st, err := os.Lstat(hostPath)
			mnt.file = err == nil && st.Mode().IsRegular()
		}
		// A subPath, or a hostPath, is opened by the job beneath its volume
		// or allowed directory when the container starts: a container may
		// have swapped a directory of it for a symlink since the pod was
		// checked.
		switch {
		case v.HostPath != "":
			root, rel := poddata.HostPathRoot(b.cfg.AllowedHostPaths, hostPath)
			mnt.beneath = &beneathSpec{root: root, rel: rel}
		case m.SubPath != "":
			mnt.beneath = &beneathSpec{root: dataRef(v.Dir), rel: path.Clean(m.SubPath), mkdir: v.EmptyDir}
		}
		if mnt.beneath != nil {
			mnt.host = fdMarker(len(ct.mounts))
		}
		ct.mounts = append(ct.mounts, mnt)
	}
	if b.cfg.Tsocks {
		// Directories, not files: every runtime binds those.
		ct.mounts = append(ct.mounts,
			mount{host: path.Dir(b.cfg.TsocksPath), ctr: tsocksLibDir, ro: true},
			mount{host: dataRef("tsocks"), ctr: tsocksConfDir, ro: true})
		ct.env = append(ct.env, [2]string{"LD_PRELOAD", path.Join(tsocksLibDir, path.Base(b.cfg.TsocksPath))},
			[2]string{"TSOCKS_CONF_FILE", path.Join(tsocksConfDir, "tsocks.conf")})
	}
	if q := c.Resources.Limits[resourceNvidiaGPU]; !q.IsZero() {
		ct.gpu = "nvidia"
	} else if q := c.Resources.Limits[resourceAMDGPU]; !q.IsZero() {
		ct.gpu = "amd"
	}
	ct.options = b.singOpts
	ct.enrootOptions = b.enrootOpts
	switch rt.env() {
	case envQuotedFile:
		ct.envFile = path.Join("env", c.Name+".env")
		var sb strings.Builder
		for _, kv := range ct.env {
			q, err := quote(kv[1])
			if err != nil {
				errs = append(errs, fmt.Errorf("container %s: env %s cannot be quoted (it holds a NUL byte)", c.Name, kv[0]))
				continue
			}
			sb.WriteString(kv[0] + "=" + q + "\n")
		}
		files = append(files, poddata.File{Path: ct.envFile, Data: []byte(sb.String()), Mode: poddata.ModeSecret})
		if len(ct.command) > 0 || probed(c) {
			// The helper runs the command (the runtime execs it); its env
			// file is empty: the runtime's is the container's env. The
			// prober's exec handlers enter the container without the
			// runtime: with probes or hooks the helper's file holds the env.
			env := []byte{}
			if probed(c) {
				if env, err = envexec.Encode(ct.env); err != nil {
					errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
				}
			}
			files = append(files, ct.bindHelper(env)...)
		}
	case envHelper:
		data, err := envexec.Encode(ct.env)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
		}
		files = append(files, ct.bindHelper(data)...)
		ct.envFile = path.Join(ct.envDir, "env")
	}
	if ct.envDir != "" && (rt.env() == envHelper || len(ct.command) > 0) {
		ct.msgPath = messagePath(c, rt) // the helper runs the command
	}
	if dirs && imageOK {
		// Bind points and the working directory are made in the image (ch-run
		// binds only onto directories there, and starts only in one that
		// exists), at the paths the container resolves them to through the
		// image's own symlinks (/var/run -> /run), and the binds go there.
		if err := b.prepareImage(ct, img); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
		}
	}
	return ct, files, errors.Join(errs...)
}

// checkImagePath refuses an image given as a host path outside the image
// roots the operator set: a pod must not run the host's / (or any other
// directory or file) as its image.
func (b *builder) checkImagePath(p string) error {
	var roots []string
	for _, r := range append([]string{b.cfg.ImageRoot, b.imageRoot}, b.cfg.AllowedImageRoots...) {
		if r != "" {
			roots = append(roots, r)
		}
	}
	if !poddata.AllowedHostPath(roots, p) {
		return fmt.Errorf("image %q is a host path outside ImageRoot and AllowedImageRoots (in the sidecar's config)", p)
	}
	return nil
}

// prepareImage makes the container's bind points and working directory in
// its image directory, and binds onto the paths as resolved there.
func (b *builder) prepareImage(ct *container, image string) error {
	points := make([]bindPoint, 0, len(ct.mounts)+1)
	for _, m := range ct.mounts {
		points = append(points, bindPoint{path: m.ctr, file: m.file})
	}
	if ct.workDir != "" {
		points = append(points, bindPoint{path: path.Clean("/" + ct.workDir)})
	}
	resolved, err := b.site.images.prepare(image, points)
	if err != nil {
		return err
	}
	for i := range ct.mounts {
		ct.mounts[i].ctr = resolved[i]
	}
	return nil
}

// bindHelper gives the container its helper directory (the helper's copy
// and an env file holding env) bound read-only at helperDir, with its msg
// directory bound read-write at helperMsgDir (the termination message),
// and returns the files to write.
func (ct *container) bindHelper(env []byte) []poddata.File {
	ct.envDir = path.Join(helperDataDir, ct.name)
	msgDir := path.Join(ct.envDir, path.Dir(msgName))
	ct.mounts = append(ct.mounts, mount{host: dataRef(ct.envDir), ctr: helperDir, ro: true},
		mount{host: dataRef(msgDir), ctr: helperMsgDir})
	return []poddata.File{{Path: ct.envDir, Dir: true, Mode: 0o700}, {Path: msgDir, Dir: true, Mode: 0o700},
		{Path: path.Join(ct.envDir, "env"), Data: env, Mode: poddata.ModeSecret}}
}

// helperDataDir holds, per container, the helper's copy and its env file.
const helperDataDir = ".interlink"

// singularityOptions are the options of the singularity-options annotation
// (within AllowedSingularityOptions) and the binds of singularity-mounts
// (sources under AllowedHostPaths).
func (b *builder) singularityOptions() ([]string, error) {
	return b.runtimeOptions(AnnotationSingularityOptions, b.cfg.AllowedSingularityOptions, "AllowedSingularityOptions",
		AnnotationSingularityMounts, "binds", singularityBinds)
}

// enrootOptions are the options of the enroot-options annotation (within
// AllowedEnrootOptions) and the mounts of enroot-mounts (sources under
// AllowedHostPaths), as enroot start words.
func (b *builder) enrootOptions() ([]string, error) {
	return b.runtimeOptions(AnnotationEnrootOptions, b.cfg.AllowedEnrootOptions, "AllowedEnrootOptions",
		AnnotationEnrootMounts, "mounts", enrootMounts)
}

// runtimeOptions are the words of a runtime's two annotations: options
// (optsAnn, each within allowed, the config key optsKey) and host mounts
// (mountsAnn, turned into words by mount, sources under AllowedHostPaths).
func (b *builder) runtimeOptions(optsAnn string, allowed []string, optsKey, mountsAnn, noun string,
	mount func(string, []string, func(string) (os.FileInfo, error)) ([]string, error)) ([]string, error) {
	var out []string
	if s, ok := b.pod.Annotations[optsAnn]; ok {
		w, err := allowedWords(s, allowed, optsKey)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", optsAnn, err)
		}
		out = append(out, w...)
	}
	if s, ok := b.pod.Annotations[mountsAnn]; ok {
		words, err := mount(s, b.cfg.AllowedHostPaths, b.site.statHost)
		if err != nil && !strings.Contains(err.Error(), "AllowedHostPaths") {
			err = fmt.Errorf("%w (%s of sources under AllowedHostPaths in the sidecar's config are accepted)", err, noun)
		}
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", mountsAnn, err)
		}
		out = append(out, words...)
	}
	return out, nil
}

// enrootMounts checks the mounts of the enroot-mounts annotation
// (--mount SRC[:DST[:ro|rw]], -m, comma-separated lists, as the binds of
// singularity-mounts) and returns them as enroot start's fstab-like
// --mount words.
func enrootMounts(s string, allowed []string, stat func(string) (os.FileInfo, error)) ([]string, error) {
	w, err := words(s)
	if err != nil {
		return nil, err
	}
	var binds []string
	for i := 0; i < len(w); i++ {
		spec, ok := strings.CutPrefix(w[i], "--mount=")
		if !ok {
			if w[i] != "--mount" && w[i] != "-m" || i+1 >= len(w) {
				return nil, fmt.Errorf("%q: only --mount SRC[:DST[:ro]] (or -m) is accepted", w[i])
			}
			i++
			spec = w[i]
		}
		binds = append(binds, "--bind", spec)
	}
	checked, err := singularityBinds(strings.Join(quoteAll(binds), " "), allowed, stat)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := 1; i < len(checked); i += 2 {
		f := strings.Split(checked[i], ":")
		src, dst, opts := f[0], f[0], "x-create=dir,bind"
		if len(f) > 1 {
			dst = f[1]
		}
		if strings.ContainsAny(src+dst, " \t\\") {
			return nil, fmt.Errorf("mount %q: enroot reads its paths as fstab fields: no blank or backslash", checked[i])
		}
		if len(f) > 2 && f[2] == "ro" {
			opts += ",ro"
		}
		out = append(out, "--mount", src+" "+dst+" none "+opts)
	}
	return out, nil
}

// singularityBinds checks the binds of the singularity-mounts annotation
// (--bind SRC[:DST[:ro|rw]], -B, comma-separated lists): each source must
// be under an allowed host path, symlinks resolved, and exist (stat; nil:
// not asked). This is checked at submit only.
func singularityBinds(s string, allowed []string, stat func(string) (os.FileInfo, error)) ([]string, error) {
	w, err := words(s)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := 0; i < len(w); i++ {
		spec, ok := strings.CutPrefix(w[i], "--bind=")
		if !ok {
			if w[i] != "--bind" && w[i] != "-B" || i+1 >= len(w) {
				return nil, fmt.Errorf("%q: only --bind SRC[:DST[:ro]] (or -B) is accepted", w[i])
			}
			i++
			spec = w[i]
		}
		for one := range strings.SplitSeq(spec, ",") {
			f := strings.Split(one, ":")
			if len(f) > 3 || len(f) == 3 && f[2] != "ro" && f[2] != "rw" {
				return nil, fmt.Errorf("bind %q: want SRC[:DST[:ro|rw]]", one)
			}
			for _, p := range f[:min(len(f), 2)] {
				if err := poddata.CheckMountPath(p); err != nil {
					return nil, fmt.Errorf("bind %q: %w", one, err)
				}
			}
			if !poddata.AllowedHostPath(allowed, f[0]) {
				return nil, fmt.Errorf("bind source %q is not under AllowedHostPaths in the sidecar's config", f[0])
			}
			// A source that does not exist yet could not have its
			// symlinks resolved.
			if stat != nil {
				if _, err := stat(f[0]); err != nil {
					return nil, fmt.Errorf("bind source %q does not exist: a source must exist under AllowedHostPaths when the pod is submitted", f[0])
				}
			}
			out = append(out, "--bind", one)
		}
	}
	return out, nil
}

// Where containers find libtsocks and the tunnel's tsocks.conf.
const (
	tsocksLibDir  = "/opt/interlink-tsocks"
	tsocksConfDir = "/etc/interlink-tsocks"
)

// bindBeneath runs argv through the helper's bind mode when some of its
// words hold an fdMarker: the helper opens each such mount beneath its root
// without following symlinks and puts /proc/self/fd/N in its place.
func (b *builder) bindBeneath(argv []string, mounts []mount) []string {
	var groups []string
	for i, m := range mounts {
		if m.beneath == nil {
			continue
		}
		mark := fdMarker(i)
		for k, w := range argv {
			if pre, post, ok := strings.Cut(w, mark); ok {
				mk := "0"
				if m.beneath.mkdir {
					mk = "1"
				}
				groups = append(groups, strconv.Itoa(k), m.beneath.root, m.beneath.rel, mk, pre, post)
				argv[k] = pre + post // the helper puts the descriptor between them
			}
		}
	}
	if len(groups) == 0 {
		return argv
	}
	out := append([]string{ilEnvExec, envexec.BindMode}, groups...)
	return append(append(out, "--"), argv...)
}

// readImageConfig is a podman step: pull the image when missing, then read
// its entrypoint and command into the arrays il_ep and il_cmd, as data
// (NUL-separated; podman ends its output with a newline, which is no
// element). A failed inspect fails the container.
func readImageConfig(cmd func([]string) string, podman, image string) string {
	format := func(field string) string {
		return "{{range .Config." + field + "}}{{.}}{{\"\\x00\"}}{{end}}"
	}
	return fmt.Sprintf("\t%s >/dev/null 2>&1 || %s >/dev/null || return\n"+
		"\tlocal il_ep il_cmd\n"+
		"\tmapfile -d '' -t il_ep < <(%s) && wait $! || return\n"+
		"\tmapfile -d '' -t il_cmd < <(%s) && wait $! || return\n"+
		"\t((${#il_ep[@]})) && [[ ${il_ep[-1]} == $'\\n' ]] && unset 'il_ep[-1]'\n"+
		"\t((${#il_cmd[@]})) && [[ ${il_cmd[-1]} == $'\\n' ]] && unset 'il_cmd[-1]'\n",
		cmd([]string{podman, "image", "exists", "--", image}), cmd([]string{podman, "pull", "-q", "--", image}),
		cmd([]string{podman, "image", "inspect", "--format", format("Entrypoint"), "--", image}),
		cmd([]string{podman, "image", "inspect", "--format", format("Cmd"), "--", image}))
}

// writeContainer writes il_cI, the function that starts container c (the
// I-th of the pod, init containers first) with its runtime, and
// il_cI_cleanup when the runtime leaves something to remove after a run.
func (b *builder) writeContainer(w *scriptWriter, rt runtime, i int, c *container) {
	w.printf("\n# container %s, image %s\n", c.name, w.quote(c.image))
	w.printf("il_c%d() {\n", i)
	if c.msgPath != "" {
		// A run's termination message is its own.
		w.printf("\trm -f -- %s\n", w.line([]string{dataRef(path.Join(c.envDir, msgName))}))
	}
	if c.envDir != "" {
		// The container's own copy of the helper: runtimes that bind
		// read-write cannot let one pod change another's.
		w.printf("\tcp -- \"$IL_ENVEXEC\" %s || return\n", w.line([]string{dataRef(path.Join(c.envDir, "envexec"))}))
	}
	steps := rt.commands(c, c.image)
	for j, step := range steps {
		switch step[0] {
		case stepReadImageConfig:
			w.printf("%s", readImageConfig(w.line, step[1], step[2]))
			continue
		case stepMayFail:
			w.printf("\t%s >/dev/null 2>&1\n", w.line(step[1:]))
			continue
		}
		if j == len(steps)-1 {
			// The runtime takes the shell's place (il_run runs this
			// function in a subshell): the run's pid is the runtime's.
			step = append(slices.Clone(b.parts.mpi), b.bindBeneath(step, c.mounts)...)
			w.printf("\til_pid %s || return\n\texec %s\n", w.quote(c.name), w.line(step))
			break
		}
		w.printf("\t%s || return\n", w.line(step))
	}
	w.printf("}\n")
	if cl := rt.cleanup(c); len(cl) > 0 {
		w.printf("il_c%d_cleanup() {\n", i)
		for _, step := range cl {
			w.printf("\t%s >/dev/null 2>&1\n", w.line(step))
		}
		w.printf("\treturn 0\n}\n")
	}
}
