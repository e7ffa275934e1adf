package slurm

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// envExecName is the helper's file name, beside the sidecar or on PATH.
const envExecName = "interlink-envexec"

// proberName is the prober's file name, beside the sidecar or on PATH.
const proberName = "interlink-prober"

// helperCopyDir is where the helpers are copied in DataRootFolder, so that
// compute nodes sharing it find them.
const helperCopyDir = ".interlink"

// programKeys are the config keys of the host programs the sidecar and its
// jobs run.
func programKeys(cfg *Config) map[string]*string {
	return map[string]*string{
		"SbatchPath": &cfg.SbatchPath, "ScancelPath": &cfg.ScancelPath, "SqueuePath": &cfg.SqueuePath,
		"SinfoPath": &cfg.SinfoPath, "SacctPath": &cfg.SacctPath, "SingularityPath": &cfg.SingularityPath,
		"ApptainerPath": &cfg.ApptainerPath, "EnrootPath": &cfg.EnrootPath, "ChRunPath": &cfg.ChRunPath,
		"PodmanPath": &cfg.PodmanPath, "MpiexecPath": &cfg.MpiexecPath, "SSHPath": &cfg.SSHPath,
		"NsenterPath": &cfg.NsenterPath, "SrunPath": &cfg.SrunPath,
	}
}

// runtimeKey is the config key of each runtime's program.
var runtimeKey = map[string]string{
	RuntimeSingularity: "SingularityPath", RuntimeApptainer: "ApptainerPath", RuntimeEnroot: "EnrootPath",
	RuntimeCharliecloud: "ChRunPath", RuntimePodman: "PodmanPath",
}

// resolvePrograms rewrites the config's programs as absolute paths, looked
// up once in the sidecar's PATH when it starts: a job never looks a program
// up in a PATH that pod data could change. An absolute path is kept as it
// is (compute nodes may have programs the sidecar's host lacks). What is
// not found is returned by config key; a pod that needs it is refused.
// root is DataRootFolder, where the helper is copied when shared is set.
func resolvePrograms(cfg *Config, root *poddata.Dir, rootDir string) map[string]error {
	missing := map[string]error{}
	for key, p := range programKeys(cfg) {
		if *p == "" || filepath.IsAbs(*p) {
			continue
		}
		abs, err := exec.LookPath(*p)
		if err == nil {
			abs, err = filepath.Abs(abs)
		}
		if err != nil {
			missing[key] = fmt.Errorf("%s was not found on the sidecar's PATH when it started", *p)
			continue
		}
		*p = abs
	}
	for _, h := range []struct {
		key, name string
		path      *string
		static    bool
	}{{"EnvExecPath", envExecName, &cfg.EnvExecPath, true}, {"ProberPath", proberName, &cfg.ProberPath, false}} {
		helper, err := findHelper(h.name, *h.path, h.static)
		if err == nil && cfg.SharedFS {
			helper, err = copyHelper(helper, h.name, root, rootDir)
		}
		if err != nil {
			missing[h.key] = err
		} else {
			*h.path = helper
		}
	}
	return missing
}

// findHelper returns the absolute path of the helper name: p if set, else
// beside the sidecar's executable, else on PATH. With static it must be a
// static executable (envexec runs inside any image).
func findHelper(name, p string, static bool) (string, error) {
	if p == "" {
		if exe, err := os.Executable(); err == nil {
			if c := filepath.Join(filepath.Dir(exe), name); isFile(c) {
				p = c
			}
		}
	}
	if p == "" {
		var err error
		if p, err = exec.LookPath(name); err != nil {
			return "", fmt.Errorf("%s was found neither beside the sidecar's executable nor on its PATH", name)
		}
	}
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if !static {
		if !isFile(p) {
			return "", fmt.Errorf("%s is not a file", p)
		}
		return p, nil
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	defer func() { _ = f.Close() }()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked: it must run in any image (build it with CGO_ENABLED=0)", p)
		}
	}
	return p, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// maxEnvExecBytes bounds the helper copied into DataRootFolder.
const maxEnvExecBytes = 64 << 20

// copyHelper copies the helper src into DataRootFolder as name (mode
// 0755), unless an identical copy is there, and returns the copy's path.
func copyHelper(src, name string, root *poddata.Dir, rootDir string) (string, error) {
	dstRel := helperCopyDir + "/" + name
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxEnvExecBytes+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxEnvExecBytes {
		return "", fmt.Errorf("%s is larger than %d bytes", src, maxEnvExecBytes)
	}
	dst := filepath.Join(rootDir, dstRel)
	if cur, err := root.ReadFile(dstRel); err == nil && bytes.Equal(cur, data) {
		return dst, nil
	}
	if err := root.MkdirAll(helperCopyDir, 0o755); err != nil {
		return "", err
	}
	tmp := dstRel + ".tmp"
	if err := root.WriteFile(tmp, data, 0o755); err != nil {
		return "", fmt.Errorf("copy %s into DataRootFolder: %w", name, err)
	}
	if err := root.Rename(tmp, dstRel); err != nil {
		return "", errors.Join(err, root.Remove(tmp))
	}
	return dst, nil
}
