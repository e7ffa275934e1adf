package slurm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// site is what a job's build knows of the sidecar's host: the programs not
// found at start (by config key) and whether image directories are
// prepared there. A nil site (unit tests) has every program, and leaves
// image directories as they are.
type site struct {
	missing map[string]error
	// jobTemplate is the operator's JobScriptTemplate, parsed (nil: none).
	jobTemplate *template.Template
	// images, when set, checks image directories and makes bind points.
	images imagePreparer
	// statHost, when set, tells whether a host path an annotation binds
	// exists (nil: not asked).
	statHost func(string) (os.FileInfo, error)
	// primaryGID, when set, gives the primary group of a job's uid (sbatch
	// --uid): the job runs with it (--gid), never with the sidecar's group.
	primaryGID func(uid int64) (int64, error)
}

// imagePreparer finds image directories, reads their config, and makes
// the directories a container binds onto or starts in, inside them.
type imagePreparer interface {
	// find resolves a pod's image reference to an image directory (an
	// absolute ref is one already) and reads its config (nil: none).
	find(root, ref string) (string, *imageConfig, error)
	// prepare resolves each bind point inside image as the container will
	// see it (the image's own symlinks followed, never out of it), creates
	// the missing directories (and, for a file bind, an empty file), and
	// returns the resolved paths.
	prepare(image string, points []bindPoint) ([]string, error)
}

// bindPoint is an absolute path in a container that something is bound
// onto or started in: a directory, or a file when a file is bound there (a
// ConfigMap key's subPath).
type bindPoint struct {
	path string
	file bool
}

// localImages prepares image directories the sidecar's host sees.
type localImages struct{}

// maxImageLinks bounds the symlinks followed while resolving one path.
const maxImageLinks = 40

func (localImages) prepare(image string, points []bindPoint) ([]string, error) {
	st, err := os.Lstat(image)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, api.ImageNotFound("image %s does not exist", image)
	case err != nil:
		return nil, fmt.Errorf("image %s: %w", image, err)
	case !st.IsDir():
		return nil, fmt.Errorf("image %s is not an image directory", image)
	}
	root, err := os.OpenRoot(image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	defer func() { _ = root.Close() }()
	out := make([]string, len(points))
	for i, pt := range points {
		r, err := resolveIn(root, pt.path)
		if err != nil {
			return nil, fmt.Errorf("image %s: %s: %w", image, pt.path, err)
		}
		if rel := strings.TrimPrefix(r, "/"); rel != "" {
			if err := makeBindPoint(root, rel, pt.file); err != nil {
				return nil, fmt.Errorf("image %s: make the bind point %s: %w", image, r, err)
			}
		}
		out[i] = r
	}
	return out, nil
}

// makeBindPoint makes rel in root: a directory, or an empty file (its
// directory made) when file; one that is there already must be of that kind.
func makeBindPoint(root *os.Root, rel string, file bool) error {
	if !file {
		return root.MkdirAll(rel, 0o755)
	}
	if err := root.MkdirAll(path.Dir(rel), 0o755); err != nil {
		return err
	}
	f, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	st, err := root.Lstat(rel)
	if err == nil && st.IsDir() {
		return errors.New("a file is bound there and the image has a directory")
	}
	return err
}

// resolveIn resolves the absolute path p inside root as if root were '/':
// symlinks are followed (an absolute target from root, '..' never above
// it); components that do not exist are kept as written.
func resolveIn(root *os.Root, p string) (string, error) {
	todo := strings.Split(p, "/")
	var cur []string
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		full := path.Join(append(slices.Clone(cur), name)...)
		st, err := root.Lstat(full)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, name)
			continue
		}
		if links++; links > maxImageLinks {
			return "", errors.New("too many symlinks")
		}
		target, err := root.Readlink(full)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return "/" + path.Join(cur...), nil
}

// imageConfig is what an image says about how to run it: its OCI config
// (ENTRYPOINT, CMD, ENV, WORKDIR).
type imageConfig = ocispec.ImageConfig

// maxImageConfigBytes caps an image's config file.
const maxImageConfigBytes = 1 << 20

// Where ch-image keeps an image's config inside its directory: the pulled
// OCI config as it came, and ch-image's own metadata (WORKDIR and ENV of
// images it built or imported).
const (
	chConfigPulled = "ch/config.pulled.json"
	chMetadata     = "ch/metadata.json"
)

// chNames turns a ch-image storage name back into the reference it stands
// for ('%' for '/', '+' for ':'), as ch-run's img_name2path writes it.
var chNames = strings.NewReplacer("%", "/", "+", ":")

// normalizeRef is ref as Docker names it in full: docker.io/library/busybox:latest
// for busybox.
func normalizeRef(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image %q is not a valid image reference: %w", ref, err)
	}
	return reference.TagNameOnly(n).String(), nil
}

// find resolves a pod's image: an absolute path is the image directory
// itself; a reference is looked up under root, either ch-image storage
// (root/img/NAME) or a directory of images (root/NAME), NAME being the
// reference as ch-image writes it (busybox+latest, docker.io%library%busybox+latest)
// or as a relative path. References are compared as Docker normalizes
// them, so busybox, busybox:latest and docker.io/library/busybox:latest
// are one image. It returns the directory and the image's config (nil
// when it has none).
func (localImages) find(root, ref string) (string, *imageConfig, error) {
	dir := ref
	if !filepath.IsAbs(ref) {
		var err error
		if dir, err = findImage(root, ref); err != nil {
			return "", nil, err
		}
	}
	cfg, err := loadImageConfig(dir)
	if err != nil {
		return "", nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return dir, cfg, nil
}

func findImage(root, ref string) (string, error) {
	want, err := normalizeRef(ref)
	if err != nil {
		return "", err
	}
	var found []string
	for _, d := range []string{filepath.Join(root, "img"), root} {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue // no ch-image storage, or no root yet: not found below
		}
		for _, e := range entries {
			if !e.IsDir() || (d == root && e.Name() == "img") {
				continue
			}
			if n, err := normalizeRef(chNames.Replace(e.Name())); err == nil && n == want {
				found = append(found, filepath.Join(d, e.Name()))
			}
		}
		if len(found) > 0 {
			break // ch-image storage first
		}
	}
	if len(found) == 0 && filepath.IsLocal(ref) {
		// A relative path to an image directory (library/busybox).
		if st, err := os.Lstat(filepath.Join(root, ref)); err == nil && st.IsDir() {
			found = append(found, filepath.Join(root, ref))
		}
	}
	switch len(found) {
	case 0:
		return "", api.ImageNotFound("image %q (%s) is not under the image root %s: no image directory of that name there or in its ch-image storage (img/%s)",
			ref, want, root, strings.NewReplacer("/", "%", ":", "+").Replace(want))
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("image %q (%s) names several images under %s: %s", ref, want, root, strings.Join(found, ", "))
	}
}

// loadImageConfig reads an image directory's config: the OCI config
// ch-image pulled, or else ch-image's metadata (WORKDIR and ENV only).
// Neither is there: nil.
func loadImageConfig(dir string) (*imageConfig, error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, api.ImageNotFound("image directory %s does not exist", dir)
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }()
	var pulled ocispec.Image
	switch err := readJSON(root, chConfigPulled, &pulled); {
	case err == nil:
		return &pulled.Config, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	var meta struct {
		Cwd string            `json:"cwd"`
		Env map[string]string `json:"env"`
	}
	switch err := readJSON(root, chMetadata, &meta); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	cfg := &imageConfig{WorkingDir: meta.Cwd}
	for _, k := range slices.Sorted(maps.Keys(meta.Env)) {
		cfg.Env = append(cfg.Env, k+"="+meta.Env[k])
	}
	return cfg, nil
}

// readJSON decodes the file name of root into v, read up to maxImageConfigBytes.
func readJSON(root *os.Root, name string, v any) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxImageConfigBytes+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > maxImageConfigBytes {
		return fmt.Errorf("%s is larger than %d bytes", name, maxImageConfigBytes)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
