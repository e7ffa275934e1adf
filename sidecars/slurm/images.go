package slurm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// site is what a job's build knows of the sidecar's host: the programs not
// found at start (by config key) and whether image directories are
// prepared there. A nil site (unit tests) has every program, and leaves
// image directories as they are.
type site struct {
	missing map[string]error
	// images, when set, checks image directories and makes bind points.
	images imagePreparer
}

// imagePreparer checks that an image directory exists and makes the
// directories a container binds onto or starts in, inside it.
type imagePreparer interface {
	// prepare resolves each absolute container path inside image as the
	// container will see it (the image's own symlinks followed, never out
	// of it), creates the missing directories, and returns the resolved
	// paths.
	prepare(image string, dirs []string) ([]string, error)
}

// localImages prepares image directories the sidecar's host sees.
type localImages struct{}

// maxImageLinks bounds the symlinks followed while resolving one path.
const maxImageLinks = 40

func (localImages) prepare(image string, dirs []string) ([]string, error) {
	st, err := os.Lstat(image)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("image %s does not exist", image)
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
	out := make([]string, len(dirs))
	for i, d := range dirs {
		r, err := resolveIn(root, d)
		if err != nil {
			return nil, fmt.Errorf("image %s: %s: %w", image, d, err)
		}
		if rel := strings.TrimPrefix(r, "/"); rel != "" {
			if err := root.MkdirAll(rel, 0o755); err != nil {
				return nil, fmt.Errorf("image %s: make the bind point %s: %w", image, r, err)
			}
		}
		out[i] = r
	}
	return out, nil
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
