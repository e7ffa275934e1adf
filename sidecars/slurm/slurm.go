package slurm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// Sidecar is the SLURM sidecar.
type Sidecar struct {
	cfg   Config
	log   *slog.Logger
	cmd   *commands
	store *store
	root  *poddata.Dir // DataRootFolder: every pod path is opened through it
	// jobTemplate is the operator's JobScriptTemplate, parsed once.
	jobTemplate *template.Template
	// rootDir is DataRootFolder, absolute.
	rootDir string
	locks   sidecars.KeyedMutex
	metrics *metrics // nil until Register
	lock    *os.File // flock on DataRootFolder
	// missing are the programs not found at start, by config key.
	missing map[string]error
	// absent counts, per job ID, the polls in a row in which Slurm said it
	// does not know the job.
	absent sync.Map // string -> int
	// nodes caches the IPs of the nodes running jobs (a pod's IP).
	nodes nodeIPs
	// stopping are the pods (by UID) whose jobs stop gracefully in the
	// background (Delete); bg owns those goroutines, ended by Close
	// through stopAll.
	stopping sync.Map // string -> struct{}
	bgMu     sync.Mutex
	closed   bool // under bgMu: no background stop starts
	bg       sync.WaitGroup
	// late holds the pending late cleanups (under bgMu), by their
	// timers: Close runs them at once.
	late    map[*time.Timer]string
	stopAll context.CancelFunc
	bgCtx   context.Context //nolint:containedctx // the background stops' lifetime, ended by Close
}

var (
	_ sidecars.Plugin = (*Sidecar)(nil)
	_ sidecars.Pinger = (*Sidecar)(nil)
)

// New opens the state store and the data root, and cancels the jobs an
// interrupted submission left (within ctx and CommandTimeout). The graceful
// stops it resumes outlive ctx: Close ends them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("slurm config: %w", err)
	}
	tmpl, err := loadJobTemplate(cfg.JobScriptTemplate)
	if err != nil {
		return nil, fmt.Errorf("slurm config: %w", err)
	}
	rootDir, _ := config.ExpandHome(cfg.DataRootFolder)
	statePath, _ := config.ExpandHome(cfg.StatePath)
	root, err := poddata.OpenDir(rootDir)
	if err != nil {
		return nil, fmt.Errorf("DataRootFolder: %w", err)
	}
	// One sidecar per DataRootFolder: at start it cancels the jobs of that
	// folder it has no record of, which would be another sidecar's.
	lock, err := root.OpenFile(".interlink-slurm.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil { //nolint:gosec // a file descriptor fits an int
			_ = lock.Close()
			err = fmt.Errorf("DataRootFolder %s is used by another interlink-slurm (give each its own): %w", rootDir, err)
		}
	}
	if err != nil {
		_ = root.Close()
		return nil, err
	}
	st, err := openStore(statePath)
	if err != nil {
		_ = lock.Close()
		_ = root.Close()
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	missing := resolvePrograms(&cfg, root, rootDir)
	for key, err := range missing {
		log.Debug("program not found: pods that need it are refused", "key", key, "err", err)
	}
	if len(cfg.AllowedUIDs) > 0 {
		// Jobs running as other uids reach their own directory through it
		// (traverse only: they cannot list it).
		if err := root.Chmod(".", 0o711); err != nil {
			log.Warn("could not make DataRootFolder traversable for the jobs' uids", "err", err)
		}
	}
	for _, w := range cfg.Warnings() {
		log.Warn("config key without effect", "detail", w)
	}
	s := &Sidecar{cfg: cfg, log: log, cmd: newCommands(&cfg), store: st, root: root, rootDir: rootDir, lock: lock, missing: missing, jobTemplate: tmpl}
	s.bgCtx, s.stopAll = context.WithCancel(context.WithoutCancel(ctx))
	log.Info("slurm sidecar state loaded", "pods", st.len(), "state", statePath, "data", rootDir)
	rctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout.Duration)
	defer cancel()
	if err := s.reconcile(rctx); err != nil {
		log.Warn("could not look for jobs left by an interrupted submission", "err", err)
	}
	s.resumeStops()
	return s, nil
}

// reconcile cancels the live jobs this sidecar submitted (their comment
// names a pod, their working directory is DataRootFolder) but has no record
// of: it stopped between sbatch and saving the job ID, so it never answered
// that create, and the retried create makes the pod's job anew.
func (s *Sidecar) reconcile(ctx context.Context) error {
	out, err := s.cmd.run(ctx, s.cfg.SqueuePath, "--noheader", "--states=PENDING,RUNNING,SUSPENDED,CONFIGURING,REQUEUED", "--format=%i|%k|%Z")
	if err != nil {
		return err
	}
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 3 || filepath.Clean(f[2]) != s.rootDir || !strings.HasPrefix(f[1], jobComment("")) {
			continue
		}
		uid := strings.TrimPrefix(f[1], jobComment(""))
		if rec, ok := s.store.get(uid); ok && rec.JobID == f[0] {
			continue
		}
		if _, err := s.cmd.run(ctx, s.cfg.ScancelPath, f[0]); err != nil && !jobGone(err) {
			return fmt.Errorf("cancel orphan job %s: %w", f[0], err)
		}
		s.log.Warn("cancelled a job without a pod record (interrupted submission)", "job_id", f[0], "uid", uid)
	}
	return nil
}

// Close releases the store and the data root.
func (s *Sidecar) Close() error {
	// Jobs stopping gracefully are canceled now, and their pods removed.
	s.bgMu.Lock()
	s.closed = true
	var late []string
	for t, dir := range s.late {
		if t.Stop() {
			late = append(late, dir)
		}
	}
	s.late = nil
	s.bgMu.Unlock()
	for _, dir := range late {
		s.removeLate(dir)
	}
	s.stopAll()
	s.bg.Wait()
	return errors.Join(s.store.close(), s.lock.Close(), s.root.Close())
}

// Create submits the pod's job; a second create of the same UID returns
// the job of the first.
func (s *Sidecar) Create(ctx context.Context, data *api.RetrievedPodData) (api.CreateResult, error) {
	p := &data.Pod
	uid := string(p.UID)
	dir, err := poddata.DirName(p)
	if err != nil {
		return api.CreateResult{}, err
	}
	if err := api.RequireContainers(p); err != nil {
		return api.CreateResult{}, err
	}
	unlock := s.locks.Lock(uid)
	defer unlock()
	if rec, ok := s.store.get(uid); ok {
		return api.CreateResult{PodUID: uid, PodJID: rec.JobID}, nil
	}
	begin := time.Now()
	rec := record{UID: uid, Namespace: p.Namespace, Name: p.Name, Dir: dir, Created: time.Now().UTC(),
		InitContainers: names(p.Spec.InitContainers), Containers: names(p.Spec.Containers)}
	j, err := buildJob(&s.cfg, &site{missing: s.missing, images: localImages{}, jobTemplate: s.jobTemplate, statHost: os.Stat, primaryGID: primaryGID}, data, filepath.Join(s.rootDir, dir))
	if err != nil {
		return api.CreateResult{}, err
	}
	if s.cfg.PodmanLocalStorage && len(j.podmanImages) > 0 {
		if err := s.checkPodmanImages(ctx, p, j.podmanImages); err != nil {
			return api.CreateResult{}, err
		}
	}
	fail := func(err error) (api.CreateResult, error) {
		_ = s.root.RemoveAll(dir)
		_ = s.root.Remove(dir + outputSuffix) // giveTo made it for the job's uid
		return api.CreateResult{}, err
	}
	if err := s.writeData(dir, j.files); err != nil {
		return fail(fmt.Errorf("pod %s/%s: write its data: %w", p.Namespace, p.Name, err))
	}
	if err := s.writeSpec(dir, j.spec); err != nil {
		return fail(fmt.Errorf("pod %s/%s: write its probes: %w", p.Namespace, p.Name, err))
	}
	rec.podProbes = j.status
	if j.uid >= 0 {
		if err := s.giveTo(dir, int(j.uid), int(j.gid)); err != nil {
			return fail(fmt.Errorf("pod %s/%s: give its directory to uid %d: %w", p.Namespace, p.Name, j.uid, err))
		}
	}
	start := time.Now()
	// The script goes to sbatch's standard input: Slurm keeps it (scontrol
	// write batch_script JOBID shows it).
	// Not bound to the request: a caller going away must not kill an
	// sbatch that Slurm may have accepted (CommandTimeout still bounds it).
	out, err := s.cmd.runInput(context.WithoutCancel(ctx), []byte(j.script), append([]string{s.cfg.SbatchPath}, j.args...)...)
	if err != nil {
		var ce *cmdError
		if errors.As(err, &ce) && refused(ce.stderr) {
			// Slurm refused this job (an impossible request): the pod's fault.
			return fail(api.Invalid("pod %s/%s: Slurm refused the job: %s", p.Namespace, p.Name, ce.stderr))
		}
		// Slurm may have accepted the job before the error (a timeout):
		// adopt it rather than submit a second one on the retry.
		if id, ferr := s.findJob(context.WithoutCancel(ctx), p); ferr == nil && id != "" {
			out = []byte(id)
		} else {
			return fail(fmt.Errorf("pod %s/%s: sbatch: %w", p.Namespace, p.Name, err))
		}
	}
	id, ok := parseJobID(out)
	if !ok {
		// Trusted only as a job ID: anything else fails the create, and a
		// job it may have made for the pod is cancelled.
		reply := string(out)
		if len(reply) > 512 {
			reply = reply[:512] + "..."
		}
		s.log.Warn("sbatch's reply is not a job ID", "pod", p.Name, "namespace", p.Namespace, "uid", uid, "reply", reply)
		if jid, ferr := s.findJob(context.WithoutCancel(ctx), p); ferr == nil && jid != "" {
			_, _ = s.cmd.run(context.WithoutCancel(ctx), s.cfg.ScancelPath, jid)
		}
		return fail(api.Invalid("pod %s/%s: sbatch's reply is not a job ID: %q", p.Namespace, p.Name, reply))
	}
	rec.JobID = id
	if err := s.store.put(rec); err != nil {
		// The job runs; cancel it rather than leave it without a pod.
		_, _ = s.cmd.run(context.WithoutCancel(ctx), s.cfg.ScancelPath, id)
		return fail(err)
	}
	if s.metrics != nil {
		s.metrics.submitDuration.Observe(time.Since(begin).Seconds())
	}
	s.log.Info("job submitted", "pod", p.Name, "namespace", p.Namespace, "uid", uid, "job_id", id,
		"duration_seconds", time.Since(start).Seconds())
	return api.CreateResult{PodUID: uid, PodJID: id}, nil
}

// refusals are what sbatch says of a job it will never accept; anything
// else (timeouts, a busy controller, submit limits) is worth a retry.
var refusals = []string{"Invalid partition", "Invalid account", "Invalid qos", "Invalid generic resource", "Invalid feature",
	"Requested node configuration is not available", "Memory required by task is not available",
	"Requested partition configuration not available", "Requested time limit is invalid", "More processors requested than permitted",
	"unrecognized option", "invalid option", "Invalid job", "Invalid --"}

func refused(stderr string) bool {
	for _, r := range refusals {
		if strings.Contains(stderr, r) {
			return true
		}
	}
	return false
}

// findJob looks for a live or ended job of the pod by its comment.
func (s *Sidecar) findJob(ctx context.Context, p *corev1.Pod) (string, error) {
	out, err := s.cmd.run(ctx, s.cfg.SqueuePath, "--noheader", "--states=all", "--name="+p.Namespace+"-"+p.Name, "--format=%i|%k")
	if err != nil {
		return "", err
	}
	for l := range strings.SplitSeq(string(out), "\n") {
		if id, comment, ok := strings.Cut(strings.TrimSpace(l), "|"); ok && comment == jobComment(p.UID) {
			return id, nil
		}
	}
	return "", nil
}

// lateCleanup is how long after deleting a running job its files are
// removed once more (Slurm's default KillWait is 30 s).
const lateCleanup = time.Minute

// jobGone tells whether scancel failed because the job already ended.
func jobGone(err error) bool {
	var ce *cmdError
	return errors.As(err, &ce) && (strings.Contains(ce.stderr, "Invalid job id") || strings.Contains(ce.stderr, "already completing"))
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i := range cs {
		out[i] = cs[i].Name
	}
	return out
}

// writeData writes the pod's data files under its directory. A pod without
// data writes nothing.
func (s *Sidecar) writeData(dir string, files []poddata.File) error {
	if len(files) == 0 {
		return nil
	}
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return s.root.Write(path.Join(dir, dataDirName), files)
}

// giveTo makes the pod's directory, its files and its job output (made
// empty here) belong to uid, the job's (sbatch --uid): the job writes
// there as that uid. The group is left as it is.
func (s *Sidecar) giveTo(dir string, uid, gid int) error {
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	out, err := s.root.OpenFile(dir+outputSuffix, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := s.root.Lchown(dir+outputSuffix, uid, gid); err != nil {
		return err
	}
	return fs.WalkDir(s.root.FS(), dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return s.root.Lchown(p, uid, gid)
	})
}

// Delete cancels the pod's job and removes its directory and record.
func (s *Sidecar) Delete(ctx context.Context, p *corev1.Pod) error {
	uid := string(p.UID)
	if _, ok := s.stopping.Load(uid); ok {
		return nil // stopping gracefully already
	}
	// A pod with preStop hooks stops gracefully: its job is signaled, and
	// the rest of the deletion waits for it in the background, so that no
	// caller's timeout cuts the grace period short (virtual-kubelet keeps
	// the pod object for its grace period meanwhile). The wait holds no
	// lock: a status recording the job's end takes the pod's.
	if rec, ok := s.store.get(uid); ok && rec.Final == nil && rec.StopGrace > 0 {
		if _, busy := s.stopping.LoadOrStore(uid, struct{}{}); busy {
			return nil
		}
		grace, ok := s.signalStop(ctx, &rec, p)
		if ok {
			// The caller's pod may change once Delete returns.
			ok = s.stopLater(rec, p.DeepCopy(), time.Now().Add(grace+stopMargin))
		}
		if ok {
			return nil
		}
		s.stopping.Delete(uid)
	}
	return s.remove(ctx, p)
}

// stopLater records that the pod's job stops until until (a sidecar
// started again goes on with it: resumeStops), and removes the pod in the
// background once the job ended, or at until, or when the sidecar closes.
// It is false when the sidecar is closing: the caller removes the pod.
func (s *Sidecar) stopLater(rec record, p *corev1.Pod, until time.Time) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return false
	}
	uid := string(p.UID)
	unlock := s.locks.Lock(uid)
	if cur, ok := s.store.get(uid); ok {
		cur.StopUntil = until
		if err := s.store.put(cur); err != nil {
			s.log.Warn("could not record a pod's graceful stop; a sidecar started again meanwhile leaves its directory", "pod", p.Name, "namespace", p.Namespace, "uid", uid, "err", err)
		}
	}
	unlock()
	s.bg.Go(func() {
		defer s.stopping.Delete(uid)
		ctx, cancel := context.WithDeadline(s.bgCtx, until)
		s.waitStopped(ctx, &rec)
		cancel()
		// The pod is removed even when Close canceled its stop.
		if err := s.remove(context.WithoutCancel(s.bgCtx), p); err != nil && !api.IsNotFound(err) {
			s.log.Error("could not delete a pod after its graceful stop", "pod", p.Name, "namespace", p.Namespace, "uid", uid, "err", err)
		}
	})
	return true
}

// resumeStops goes on with the graceful stops a sidecar that stopped left
// recorded (stopLater).
func (s *Sidecar) resumeStops() {
	var stops []record
	s.store.each(func(r *record) {
		if !r.StopUntil.IsZero() {
			stops = append(stops, *r)
		}
	})
	for _, r := range stops {
		s.stopping.Store(r.UID, struct{}{})
		s.stopLater(r, podOfRecord(&r), r.StopUntil)
	}
}

// podOfRecord is as much of a pod as its record keeps: enough to remove it.
func podOfRecord(r *record) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: r.Name, UID: types.UID(r.UID)}}
	for _, n := range r.InitContainers {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n})
	}
	for _, n := range r.Containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
	}
	for _, e := range r.Entries {
		if len(e.Exec) > 0 { // podman exec: the pod ran with Podman
			p.Annotations = map[string]string{AnnotationRuntime: RuntimePodman}
		}
	}
	return p
}

// remove cancels the pod's job and removes what it left.
func (s *Sidecar) remove(ctx context.Context, p *corev1.Pod) error {
	uid := string(p.UID)
	unlock := s.locks.Lock(uid)
	defer unlock()
	rec, ok := s.store.get(uid)
	if !ok {
		return api.NotFound("pod %s/%s (uid %s) not found", p.Namespace, p.Name, uid)
	}
	if rec.Final == nil {
		// Not the request's context alone: a caller gone during the
		// graceful stop must still see the job cancelled (CommandTimeout
		// bounds it).
		if _, err := s.cmd.run(context.WithoutCancel(ctx), s.cfg.ScancelPath, rec.JobID); err != nil && !jobGone(err) {
			return fmt.Errorf("scancel job %s: %w", rec.JobID, err)
		}
	}
	if s.cfg.PodmanLocalStorage && s.podmanPod(p) {
		s.removePodmanContainers(ctx, p)
	}
	if err := s.root.Remove(rec.Dir + outputSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the output of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := s.root.RemoveAll(rec.Dir); err != nil {
		return fmt.Errorf("remove the directory of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := s.store.remove(uid); err != nil {
		return err
	}
	if rec.Final == nil {
		// A job being cancelled may still write (slurmstepd appends its
		// CANCELLED line to the output): clean up again once it is gone.
		s.cleanLater(rec.Dir)
	}
	s.log.Info("job deleted", "pod", p.Name, "namespace", p.Namespace, "uid", uid, "job_id", rec.JobID)
	return nil
}

// cleanLater removes dir (and its output) again after lateCleanup, or
// when the sidecar closes, whichever comes first.
func (s *Sidecar) cleanLater(dir string) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return
	}
	if s.late == nil {
		s.late = map[*time.Timer]string{}
	}
	var t *time.Timer
	t = time.AfterFunc(lateCleanup, func() {
		s.bgMu.Lock()
		if _, pending := s.late[t]; !pending {
			s.bgMu.Unlock()
			return // Close took it
		}
		delete(s.late, t)
		s.bg.Add(1)
		s.bgMu.Unlock()
		defer s.bg.Done()
		s.removeLate(dir)
	})
	s.late[t] = dir
}

func (s *Sidecar) removeLate(dir string) {
	_ = s.root.Remove(dir + outputSuffix)
	_ = s.root.RemoveAll(dir)
}

// Status answers for the known pods of the batch with one squeue call (and
// one sacct call when Accounting is on), whatever their number. A job Slurm
// does not list is lost only after lostAfterPolls definite answers in a
// row; a failed call declares nothing.
func (s *Sidecar) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	recs := make([]record, 0, len(pods))
	var ids []string
	for i := range pods {
		rec, ok := s.store.get(string(pods[i].UID))
		if !ok {
			continue
		}
		recs = append(recs, rec)
		if rec.Final == nil && jobIDPattern.MatchString(rec.JobID) {
			ids = append(ids, rec.JobID)
		}
	}
	states, definite, err := s.queryJobs(ctx, ids)
	if err != nil {
		return nil, api.Unavailable("status of %d jobs: %w", len(ids), err)
	}
	now := time.Now().UTC()
	for _, id := range ids {
		if _, ok := states[id]; ok {
			s.absent.Delete(id)
			continue
		}
		n := 0
		if v, ok := s.absent.Load(id); ok {
			n, _ = v.(int)
		}
		if definite {
			n++
			s.absent.Store(id, n)
		}
		if n < lostAfterPolls {
			states[id] = jobState{State: stateUnknown, At: now}
		}
	}
	ips := s.podIPs(ctx, states)
	out := make([]api.PodStatus, 0, len(recs))
	for _, rec := range recs {
		st := s.podStatus(&rec, states)
		if js, ok := states[rec.JobID]; ok && rec.Final == nil && js.Node != "" {
			st.PodIP = ips[js.Node]
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *Sidecar) podStatus(rec *record, states map[string]jobState) api.PodStatus {
	dir := rec.Dir
	st := api.PodStatus{PodName: rec.Name, PodUID: rec.UID, PodNamespace: rec.Namespace, JobID: rec.JobID}
	files := map[string]ctrFiles{}
	for _, n := range append(append([]string{}, rec.InitContainers...), rec.Containers...) {
		f := readCtrFiles(s.root, dir, n)
		readProbeFiles(s.root, dir, n, &rec.podProbes, &f)
		files[n] = f
	}
	var js jobState
	switch {
	case rec.Final != nil:
		js = *rec.Final
	default:
		var ok bool
		if js, ok = states[rec.JobID]; !ok {
			js = jobState{State: stateLost, At: time.Now().UTC()}
			if allExited(files) {
				js.State = "COMPLETED"
			}
		}
		if js.State == stateUnknown && allExited(files) {
			js.State = "COMPLETED"
		}
		if js.terminal() {
			rec.Final = &js
			s.absent.Delete(rec.JobID)
			s.saveFinal(*rec)
		}
	}
	var tail *string
	output := func() string {
		if tail == nil {
			t := outputTail(s.root, dir, 512)
			tail = &t
		}
		return *tail
	}
	initDone := true
	for _, n := range rec.InitContainers {
		f := files[n]
		st.InitContainers = append(st.InitContainers, containerStatus(n, rec.JobID, js, f, output, true))
		initDone = initDone && f.exited && f.code == 0
	}
	for _, n := range rec.Containers {
		st.Containers = append(st.Containers, containerStatus(n, rec.JobID, js, files[n], output, initDone))
	}
	if rec.Usage {
		running := map[string]time.Time{}
		for _, cs := range append(append([]corev1.ContainerStatus{}, st.InitContainers...), st.Containers...) {
			if f := files[cs.Name]; cs.State.Running != nil && !f.exited {
				running[cs.Name] = f.started
			}
		}
		if len(running) > 0 {
			st.Usage = readUsage(s.root, dir, slices.Concat(rec.InitContainers, rec.Containers), running, time.Now())
		}
	}
	return st
}

// saveFinal keeps a job's end, unless its pod was deleted meanwhile.
func (s *Sidecar) saveFinal(rec record) {
	unlock := s.locks.Lock(rec.UID)
	defer unlock()
	if cur, ok := s.store.get(rec.UID); !ok || cur.JobID != rec.JobID {
		return
	}
	if err := s.store.put(rec); err != nil {
		s.log.Warn("could not save a job's end", "job_id", rec.JobID, "err", err)
	}
}

// allExited tells whether every container recorded its last exit code
// (none waits to start again).
func allExited(files map[string]ctrFiles) bool {
	for _, f := range files {
		if !f.exited || f.restarting() {
			return false
		}
	}
	return true
}

// primaryGID is the primary group of the account of uid on the sidecar's
// host: sbatch --uid needs an account, whose group the job takes.
func primaryGID(uid int64) (int64, error) {
	u, err := user.LookupId(strconv.FormatInt(uid, 10))
	if err != nil {
		return 0, fmt.Errorf("uid %d has no account on the sidecar's host (sbatch --uid runs the job as an account, with its primary group): %w", uid, err)
	}
	gid, err := strconv.ParseInt(u.Gid, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("uid %d: primary group %q: %w", uid, u.Gid, err)
	}
	return gid, nil
}
