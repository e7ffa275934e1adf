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

// envExecCopy is where the helper is copied in DataRootFolder, so that
// compute nodes sharing it find the helper.
const envExecCopy = ".interlink/" + envExecName

// programKeys are the config keys of the host programs the sidecar and its
// jobs run.
func programKeys(cfg *Config) map[string]*string {
	return map[string]*string{
		"SbatchPath": &cfg.SbatchPath, "ScancelPath": &cfg.ScancelPath, "SqueuePath": &cfg.SqueuePath,
		"SinfoPath": &cfg.SinfoPath, "SacctPath": &cfg.SacctPath, "SingularityPath": &cfg.SingularityPath,
		"ApptainerPath": &cfg.ApptainerPath, "EnrootPath": &cfg.EnrootPath, "ChRunPath": &cfg.ChRunPath,
		"PodmanPath": &cfg.PodmanPath, "MpiexecPath": &cfg.MpiexecPath, "SSHPath": &cfg.SSHPath,
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
	helper, err := findEnvExec(cfg.EnvExecPath)
	if err == nil && cfg.SharedFS {
		helper, err = copyEnvExec(helper, root, rootDir)
	}
	if err != nil {
		missing["EnvExecPath"] = err
	} else {
		cfg.EnvExecPath = helper
	}
	return missing
}

// findEnvExec returns the helper's absolute path: p if set, else beside the
// sidecar's executable, else on PATH. It must be a static executable, as
// it runs inside any image.
func findEnvExec(p string) (string, error) {
	if p == "" {
		if exe, err := os.Executable(); err == nil {
			if c := filepath.Join(filepath.Dir(exe), envExecName); isFile(c) {
				p = c
			}
		}
	}
	if p == "" {
		var err error
		if p, err = exec.LookPath(envExecName); err != nil {
			return "", fmt.Errorf("%s was found neither beside the sidecar's executable nor on its PATH", envExecName)
		}
	}
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
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

// copyEnvExec copies the helper into DataRootFolder (mode 0755), unless an
// identical copy is there, and returns the copy's path.
func copyEnvExec(src string, root *poddata.Dir, rootDir string) (string, error) {
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
	dst := filepath.Join(rootDir, envExecCopy)
	if cur, err := root.ReadFile(envExecCopy); err == nil && bytes.Equal(cur, data) {
		return dst, nil
	}
	if err := root.MkdirAll(filepath.Dir(envExecCopy), 0o755); err != nil {
		return "", err
	}
	tmp := envExecCopy + ".tmp"
	if err := root.WriteFile(tmp, data, 0o755); err != nil {
		return "", fmt.Errorf("copy %s into DataRootFolder: %w", envExecName, err)
	}
	if err := root.Rename(tmp, envExecCopy); err != nil {
		return "", errors.Join(err, root.Remove(tmp))
	}
	return dst, nil
}
