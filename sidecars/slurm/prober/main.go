package prober

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/probe"
)

// usage is how the job calls the prober. SPEC is DIR/probes.json; the
// containers' files are in DIR/containers/.
//
//	interlink-prober run SPEC    in the background, beside the containers,
//	                             until killed or its parent ends
//	interlink-prober stop SPEC   on the pod's deletion: preStop hooks, then
//	                             SIGTERM, SIGKILL after the grace period
//	interlink-prober exec PIDFILE CONTAINER -- COMMAND...
//	                             kubectl exec, through srun (execUsage)
const usage = "usage: interlink-prober run|stop SPEC, exec [-i] [-t] PIDFILE CONTAINER -- COMMAND [ARG...], or dial HOST:PORT"

// MaxSpecBytes caps the Spec file read.
const MaxSpecBytes = 4 << 20

// Main runs the prober with args (os.Args) and returns its exit code.
func Main(args []string, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "exec" {
		return execMain(args[2:], os.Stdout, stderr)
	}
	if len(args) > 1 && args[1] == "dial" {
		return dialMain(args[2:], os.Stdin, os.Stdout, stderr)
	}
	if len(args) != 3 || args[1] != "run" && args[1] != "stop" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("mode", args[1])
	spec, err := ReadSpec(args[2])
	if err != nil {
		log.Error("read the spec", "err", err)
		return 1
	}
	p := &prober{spec: spec, dir: filepath.Join(filepath.Dir(args[2]), "containers"), proc: hostProc,
		ancestor: hostProc.jobRoot(os.Getpid()), poll: PollInterval, log: log}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer stop()
	if args[1] == "stop" {
		if err := p.stop(ctx); err != nil {
			log.Error("stop the containers", "err", err)
			return 1
		}
		return 0
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := watchParent(ctx, cancel); err != nil {
		log.Error("watch the parent", "err", err)
		return 1
	}
	p.run(ctx)
	return 0
}

// watchParent ends the prober with its parent (the job's shell): the
// kernel sends SIGTERM at its death (PR_SET_PDEATHSIG, caught as the
// end of ctx); a poll of the parent's pid covers the moments before.
func watchParent(ctx context.Context, cancel context.CancelFunc) error {
	parent := os.Getppid()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0); err != nil {
		return fmt.Errorf("set the parent death signal: %w", err)
	}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for os.Getppid() == parent {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		cancel()
	}()
	return nil
}

// ReadSpec reads and checks a Spec file.
func ReadSpec(path string) (Spec, error) {
	b, err := readCapped(path, MaxSpecBytes+1)
	if err != nil {
		return Spec{}, err
	}
	if len(b) > MaxSpecBytes {
		return Spec{}, fmt.Errorf("%s: larger than %d bytes", path, MaxSpecBytes)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, s.Validate()
}

// Validate reports every problem of a Spec: a container name that is no
// file name, a repeated name, a probe or hook the prober cannot run, an
// interval out of bounds.
func (s Spec) Validate() error {
	var errs []error
	seen, sampled := map[string]bool{}, map[string]bool{}
	for _, c := range s.Containers {
		if !fileName(c.Name) {
			errs = append(errs, fmt.Errorf("container name %q is not a file name", c.Name))
		}
		if seen[c.Name] {
			errs = append(errs, fmt.Errorf("container %q appears twice", c.Name))
		}
		seen[c.Name] = true
		if len(c.Exec) > 0 && c.Exec[0] == "" || c.Nsenter != "" && !filepath.IsAbs(c.Nsenter) {
			errs = append(errs, fmt.Errorf("container %q: exec or nsenter names no program", c.Name))
		}
		if err := probe.Validate(&corev1.Container{Name: c.Name, StartupProbe: c.StartupProbe,
			LivenessProbe: c.LivenessProbe, ReadinessProbe: c.ReadinessProbe, Lifecycle: c.Lifecycle}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range s.Sampled {
		if !fileName(c.Name) {
			errs = append(errs, fmt.Errorf("sampled container name %q is not a file name", c.Name))
		}
		if sampled[c.Name] {
			errs = append(errs, fmt.Errorf("sampled container %q appears twice", c.Name))
		}
		sampled[c.Name] = true
		if len(c.PIDOf) > 0 && c.PIDOf[0] == "" {
			errs = append(errs, fmt.Errorf("sampled container %q: pidOf names no program", c.Name))
		}
	}
	if s.UsageInterval != 0 && (s.UsageInterval < minUsageInterval || s.UsageInterval > maxUsageInterval) {
		errs = append(errs, fmt.Errorf("usageInterval %v is not within [%v, %v]", s.UsageInterval, minUsageInterval, maxUsageInterval))
	}
	return errors.Join(errs...)
}

// fileName tells whether a container name is a plain file name.
func fileName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/\x00") && !strings.HasPrefix(name, ".")
}
