package slurm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/probe"
	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

// Probes, lifecycle hooks and termination messages in the job. A pod whose
// containers have probes or hooks gets a prober.Spec, DIR/probes.json, as
// does every pod at a site that has the prober (it samples the containers'
// usage, usage.go); the job starts interlink-prober on it before its init
// containers. Each run
// of a container records its pid (containers/NAME.pid) just before the
// runtime starts in its place (exec), and the prober writes what it finds
// to containers/NAME.probe. When a run starts, the previous run's pid and
// probe files become NAME.pid.last and NAME.probe.last, so that the status
// tells why a container was stopped in its last state too.

// DefaultGracePeriodSeconds is a pod's terminationGracePeriodSeconds when
// it sets none, as the API server defaults it.
const DefaultGracePeriodSeconds = 30

// stoppingFile, in containers/, tells il_run that the pod is being deleted:
// no container starts again.
const stoppingFile = ".stopping"

// Where a container's termination message goes: the helper directory's
// msg directory, bound read-write at helperMsgDir (the rest of the helper
// directory is read-only), where the helper copies the container's
// terminationMessagePath when its command exits.
const (
	helperMsgDir = helperDir + "/msg"
	helperMsg    = helperMsgDir + "/termination-log"
	msgName      = "msg/termination-log" // in the container's helper data dir
)

// probed tells whether c has probes or lifecycle hooks: the prober runs them.
func probed(c *corev1.Container) bool {
	return probe.Has(c) || c.Lifecycle != nil && (c.Lifecycle.PostStart != nil || c.Lifecycle.PreStop != nil)
}

// hasPreStop tells whether c has a preStop hook.
func hasPreStop(c *corev1.Container) bool { return c.Lifecycle != nil && c.Lifecycle.PreStop != nil }

// hasExec tells whether one of c's probes or hooks runs a command in it.
func hasExec(c *corev1.Container) bool {
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p != nil && p.Exec != nil {
			return true
		}
	}
	if l := c.Lifecycle; l != nil {
		for _, h := range []*corev1.LifecycleHandler{l.PostStart, l.PreStop} {
			if h != nil && h.Exec != nil {
				return true
			}
		}
	}
	return false
}

// gracePeriod is the pod's terminationGracePeriodSeconds, or the default,
// at most probe.MaxGracePeriodSeconds (the job script, the prober and
// Delete all take it in seconds; a longer stop would hold a deleted pod's
// job).
func gracePeriod(p *corev1.Pod) int64 {
	if g := p.Spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		return min(*g, probe.MaxGracePeriodSeconds)
	}
	return DefaultGracePeriodSeconds
}

// checkProbes validates the pod's probes and hooks (probe.Validate), and
// what running them needs at this site: the prober, and nsenter for exec
// handlers outside Podman. Init containers have none (as the API server
// says).
func (b *builder) checkProbes(rtName string) error {
	p := b.pod
	for i := range p.Spec.InitContainers {
		if c := &p.Spec.InitContainers[i]; probed(c) {
			return fmt.Errorf("init container %s: probes and lifecycle hooks are not allowed on init containers", c.Name)
		}
	}
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		if err := probe.Validate(c); err != nil {
			return err
		}
		if mp := c.TerminationMessagePath; mp != "" && (!path.IsAbs(mp) || strings.ContainsAny(mp, "\n\x00")) {
			return fmt.Errorf("container %s: terminationMessagePath %q must be an absolute path without a newline", c.Name, mp)
		}
		if !probed(c) {
			continue
		}
		if err := b.need("ProberPath", "container "+c.Name+"'s probes and lifecycle hooks"); err != nil {
			return err
		}
		if hasExec(c) && rtName != RuntimePodman {
			if err := b.need("NsenterPath", "container "+c.Name+"'s exec probes and hooks"); err != nil {
				return err
			}
		}
	}
	return nil
}

// messagePath is where c's termination message is read in the container
// under runtime rt, or "" when it cannot be: ch-run binds the host's /dev,
// /proc and /sys, so a path there would be the host's file, shared by
// every pod of the node.
func messagePath(c *corev1.Container, rt runtime) string {
	p := c.TerminationMessagePath
	if p == "" {
		p = probe.DefaultMessagePath
	}
	if _, ok := rt.(charliecloud); ok {
		for _, host := range []string{"/dev", "/proc", "/sys"} {
			if p == host || strings.HasPrefix(path.Clean(p), host+"/") {
				return ""
			}
		}
	}
	return p
}

// messageArgs are the helper's words that copy the termination message at
// msg (in the container) to helperMsg when the command exits.
func messageArgs(msg string) []string {
	if msg == "" {
		return nil
	}
	return []string{"-t", msg + "=" + helperMsg}
}

// proberSpec is the prober's spec for the pod's containers (inits and
// mains, in the pod's order): the probes and hooks of the containers that
// have them, and, when the site has the prober, every container to sample
// for its usage. It is nil when the prober has nothing to do.
func (b *builder) proberSpec(rtName string, inits, mains []*container) ([]byte, error) {
	spec := prober.Spec{GracePeriodSeconds: gracePeriod(b.pod)}
	if b.hasProber() {
		for _, ct := range append(append([]*container{}, inits...), mains...) {
			spec.Sampled = append(spec.Sampled, b.sampled(rtName, ct))
		}
	}
	for i := range b.pod.Spec.Containers {
		c := &b.pod.Spec.Containers[i]
		if !probed(c) {
			continue
		}
		pc := b.entry(rtName, mains[i])
		pc.StartupProbe, pc.LivenessProbe, pc.ReadinessProbe = c.StartupProbe, c.LivenessProbe, c.ReadinessProbe
		pc.Lifecycle, pc.Ports, pc.Host = c.Lifecycle, c.Ports, "127.0.0.1"
		if !hasExec(c) {
			pc.Nsenter = "" // nothing to enter with: the site need not have nsenter
		}
		spec.Containers = append(spec.Containers, pc)
	}
	if len(spec.Containers) == 0 && len(spec.Sampled) == 0 {
		return nil, nil
	}
	return json.Marshal(spec)
}

// hasProber tells whether the site has the prober: every job then starts
// it, to sample its containers' usage.
func (b *builder) hasProber() bool {
	return b.cfg.ProberPath != "" && b.site.missing["ProberPath"] == nil
}

// sampled is how the prober finds the processes of ct: below the run's
// pid, or, with Podman, below the container's first process, which conmon
// holds (podman container inspect prints its pid).
func (b *builder) sampled(rtName string, ct *container) prober.Sampled {
	s := prober.Sampled{Name: ct.name}
	switch {
	case rtName == RuntimePodman:
		s.PIDOf = []string{b.cfg.PodmanPath, "container", "inspect", "--format", "{{.State.Pid}}", ct.id}
	case ct.envDir != "":
		// Not the runtime's own processes (Apptainer's starter): those
		// in the container, whose root holds the helper.
		s.Inside = helperPath
	}
	return s
}

// entry is how a command runs inside the container ct (exec probes and
// hooks, kubectl exec): podman exec, or nsenter (when the site has it),
// behind the helper that sets the container's env (as for its command).
func (b *builder) entry(rtName string, ct *container) prober.Container {
	pc := prober.Container{Name: ct.name}
	if ct.envDir != "" {
		pc.Inner = helperArgv("", nil, "")
	}
	switch {
	case rtName == RuntimePodman:
		pc.Exec = []string{b.cfg.PodmanPath, "exec", ct.id}
		pc.ExecStdin = []string{b.cfg.PodmanPath, "exec", "--interactive", ct.id}
		pc.ExecTTY = []string{b.cfg.PodmanPath, "exec", "--interactive", "--tty", ct.id}
		pc.Running = []string{b.cfg.PodmanPath, "container", "inspect", "--format", "{{.State.Running}}", ct.id}
		pc.Inner = helperArgv(ct.workDir, nil, "")
	case filepath.IsAbs(b.cfg.NsenterPath):
		pc.Nsenter = b.cfg.NsenterPath
	}
	return pc
}

// entries are the entries of the pod's containers, kept in its record for
// kubectl exec, with their declared ports for kubectl port-forward.
func (b *builder) entries(rtName string, mains []*container) []prober.Container {
	out := make([]prober.Container, len(mains))
	for i, ct := range mains {
		out[i] = b.entry(rtName, ct)
		out[i].Ports = b.pod.Spec.Containers[i].Ports
	}
	return out
}

// stopGrace is how long the job takes to stop on SIGUSR1 (the pod's grace
// period), or 0 when it does not trap it: only a pod with a preStop hook
// stops that way; the others are cancelled at once, as before.
func stopGrace(p *corev1.Pod) int64 {
	for i := range p.Spec.Containers {
		if hasPreStop(&p.Spec.Containers[i]) {
			return max(gracePeriod(p), 1)
		}
	}
	return 0
}

// proberScript writes the job's part that starts the prober, and the trap
// that stops the pod gracefully (grace > 0). spec is embedded when the
// sidecar does not write it (SharedFS off).
func (b *builder) proberScript(w func(string, ...any), q func(string) string, spec []byte, inits, mains []*container, grace int64) {
	if spec != nil && !b.cfg.SharedFS {
		w("base64 -d >\"$IL_DIR\"/%s <<'IL_EOF' || exit 1\n%s\nIL_EOF\n", prober.SpecFile, wrap(base64.StdEncoding.EncodeToString(spec), 76))
	}
	if grace > 0 {
		var all, plain []string
		for _, c := range inits {
			all, plain = append(all, q(c.name)), append(plain, q(c.name))
		}
		for i, c := range mains {
			all = append(all, q(c.name))
			if !hasPreStop(&b.pod.Spec.Containers[i]) {
				plain = append(plain, q(c.name))
			}
		}
		w(`# il_signal SIG NAME... sends SIG to the running containers among NAMEs; false
# when none runs.
il_signal() {
	local sig=$1 n pid none=1
	shift
	for n; do
		[[ -e $IL_DIR/containers/$n.exit || ! -s $IL_DIR/containers/$n.pid ]] && continue
		read -r pid <"$IL_DIR/containers/$n.pid" && [[ $pid =~ ^[1-9][0-9]*$ ]] && kill -"$sig" "$pid" 2>/dev/null && none=0
	done
	return "$none"
}
# il_stop runs on SIGUSR1, which the sidecar sends to this shell alone when the
# pod is deleted: no container starts again; the prober runs the preStop hooks
# and stops their containers, the others get SIGTERM at once; what still runs
# after the grace period (%d s) gets SIGKILL, and the job ends.
il_stop() {
	trap '' USR1
	: >"$IL_DIR"/containers/%s
	local deadline=$((SECONDS + %d))
`, grace, stoppingFile, grace)
		if len(plain) > 0 {
			w("\til_signal TERM %s\n", strings.Join(plain, " "))
		}
		if spec != nil {
			w("\t\"$IL_PROBER\" stop \"$IL_DIR\"/%s\n", prober.SpecFile)
		}
		names := strings.Join(all, " ")
		w(`	il_signal TERM %s
	while ((SECONDS < deadline)) && il_signal 0 %s; do sleep 0.2; done
	il_signal KILL %s
	exit 143
}
trap il_stop USR1
`, names, names, names)
	}
	if spec != nil {
		what := "samples the containers' usage"
		if slices.ContainsFunc(b.pod.Spec.Containers, func(c corev1.Container) bool { return probed(&c) }) {
			what = "runs the containers' probes and hooks, and samples their usage,"
		}
		w("# The prober %s for the job's life.\n", what)
		w("\"$IL_PROBER\" run \"$IL_DIR\"/%s &\nIL_PROBER_PID=$!\n", prober.SpecFile)
	}
}

// podProbes is what the status of a pod's containers needs of their spec,
// kept in its record.
type podProbes struct {
	// Probed are the containers with probes or hooks: their readiness is
	// the prober's.
	Probed []string `json:"probed,omitempty"`
	// Messages are the containers whose termination message the sidecar
	// reads (helperMsg, in the pod's data: SharedFS); FallbackToLogs those
	// whose terminationMessagePolicy is FallbackToLogsOnError.
	Messages       []string `json:"messages,omitempty"`
	FallbackToLogs []string `json:"fallbackToLogs,omitempty"`
	// StopGrace > 0: the job stops gracefully on SIGUSR1 within that many
	// seconds (stopGrace).
	StopGrace int64 `json:"stopGrace,omitempty"`
	// Entries are how a command runs in each container (kubectl exec).
	Entries []prober.Container `json:"entries,omitempty"`
	// Usage: the job's prober samples the containers' usage
	// (prober.UsageFile).
	Usage bool `json:"usage,omitempty"`
}

func (b *builder) podProbes(inits, mains []*container) podProbes {
	var pp podProbes
	spec := append(append([]corev1.Container{}, b.pod.Spec.InitContainers...), b.pod.Spec.Containers...)
	for i, ct := range append(append([]*container{}, inits...), mains...) {
		c := &spec[i]
		if probed(c) {
			pp.Probed = append(pp.Probed, c.Name)
		}
		if ct.msgPath != "" && b.cfg.SharedFS {
			pp.Messages = append(pp.Messages, c.Name)
		}
		if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
			pp.FallbackToLogs = append(pp.FallbackToLogs, c.Name)
		}
	}
	pp.StopGrace = b.grace
	pp.Entries = b.entered
	pp.Usage = b.hasProber()
	return pp
}

// writeSpec writes the prober's spec in the pod's directory (mode 0600).
func (s *Sidecar) writeSpec(dir string, spec []byte) error {
	if spec == nil {
		return nil
	}
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return s.root.WriteFile(path.Join(dir, prober.SpecFile), spec, 0o600)
}

// stopMargin is how long past the pod's grace period Delete waits for a
// job stopping gracefully, before it cancels it.
var stopMargin = 10 * time.Second

// stopPoll is how often Delete asks Slurm whether a stopping job ended.
var stopPoll = time.Second

// signalStop starts a running job's graceful stop: SIGUSR1 to its batch
// shell alone (scancel --batch), whose trap runs the preStop hooks and
// stops the containers (il_stop). It returns the grace period (the
// deletion's, when shorter than the pod's), and false when there is
// nothing to stop gracefully: the job is pending (no container runs),
// ended, unknown, or does not answer (it is then left to scancel).
func (s *Sidecar) signalStop(ctx context.Context, rec *record, p *corev1.Pod) (time.Duration, bool) {
	secs := rec.StopGrace
	if g := p.DeletionGracePeriodSeconds; g != nil && *g >= 0 && *g < secs {
		secs = *g
	}
	if secs <= 0 {
		return 0, false
	}
	states, _, err := s.queryJobs(ctx, []string{rec.JobID})
	if js, ok := states[rec.JobID]; err != nil || !ok || js.State != "RUNNING" {
		return 0, false
	}
	if _, err := s.cmd.run(ctx, s.cfg.ScancelPath, "--batch", "--signal=USR1", rec.JobID); err != nil {
		if !jobGone(err) {
			s.log.Warn("could not signal the job to stop gracefully: canceling it", "pod", rec.Name, "namespace", rec.Namespace, "uid", rec.UID, "job_id", rec.JobID, "err", err)
		}
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

// waitStopped waits for a signaled job to end, until ctx does.
func (s *Sidecar) waitStopped(ctx context.Context, rec *record) {
	log := s.log.With("pod", rec.Name, "namespace", rec.Namespace, "uid", rec.UID, "job_id", rec.JobID)
	start := time.Now()
	t := time.NewTicker(stopPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Warn("the job did not stop within its grace period: canceling it", "duration_seconds", time.Since(start).Seconds())
			return
		case <-t.C:
		}
		states, definite, err := s.queryJobs(ctx, []string{rec.JobID})
		if err != nil {
			continue
		}
		if js, ok := states[rec.JobID]; ok && (js.terminal() || js.State == "COMPLETING") || !ok && definite {
			log.Info("job stopped gracefully", "duration_seconds", time.Since(start).Seconds())
			return
		}
	}
}

// readProbeFiles adds to f what the prober and the helper wrote of the
// container's runs (name among pp's containers): a state counts only for
// the run whose pid it names (NAME.pid, or NAME.pid.last for the previous
// run), so a state left by another run is ignored.
func readProbeFiles(root *poddata.Dir, dir, name string, pp *podProbes, f *ctrFiles) {
	base := path.Join(dir, containersDir, name)
	f.probed = slices.Contains(pp.Probed, name)
	if f.probed {
		if st, ok := readProbeState(root, base+".pid", base+".probe"); ok {
			f.ready, f.startedProbe = st.Ready, st.Started
			if f.exited {
				f.message = st.Killed
			}
		}
		if st, ok := readProbeState(root, base+".pid.last", base+".probe.last"); ok {
			f.lastMessage = st.Killed
		}
	}
	if !f.exited {
		return
	}
	var file []byte
	if slices.Contains(pp.Messages, name) {
		file, _ = readSmall(root, path.Join(dir, dataDirName, helperDataDir, name, msgName))
	}
	c := &corev1.Container{TerminationMessagePolicy: corev1.TerminationMessageReadFile}
	if slices.Contains(pp.FallbackToLogs, name) {
		c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	}
	// The container's own message wins over why the prober stopped it,
	// which wins over its log's tail.
	if len(file) > 0 || f.message == "" {
		if m := probe.TerminationMessage(c, file, f.code, func() []byte { return logTail(root, base+".log") }); m != "" {
			f.message = m
		}
	}
}

// readProbeState reads the prober's state of a run, and tells whether it
// is the run of the pid file.
func readProbeState(root *poddata.Dir, pidFile, stateFile string) (prober.State, bool) {
	var st prober.State
	b, err := readSmall(root, pidFile)
	if err != nil {
		return st, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return st, false
	}
	// A state's message is capped (probe.MaxResultBytes), but JSON may
	// escape each of its bytes in six.
	b, err = readUpTo(root, stateFile, 8*probe.MaxResultBytes)
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, st.PID == pid
}

// logTail is the end of a container's log (probe.MaxLogMessageBytes at
// most, as the kubelet's fallback message), without the time the helper
// put before each line.
func logTail(root *poddata.Dir, name string) []byte {
	f, err := openJobFile(root, name)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	// Each line carries a timestamp of about 31 bytes: read enough for
	// the last MaxLogMessageLines lines' worth of text.
	n := int64(probe.MaxLogMessageBytes + probe.MaxLogMessageLines*40)
	seeked := false
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
		seeked = true
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	if seeked {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:] // a partial line
		}
	}
	var out []byte
	for line := range bytes.SplitAfterSeq(b, []byte("\n")) {
		if ts, rest, ok := bytes.Cut(line, []byte(" ")); ok {
			if _, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
				line = rest
			}
		}
		out = append(out, line...)
	}
	return probe.LogTail(out)
}
