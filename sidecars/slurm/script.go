package slurm

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
	"github.com/seed-3f807049/interlink/sidecars/slurm/envexec"
	"github.com/seed-3f807049/interlink/sidecars/slurm/prober"
)

// Annotations a pod may carry: the original SLURM plugin's, and ours.
const (
	AnnotationFlags              = "slurm-job.vk.io/flags"
	AnnotationPreExec            = "slurm-job.vk.io/pre-exec"
	AnnotationSingularityMounts  = "slurm-job.vk.io/singularity-mounts"
	AnnotationSingularityOptions = "slurm-job.vk.io/singularity-options"
	AnnotationImageRoot          = "slurm-job.vk.io/image-root"
	AnnotationMPIFlags           = "slurm-job.vk.io/mpi-flags"
	AnnotationRuntime            = "interlink.io/runtime"
	AnnotationFlavor             = "interlink.io/flavor"
	AnnotationFlavorOriginal     = "slurm-job.vk.io/flavor"
	AnnotationEnrootMounts       = "slurm-job.vk.io/enroot-mounts"
	AnnotationEnrootOptions      = "slurm-job.vk.io/enroot-options"
	AnnotationPartition          = "interlink.io/partition"
	AnnotationAccount            = "interlink.io/account"
	AnnotationQOS                = "interlink.io/qos"
)

// Extended resources that become GPUs of the job.
const (
	resourceNvidiaGPU corev1.ResourceName = "nvidia.com/gpu"
	resourceAMDGPU    corev1.ResourceName = "amd.com/gpu"
)

// Files of a pod. The job's own output (Slurm's messages included) goes
// to DIR.out beside the pod's directory DIR, so that a pod without data
// costs no file operation on the shared filesystem at submission: the job
// makes its directory itself.
const (
	outputSuffix = ".out"
	// containersDir holds, per container, NAME.log (timestamped lines of
	// every run), NAME.started ("TIME", and once restarted "TIME COUNT CODE
	// STARTED FINISHED": the restarts so far and the previous run's end) and
	// NAME.exit ("CODE TIME", and "CODE TIME DUE SECONDS" when the container
	// waits to start again at DUE). il_run in the job script writes them.
	containersDir = "containers"
	// dataDirName is the data directory (volumes, env files) when the
	// compute nodes share DataRootFolder.
	dataDirName = "data"
)

// dataMarker stands for the data directory ($IL_DATA) inside a word of the
// script: the data directory is known only when the job runs on a node
// without the shared filesystem. Pod data never holds NUL (quoting refuses
// it), so the marker cannot be forged.
const dataMarker = "\x00IL_DATA\x00"

// dataRef is the word for rel inside the data directory.
func dataRef(rel string) string { return dataMarker + "/" + rel }

// job is what Create submits.
type job struct {
	args []string // sbatch arguments, before the script's path
	// uid is the job's uid (sbatch --uid), or -1: the sidecar's account.
	// The pod's directory and files are given to it.
	uid int64
	// gid is the job's group (sbatch --gid, the uid's primary group), or -1.
	gid    int64
	script string
	files  []poddata.File // pod data written into the data directory (shared mode)
	// podmanImages are the images the sidecar checks at create when it
	// sees the jobs' podman storage (PodmanLocalStorage).
	podmanImages []podmanImage
	// spec is the prober's spec (prober.SpecFile), written by the sidecar
	// in the pod's directory with SharedFS (else embedded in the script);
	// nil when the prober has nothing to do (proberSpec).
	spec []byte
	// status is what the status of the pod's containers needs to know.
	status podProbes
}

// annotationTunnelCommands is the original VK's wstunnel client command
// line, which the original plugin puts in the job script.
const annotationTunnelCommands = "interlink.eu/wstunnel-client-commands"

// buildJob turns a pod into sbatch arguments, a job script and the files of
// its data. dir is the pod's directory; st is what the sidecar's host
// offers (nil: everything, images left as they are). Every problem with the
// pod is an api.Invalid error naming it.
func buildJob(cfg *Config, st *site, data *api.RetrievedPodData, dir string) (*job, error) {
	pod := &data.Pod
	if st == nil {
		st = &site{}
	}
	b := &builder{cfg: cfg, pod: pod, dir: dir, site: st}
	invalid := func(err error) error { return api.Invalid("pod %s/%s: %w", pod.Namespace, pod.Name, err) }
	if data.JobScript != "" {
		return nil, invalid(errJobScript)
	}
	if _, ok := pod.Annotations[annotationTunnelCommands]; ok {
		// The original plugin runs it in the job's shell: shell of the
		// pod's author on the host. This sidecar has no tunnel to run.
		return nil, invalid(fmt.Errorf("annotation %s is shell that the original plugin runs on the host, outside any container: it is never run here (no tunnel)", annotationTunnelCommands))
	}
	args, err := b.sbatchArgs()
	if err != nil {
		return nil, invalid(err)
	}
	vols, files, err := poddata.Volumes(data, poddata.Options{ExportPodData: cfg.ExportPodData, AllowedHostPaths: cfg.AllowedHostPaths})
	if err != nil {
		return nil, err
	}
	b.dataFiles = map[string]bool{}
	for _, f := range files {
		b.dataFiles[f.Path] = !f.Dir
	}
	rtName, imageRoot, err := b.runtimeChoice()
	if err != nil {
		return nil, invalid(err)
	}
	if err := b.checkProbes(rtName); err != nil {
		return nil, invalid(err)
	}
	rt := newRuntime(rtName, cfg, imageRoot, b.imagePrefix)
	b.imageRoot = imageRoot
	if b.singOpts, err = b.singularityOptions(); err != nil {
		return nil, invalid(err)
	}
	if b.enrootOpts, err = b.enrootOptions(); err != nil {
		return nil, invalid(err)
	}
	var errs []error
	var inits, mains []*container
	if rt.env() == envQuotedFile {
		files = append(files, poddata.File{Path: "env", Dir: true})
	}
	for i := range pod.Spec.InitContainers {
		c, fs, err := b.container(&pod.Spec.InitContainers[i], vols, rt)
		errs = append(errs, err)
		inits = append(inits, c)
		files = append(files, fs...)
	}
	for i := range pod.Spec.Containers {
		c, fs, err := b.container(&pod.Spec.Containers[i], vols, rt)
		errs = append(errs, err)
		mains = append(mains, c)
		files = append(files, fs...)
	}
	if err := errors.Join(errs...); err != nil {
		if onlyReason(err, api.ReasonImageNotFound) {
			// Not the pod's fault for good: the image may come.
			return nil, api.NewError(api.ReasonImageNotFound, "pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		return nil, invalid(err)
	}
	if b.spec, err = b.proberSpec(rtName, inits, mains); err != nil {
		return nil, invalid(err)
	}
	b.entered = b.entries(rtName, mains)
	b.grace = stopGrace(pod)
	script, err := b.script(rt, inits, mains, files)
	if err != nil {
		return nil, invalid(err)
	}
	j := &job{args: args, script: script, files: files, uid: b.uid, gid: b.gid, status: b.podProbes(inits, mains)}
	if !cfg.SharedFS {
		j.files = nil // embedded in the script
	} else {
		j.spec = b.spec
	}
	if _, ok := rt.(podman); ok {
		j.podmanImages = podmanImages(pod, inits, mains)
	}
	return j, nil
}

// onlyReason tells whether every error joined in err has reason r.
func onlyReason(err error, r api.Reason) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyReason(e, r) {
				return false
			}
		}
		return true
	}
	return api.ReasonOf(err) == r
}

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

// runtimeChoice is the pod's runtime and image root: the config's, or what
// its annotations ask for within the operator's allow-lists.
func (b *builder) runtimeChoice() (rtName, imageRoot string, err error) {
	a := b.pod.Annotations
	rtName = b.cfg.Runtime
	if r, ok := a[AnnotationRuntime]; ok && r != rtName {
		if !slices.Contains(b.cfg.AllowedRuntimes, r) {
			return "", "", fmt.Errorf("annotation %s=%q: runtime %q is not allowed (AllowedRuntimes in the sidecar's config; it allows %s)",
				AnnotationRuntime, r, r, strings.Join(append([]string{b.cfg.Runtime}, b.cfg.AllowedRuntimes...), ", "))
		}
		rtName = r
	}
	if err := b.need(runtimeKey[rtName], "runtime "+rtName); err != nil {
		return "", "", err
	}
	// Every job logs through the helper; helper runtimes run it in their
	// containers too.
	if err := b.need("EnvExecPath", "runtime "+rtName); err != nil {
		return "", "", err
	}
	imageRoot = b.cfg.ImageRoot
	b.imagePrefix = b.cfg.ImagePrefix
	if r, ok := a[AnnotationImageRoot]; ok && hasScheme(r) {
		// A URI prefix, as the original: the pod's images are prefix+image.
		if r != b.cfg.ImagePrefix && !slices.Contains(b.cfg.AllowedImageRoots, r) {
			return "", "", fmt.Errorf("annotation %s=%q: the image prefix is not allowed (AllowedImageRoots in the sidecar's config: list the URI prefix there)", AnnotationImageRoot, r)
		}
		if rtName != RuntimeSingularity && rtName != RuntimeApptainer && rtName != RuntimeEnroot {
			return "", "", fmt.Errorf("annotation %s=%q: a URI prefix applies to the singularity, apptainer and enroot runtimes, not %s", AnnotationImageRoot, r, rtName)
		}
		b.imagePrefix = r
		return rtName, "", nil
	}
	if r, ok := a[AnnotationImageRoot]; ok {
		c := path.Clean(r)
		if !path.IsAbs(r) || (c != path.Clean(b.cfg.ImageRoot) && !slices.ContainsFunc(b.cfg.AllowedImageRoots, func(p string) bool { return path.Clean(p) == c })) {
			return "", "", fmt.Errorf("annotation %s=%q: the image root is not allowed (AllowedImageRoots in the sidecar's config)", AnnotationImageRoot, r)
		}
		imageRoot = c
	}
	return rtName, imageRoot, nil
}

// need fails when the program of a config key was not found at start.
func (b *builder) need(key, what string) error {
	if err := b.site.missing[key]; err != nil {
		return fmt.Errorf("%s cannot run at this site: %w (%s in the sidecar's config)", what, err, key)
	}
	return nil
}

type builder struct {
	cfg  *Config
	pod  *corev1.Pod
	dir  string
	site *site
	// singOpts are the options of the singularity annotations, checked.
	singOpts []string
	// enrootOpts are the options of the enroot annotations, checked.
	enrootOpts []string
	// imagePrefix turns image references into URIs (ImagePrefix, or the
	// URI prefix the pod chose with the image-root annotation).
	imagePrefix string
	// uid is the job's uid (sbatch --uid), or -1.
	uid int64
	// gid is the job's group (sbatch --gid), or -1.
	gid int64
	// imageRoot is the pod's image root (ImageRoot, or one it chose).
	imageRoot string
	// dataFiles are the data-relative paths of the pod's data files (not
	// directories): a subPath naming one binds a file.
	dataFiles map[string]bool
	// spec is the prober's spec, nil when it has nothing to do; grace is
	// the job's stop time on SIGUSR1 (stopGrace), 0 when it does not trap it.
	spec  []byte
	grace int64
	// entered are how a command runs in each container (kubectl exec).
	entered []prober.Container
}

// sbatchArgs are the job's options: name, output, resources, partition,
// account, QOS, the flavor's flags and the pod's own.
func (b *builder) sbatchArgs() ([]string, error) {
	p := b.pod
	a := p.Annotations
	flavor, err := b.flavor()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--parsable",
		"--job-name=" + p.Namespace + "-" + p.Name,
		"--comment=" + jobComment(p.UID),
		"--output=" + b.dir + outputSuffix,
		"--chdir=" + path.Dir(b.dir),
	}
	cpu, mem, gpus := podResources(p)
	var flavorFlags []string
	if flavor != nil {
		fcpu, err1 := flavor.cpu()
		fmem, err2 := flavor.memory()
		fl, err3 := flavor.flags()
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("flavor %s: %w", flavor.Name, err)
		}
		if cpu.IsZero() {
			cpu = fcpu
		}
		if mem.IsZero() {
			mem = fmem
		}
		flavorFlags = fl
	}
	if b.uid, err = b.jobUID(flavor); err != nil {
		return nil, err
	}
	b.gid = -1
	if b.uid >= 0 {
		args = append(args, "--uid="+strconv.FormatInt(b.uid, 10))
		// Without --gid the job keeps the group of the sidecar (root's):
		// it would read what that group may.
		if b.site.primaryGID != nil {
			if b.gid, err = b.site.primaryGID(b.uid); err != nil {
				return nil, err
			}
			args = append(args, "--gid="+strconv.FormatInt(b.gid, 10))
		}
	}
	if !cpu.IsZero() {
		args = append(args, "--cpus-per-task="+strconv.FormatInt((cpu.MilliValue()+999)/1000, 10))
	}
	if !mem.IsZero() {
		args = append(args, "--mem="+strconv.FormatInt((mem.Value()+(1<<20)-1)>>20, 10)+"M")
	}
	if gpus > 0 {
		if b.cfg.GPUFlag == "gpus" {
			args = append(args, "--gpus="+strconv.FormatInt(gpus, 10))
		} else {
			args = append(args, "--gres=gpu:"+strconv.FormatInt(gpus, 10))
		}
	}
	if d := p.Spec.ActiveDeadlineSeconds; d != nil {
		if *d <= 0 {
			return nil, fmt.Errorf("activeDeadlineSeconds %d is not positive", *d)
		}
		args = append(args, fmt.Sprintf("--time=%d:%02d", *d/60, *d%60))
	}
	partition := b.cfg.Partition
	if flavor != nil && flavor.Partition != "" {
		partition = flavor.Partition
	}
	for _, o := range []struct{ flag, def, annotation string }{
		{"--partition=", partition, AnnotationPartition},
		{"--account=", b.cfg.Account, AnnotationAccount},
		{"--qos=", b.cfg.QOS, AnnotationQOS},
	} {
		v := o.def
		if av, ok := a[o.annotation]; ok {
			if err := checkSlurmName(av); err != nil {
				return nil, fmt.Errorf("annotation %s: %w", o.annotation, err)
			}
			v = av
		}
		if v != "" {
			args = append(args, o.flag+v)
		}
	}
	args = append(args, flavorFlags...)
	if f, ok := a[AnnotationFlags]; ok {
		flags, err := allowedWords(f, b.cfg.AllowedSbatchFlags, "AllowedSbatchFlags")
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", AnnotationFlags, err)
		}
		args = append(args, flags...)
	}
	return args, nil
}

// jobComment marks a job as the pod's, so that a job submitted just before
// a crash is found again.
func jobComment(uid types.UID) string { return "interlink-pod=" + string(uid) }

// flavor is the pod's flavor: the one its annotation names (either
// spelling), else for a pod asking for GPUs a GPU flavor (gpuFlavor), else
// DefaultFlavor; nil when none applies. An empty annotation names none. An
// unknown name is a 400 naming the annotation (the original logged it and
// went on).
func (b *builder) flavor() (*Flavor, error) {
	a := b.pod.Annotations
	name, ann := a[AnnotationFlavor], AnnotationFlavor
	if orig := a[AnnotationFlavorOriginal]; orig != "" {
		if name != "" && orig != name {
			return nil, fmt.Errorf("annotations %s=%q and %s=%q disagree", AnnotationFlavor, name, AnnotationFlavorOriginal, orig)
		}
		name, ann = orig, AnnotationFlavorOriginal
	}
	if name != "" {
		for i := range b.cfg.Flavors {
			if b.cfg.Flavors[i].Name == name {
				return &b.cfg.Flavors[i], nil
			}
		}
		names := make([]string, 0, len(b.cfg.Flavors))
		for _, f := range b.cfg.Flavors {
			names = append(names, f.Name)
		}
		return nil, fmt.Errorf("annotation %s: no flavor %q (Flavors in the sidecar's config has: %s)", ann, name, strings.Join(names, ", "))
	}
	if _, _, gpus := podResources(b.pod); gpus > 0 {
		if f := gpuFlavor(b.cfg.Flavors, gpus); f != nil {
			return f, nil
		}
	}
	for i := range b.cfg.Flavors {
		if b.cfg.Flavors[i].Name == b.cfg.DefaultFlavor {
			return &b.cfg.Flavors[i], nil
		}
	}
	return nil, nil
}

// gpuFlavor chooses a flavor for a pod asking for n GPUs: when some flavors
// have GPU set, among them only; else, as the original (whose map form has
// no GPU key), among those whose flags or name mention gpu. Of these, the
// first whose --gres=gpu:N asks for exactly n, else the first with GPU set
// or gpu in its flags. Flavors are in the config's order (a map's by name).
func gpuFlavor(flavors []Flavor, n int64) *Flavor {
	marked := slices.ContainsFunc(flavors, func(f Flavor) bool { return f.GPU })
	var first *Flavor
	for i := range flavors {
		f := &flavors[i]
		flags := strings.ToLower(strings.Join(append(slices.Clone(f.Flags), f.SlurmFlags...), " "))
		inFlags := strings.Contains(flags, "gpu")
		switch {
		case marked && !f.GPU:
			continue
		case !f.GPU && !inFlags && !strings.Contains(strings.ToLower(f.Name), "gpu"):
			continue
		}
		if gresGPUs(f) == n {
			return f
		}
		if first == nil && (f.GPU || inFlags) {
			first = f
		}
	}
	return first
}

// gresGPUs is the count of a flavor's --gres=gpu:N (or gpu:TYPE:N), or 0.
func gresGPUs(f *Flavor) int64 {
	flags, _ := f.flags()
	for _, fl := range flags {
		v, ok := strings.CutPrefix(fl, "--gres=")
		if !ok {
			continue
		}
		for item := range strings.SplitSeq(v, ",") {
			if !strings.HasPrefix(item, "gpu:") {
				continue
			}
			if n, err := strconv.ParseInt(item[strings.LastIndexByte(item, ':')+1:], 10, 64); err == nil {
				return n
			}
		}
	}
	return 0
}

// jobUID is the uid the job runs as (sbatch --uid), or -1 for the
// sidecar's own account: the pod's runAsUser, else the namespace's uid
// (NamespaceUIDs), else its flavor's UID, else DefaultUID, always within
// AllowedUIDs. A uid NamespaceUIDs binds to namespaces serves only their
// pods. With AllowedUIDs set a pod must end with a uid: the sidecar runs as
// root, and a job without --uid would too. Without AllowedUIDs, a
// runAsUser equal to the sidecar's uid needs no --uid.
func (b *builder) jobUID(flavor *Flavor) (int64, error) {
	ranges, err := parseUIDRanges(b.cfg.AllowedUIDs)
	if err != nil {
		return 0, fmt.Errorf("AllowedUIDs: %w", err)
	}
	ns := b.pod.Namespace
	var asked *int64
	what := "securityContext.runAsUser"
	if sc := b.pod.Spec.SecurityContext; sc != nil {
		asked = sc.RunAsUser
	}
	if nsUID, ok := b.cfg.NamespaceUIDs[ns]; ok {
		if asked != nil && *asked != nsUID {
			return 0, fmt.Errorf("securityContext.runAsUser %d: pods of namespace %s run as uid %d (NamespaceUIDs in the sidecar's config)", *asked, ns, nsUID)
		}
		asked, what = &nsUID, "NamespaceUIDs["+ns+"]"
	}
	if asked == nil {
		switch {
		case flavor != nil && flavor.UID != nil:
			asked, what = flavor.UID, "flavor "+flavor.Name+"'s UID"
		case b.cfg.DefaultUID.Set:
			asked, what = &b.cfg.DefaultUID.UID, "DefaultUID"
		case len(ranges) > 0:
			return 0, fmt.Errorf("the pod names no uid, and with AllowedUIDs set in the sidecar's config (which runs as root) every job needs one: set securityContext.runAsUser within AllowedUIDs, or have the operator set NamespaceUIDs[%s] or DefaultUID", ns)
		default:
			return -1, nil
		}
	}
	if owners := uidNamespaces(b.cfg.NamespaceUIDs, *asked); len(owners) > 0 && !slices.Contains(owners, ns) {
		return 0, fmt.Errorf("%s %d: that uid belongs to namespace %s (NamespaceUIDs in the sidecar's config), and only its pods run as it", what, *asked, strings.Join(owners, ", "))
	}
	switch {
	case len(ranges) == 0 && *asked == int64(geteuid()):
		return -1, nil // the sidecar's own account: nothing to ask
	case len(ranges) == 0:
		return 0, fmt.Errorf("%s %d: jobs run as the sidecar's account (uid %d); running them as other uids needs AllowedUIDs in the sidecar's config", what, *asked, geteuid())
	case !uidAllowed(ranges, *asked):
		return 0, fmt.Errorf("%s %d is not within AllowedUIDs in the sidecar's config", what, *asked)
	}
	return *asked, nil
}

// uidNamespaces are the namespaces NamespaceUIDs binds uid to, sorted.
func uidNamespaces(m map[string]int64, uid int64) []string {
	var out []string
	for ns, u := range m {
		if u == uid {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// podResources is what the pod asks for, as the scheduler counts it: the
// sum over containers (limits, or else requests), or the largest init
// container if that is more.
func podResources(p *corev1.Pod) (cpu, mem resource.Quantity, gpus int64) {
	get := func(c *corev1.Container, n corev1.ResourceName) resource.Quantity {
		if q, ok := c.Resources.Limits[n]; ok {
			return q
		}
		return c.Resources.Requests[n]
	}
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		cpu.Add(get(c, corev1.ResourceCPU))
		mem.Add(get(c, corev1.ResourceMemory))
		g1, g2 := get(c, resourceNvidiaGPU), get(c, resourceAMDGPU)
		gpus += g1.Value() + g2.Value()
	}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if q := get(c, corev1.ResourceCPU); q.Cmp(cpu) > 0 {
			cpu = q
		}
		if q := get(c, corev1.ResourceMemory); q.Cmp(mem) > 0 {
			mem = q
		}
	}
	return cpu, mem, gpus
}

var slurmName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*$`)

// checkSlurmName checks a partition, account or QOS name.
func checkSlurmName(s string) error {
	if !slurmName.MatchString(s) {
		return fmt.Errorf("%q is not a valid Slurm name", s)
	}
	return nil
}

// Options a pod must not set: the sidecar needs them as they are. sbatch
// takes any unambiguous abbreviation of a long option, and bundles of short
// ones, so both are checked as getopt reads them.
var (
	reservedLong  = []string{"wrap", "output", "error", "input", "chdir", "export", "export-file", "parsable", "uid", "gid", "array", "comment", "open-mode"}
	reservedShort = "oeiDa"
	// shortWithArg are sbatch's short options that take an argument: the
	// rest of a bundle after one of them is its value.
	shortWithArg = "aAbcdDeFGiJLMmnNopqStwx"
)

// checkFlags checks extra sbatch flags: each one an option, none reserved.
func checkFlags(flags []string) error {
	for _, f := range flags {
		switch {
		case strings.ContainsAny(f, "\n\x00"):
			return fmt.Errorf("%q holds a newline", f)
		case strings.HasPrefix(f, "--"):
			name, _, _ := strings.Cut(f[2:], "=")
			for _, r := range reservedLong {
				if name != "" && strings.HasPrefix(r, name) {
					return fmt.Errorf("option --%s (--%s) is set by the sidecar and cannot be changed", name, r)
				}
			}
		case strings.HasPrefix(f, "-") && len(f) > 1:
			for _, c := range f[1:] {
				if strings.ContainsRune(reservedShort, c) {
					return fmt.Errorf("option -%c is set by the sidecar and cannot be changed", c)
				}
				if strings.ContainsRune(shortWithArg, c) {
					break // the rest is its value
				}
			}
		default:
			return fmt.Errorf("%q is not an option (want --name=value)", f)
		}
	}
	return nil
}

// allowedWords splits an annotation into words and checks them against the
// allow-list of config key key.
func allowedWords(s string, list []string, key string) ([]string, error) {
	allowed, err := parseAllowList(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(allowed) == 0 {
		return nil, fmt.Errorf("refused: %s in the sidecar's config is empty", key)
	}
	w, err := words(s)
	if err == nil {
		w, err = checkOptions(w, allowed, key)
	}
	if err != nil && !strings.Contains(err.Error(), key) {
		err = fmt.Errorf("%w (only options listed in %s in the sidecar's config, each with a plain value, are accepted)", err, key)
	}
	return w, err
}

// words splits s into words as a shell would, without expanding anything:
// a variable, a command substitution or any other expansion is an error.
func words(s string) ([]string, error) {
	var out []string
	for w, err := range syntax.NewParser().WordsSeq(strings.NewReader(s)) {
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if !literal(w) {
			return nil, fmt.Errorf("%q: %q would be expanded by a shell; only plain and quoted words are accepted", s, s[w.Pos().Offset():w.End().Offset()])
		}
		v, err := expand.Literal(nil, w)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// literal tells whether w is made only of plain text and quotes.
func literal(w *syntax.Word) bool {
	for _, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			if strings.ContainsAny(p.Value, "~*?[") {
				return false // tilde and glob expansions
			}
		case *syntax.SglQuoted:
			if p.Dollar {
				return false
			}
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				if _, ok := q.(*syntax.Lit); !ok {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
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

// quoteAll quotes words for words() to read back; a word that cannot be
// quoted (it holds NUL) is left as is, and refused there.
func quoteAll(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		if q, err := quote(w); err == nil {
			out[i] = q
		} else {
			out[i] = w
		}
	}
	return out
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

// quote makes s one literal word of a bash script.
func quote(s string) (string, error) {
	q, err := syntax.Quote(s, syntax.LangBash)
	if err != nil {
		return "", fmt.Errorf("cannot quote %q: %w", s, err)
	}
	return q, nil
}

// ilEnvExec is the word for the helper's path in the job ("$IL_ENVEXEC").
const ilEnvExec = "\x00IL_ENVEXEC\x00"

// fdMarker stands, in a runtime's words, for the host side of mount i,
// which the job opens beneath its root (bindBeneath).
func fdMarker(i int) string { return fmt.Sprintf("\x00IL_FD%d\x00", i) }

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

// word renders w as one bash word; data paths become "$IL_DATA"/...; the
// image's entrypoint and command (podman) become their arrays.
func word(w string) (string, error) {
	switch w {
	case ilEnvExec:
		return `"$IL_ENVEXEC"`, nil
	case imageEntrypoint:
		return `"${il_ep[@]}"`, nil
	case imageCmd:
		return `"${il_cmd[@]}"`, nil
	}
	parts := strings.Split(w, dataMarker)
	var sb strings.Builder
	for i, p := range parts {
		if i > 0 {
			sb.WriteString(`"$IL_DATA"`)
		}
		if p == "" {
			continue
		}
		q, err := quote(p)
		if err != nil {
			return "", err
		}
		sb.WriteString(q)
	}
	if sb.Len() == 0 {
		return "''", nil
	}
	return sb.String(), nil
}

// line renders argv as one command line.
func line(argv []string) (string, error) {
	out := make([]string, len(argv))
	for i, a := range argv {
		w, err := word(a)
		if err != nil {
			return "", err
		}
		out[i] = w
	}
	return strings.Join(out, " "), nil
}

// script writes the job script.
func (b *builder) script(rt runtime, inits, mains []*container, files []poddata.File) (string, error) {
	var s strings.Builder
	var errs []error
	w := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	q := func(v string) string {
		r, err := quote(v)
		errs = append(errs, err)
		return r
	}
	cmd := func(argv []string) string {
		r, err := line(argv)
		errs = append(errs, err)
		return r
	}
	p := b.pod
	w("#!%s\n", b.cfg.BashPath)
	w("# Job of pod %s, written by interlink-slurm. The containers' output goes to\n", q(p.Namespace+"/"+p.Name))
	w("# containers/NAME.log, their exit codes to containers/NAME.exit.\n")
	w("umask 077\n")
	w("IL_DIR=%s\n", q(b.dir))
	w("IL_ENVEXEC=%s\n", q(b.cfg.EnvExecPath))
	if b.spec != nil {
		w("IL_PROBER=%s\n", q(b.cfg.ProberPath))
	}
	if b.cfg.SharedFS {
		w("IL_DATA=\"$IL_DIR\"/%s\n", dataDirName)
	} else {
		w("# Compute nodes do not share the pod directory's data: it is embedded below\n")
		w("# and written to node-local storage for the job's lifetime.\n")
		w("IL_DATA=$(mktemp -d \"${TMPDIR:-/tmp}/interlink-XXXXXXXX\") || exit 1\n")
	}
	w("mkdir -p \"$IL_DIR\"/%s \"$IL_DATA\" && cd \"$IL_DIR\" || exit 1\n", containersDir)
	w(`il_cleanup() {
	[[ -n ${IL_SSH_PID-} ]] && kill "$IL_SSH_PID" 2>/dev/null
`)
	if b.spec != nil {
		w("\t[[ -n ${IL_PROBER_PID-} ]] && kill \"$IL_PROBER_PID\" 2>/dev/null\n")
	}
	if !b.cfg.SharedFS {
		w("\trm -rf -- \"$IL_DATA\"\n")
	}
	w("\treturn 0\n}\ntrap il_cleanup EXIT\n")
	w(`# il_now [SECONDS] sets IL_NOW to the time (SECONDS from now), in UTC.
il_now() {
	if [[ -n ${EPOCHREALTIME-} ]]; then
		local t=${EPOCHREALTIME/,/.} s
		TZ=UTC printf -v s '%%(%%Y-%%m-%%dT%%H:%%M:%%S)T' "$((${t%%.*} + ${1:-0}))"
		IL_NOW="$s.${t#*.}Z"
	else
		IL_NOW=$(date -u -d "+${1:-0} seconds" +%%Y-%%m-%%dT%%H:%%M:%%S.%%NZ)
	fi
}
# il_pid NAME records the pid of this (sub)shell, which then execs the
# container's runtime: NAME.pid is the run's pid.
il_pid() {
	echo "$BASHPID" >"$IL_DIR/containers/$1.pid.tmp" && mv -f -- "$IL_DIR/containers/$1.pid.tmp" "$IL_DIR/containers/$1.pid"
}
# il_run NAME FUNCTION POLICY [CLEANUP] runs a container, recording its start,
# output and exit code, then CLEANUP. POLICY tells whether it starts again:
# Never, OnFailure (after a non-zero exit code) or Always, unless the pod is
# being deleted (containers/%[1]s). Restarts back off as the kubelet's do:
# 10 s, doubled each time up to 5 min, 10 s again after a run of 10 min.
# NAME.exit is "CODE TIME", and "CODE TIME DUE SECONDS" when the container
# starts again at DUE; once restarted, NAME.started is "TIME COUNT CODE STARTED
# FINISHED": the restarts so far and how the previous run ended. The previous
# run's NAME.pid and NAME.probe (the prober's) become NAME.pid.last and
# NAME.probe.last.
il_run() {
	local base=$IL_DIR/containers/$1 code started ended last= backoff since delay=0 restarts=0
	while :; do
		rm -f -- "$base.exit" "$base.pid.last" "$base.probe.last"
		[[ ! -e $base.pid ]] || mv -f -- "$base.pid" "$base.pid.last"
		[[ ! -e $base.probe ]] || mv -f -- "$base.probe" "$base.probe.last"
		il_now
		started=$IL_NOW since=$SECONDS
		printf '%%s%%s\n' "$started" "$last" >"$base.started.tmp"
		mv -f "$base.started.tmp" "$base.started"
		# The helper's log mode prefixes each line with the time it was read, and
		# splits a line longer than 16 KiB into pieces, as the CRI does.
		"$2" 2>&1 | "$IL_ENVEXEC" log >>"$base.log"
		code=${PIPESTATUS[0]} backoff=
		if [[ ! -e $IL_DIR/containers/%[1]s && ( $3 == Always || ( $3 == OnFailure && $code != 0 ) ) ]]; then
			if ((delay == 0 || SECONDS - since >= 600)); then delay=10; else delay=$((delay * 2 < 300 ? delay * 2 : 300)); fi
			il_now "$delay"
			backoff=" $IL_NOW $delay"
		fi
		il_now
		ended=$IL_NOW
		printf '%%s %%s%%s\n' "$code" "$ended" "$backoff" >"$base.exit.tmp"
		mv -f "$base.exit.tmp" "$base.exit"
		[[ -z ${4-} ]] || "$4"
		[[ -n $backoff ]] || return "$code"
		sleep "$delay"
		[[ ! -e $IL_DIR/containers/%[1]s ]] || return "$code"
		restarts=$((restarts + 1)) last=" $restarts $code $started $ended"
	done
}
`, stoppingFile)
	if !b.cfg.SharedFS && len(files) > 0 {
		w("il_file() { mkdir -p -- \"$(dirname -- \"$IL_DATA/$2\")\" && base64 -d >\"$IL_DATA/$2\" && chmod \"$1\" \"$IL_DATA/$2\"; }\n")
		for _, f := range files {
			if f.Dir {
				w("mkdir -p -- \"$IL_DATA\"/%s\n", q(f.Path))
				continue
			}
			w("il_file %04o %s <<'IL_EOF'\n%s\nIL_EOF\n", f.Mode, q(f.Path), wrap(base64.StdEncoding.EncodeToString(f.Data), 76))
		}
	}
	if b.cfg.CommandPrefix != "" {
		w("# CommandPrefix (from the sidecar's config)\n%s\n", b.cfg.CommandPrefix)
	}
	if b.site.jobTemplate != nil {
		out, err := renderJobTemplate(b.site.jobTemplate, b)
		if err != nil {
			return "", err
		}
		w("# JobScriptTemplate (from the sidecar's config)\n%s\n", out)
	}
	if b.cfg.Tsocks {
		b.tsocks(&s, q, cmd)
	}
	if pre, ok := p.Annotations[AnnotationPreExec]; ok {
		if !b.cfg.AllowPreExec {
			return "", fmt.Errorf("annotation %s is refused: AllowPreExec is off in the sidecar's config", AnnotationPreExec)
		}
		w("# %s (allowed by AllowPreExec)\n%s\n", AnnotationPreExec, pre)
	}
	var mpi []string
	if f, ok := p.Annotations[AnnotationMPIFlags]; ok {
		flags, err := allowedWords(f, b.cfg.AllowedMPIFlags, "AllowedMPIFlags")
		if err == nil {
			err = b.need("MpiexecPath", "mpiexec")
		}
		if err != nil {
			return "", fmt.Errorf("annotation %s: %w", AnnotationMPIFlags, err)
		}
		mpi = append([]string{b.cfg.MpiexecPath}, flags...)
	}
	all := append(append([]*container{}, inits...), mains...)
	for i, c := range all {
		w("\n# container %s, image %s\n", c.name, q(c.image))
		w("il_c%d() {\n", i)
		if c.msgPath != "" {
			// A run's termination message is its own.
			w("\trm -f -- %s\n", cmd([]string{dataRef(path.Join(c.envDir, msgName))}))
		}
		if c.envDir != "" {
			// The container's own copy of the helper: runtimes that bind
			// read-write cannot let one pod change another's.
			w("\tcp -- \"$IL_ENVEXEC\" %s || return\n", cmd([]string{dataRef(path.Join(c.envDir, "envexec"))}))
		}
		steps := rt.commands(c, c.image)
		for j, step := range steps {
			switch step[0] {
			case stepReadImageConfig:
				w("%s", readImageConfig(cmd, step[1], step[2]))
				continue
			case stepMayFail:
				w("\t%s >/dev/null 2>&1\n", cmd(step[1:]))
				continue
			}
			if j == len(steps)-1 {
				// The runtime takes the shell's place (il_run runs this
				// function in a subshell): the run's pid is the runtime's.
				step = append(slices.Clone(mpi), b.bindBeneath(step, c.mounts)...)
				w("\til_pid %s || return\n\texec %s\n", q(c.name), cmd(step))
				break
			}
			w("\t%s || return\n", cmd(step))
		}
		w("}\n")
		if cl := rt.cleanup(c); len(cl) > 0 {
			w("il_c%d_cleanup() {\n", i)
			for _, step := range cl {
				w("\t%s >/dev/null 2>&1\n", cmd(step))
			}
			w("\treturn 0\n}\n")
		}
	}
	policy, err := restartPolicy(p.Spec.RestartPolicy)
	if err != nil {
		return "", err
	}
	// An init container that succeeded never runs again.
	initPolicy := policy
	if policy == corev1.RestartPolicyAlways {
		initPolicy = corev1.RestartPolicyOnFailure
	}
	run := func(c *container, i int, rp corev1.RestartPolicy) {
		w("il_run %s il_c%d %s", q(c.name), i, q(string(rp)))
		if rt.cleanup(c) != nil {
			w(" il_c%d_cleanup", i)
		}
	}
	b.proberScript(w, q, b.spec, inits, mains, b.grace)
	if policy == corev1.RestartPolicyNever {
		w("\n# Init containers run in order; the first that fails ends the job.\n")
	} else {
		w("\n# Init containers run in order, each started again until it succeeds.\n")
	}
	for i, c := range inits {
		run(c, i, initPolicy)
		if b.grace > 0 {
			// In the background: the shell runs its traps in wait only.
			w(" &\nwait $! || exit $?\n")
			continue
		}
		w(" || exit $?\n")
	}
	w("# Containers run side by side (restartPolicy %s); the job's exit code is the first non-zero one.\n", policy)
	w("il_pids=()\n")
	for j, c := range mains {
		run(c, len(inits)+j, policy)
		w(" &\nil_pids+=($!)\n")
	}
	w(`il_exit=0
for pid in "${il_pids[@]}"; do
	wait "$pid" || { code=$?; [[ $il_exit -eq 0 ]] && il_exit=$code; }
done
exit "$il_exit"
`)
	return s.String(), errors.Join(errs...)
}

// restartPolicy is the pod's restart policy, Always when unset (as the API
// server defaults it).
func restartPolicy(p corev1.RestartPolicy) (corev1.RestartPolicy, error) {
	switch p {
	case "":
		return corev1.RestartPolicyAlways, nil
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
		return p, nil
	}
	return "", fmt.Errorf("restartPolicy %q is not Always, OnFailure or Never", p)
}

// tsocks starts the SSH SOCKS tunnel to the login node and writes the
// tsocks configuration the containers read.
func (b *builder) tsocks(s *strings.Builder, q func(string) string, cmdline func([]string) string) {
	fmt.Fprintf(s, `# Tsocks: the containers' TCP goes through an SSH SOCKS tunnel to the login node.
for _ in 1 2 3 4 5; do
	IL_SOCKS_PORT=$((20000 + RANDOM %% 30000))
	%s -N -o BatchMode=yes -o ExitOnForwardFailure=yes -D 127.0.0.1:"$IL_SOCKS_PORT" %s &
	IL_SSH_PID=$!
	for _ in $(seq 50); do
		(exec 3<>/dev/tcp/127.0.0.1/"$IL_SOCKS_PORT") 2>/dev/null && break 2
		kill -0 "$IL_SSH_PID" 2>/dev/null || break
		sleep 0.2
	done
	kill "$IL_SSH_PID" 2>/dev/null; unset IL_SSH_PID
done
[[ -n ${IL_SSH_PID-} ]] || { printf 'interlink: the SSH tunnel to %%s did not start\n' %s >&2; exit 1; }
mkdir -p "$IL_DATA/tsocks"
printf 'server = 127.0.0.1\nserver_port = %%s\nserver_type = 5\n' "$IL_SOCKS_PORT" >"$IL_DATA/tsocks/tsocks.conf"
chmod 0755 "$IL_DATA/tsocks"; chmod 0644 "$IL_DATA/tsocks/tsocks.conf"
`, cmdline(append([]string{b.cfg.SSHPath}, b.cfg.SSHArgs...)), q(b.cfg.TsocksLoginNode), q(b.cfg.TsocksLoginNode))
}

// wrap breaks s into lines of n characters.
func wrap(s string, n int) string {
	var sb strings.Builder
	for len(s) > n {
		sb.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	sb.WriteString(s)
	return sb.String()
}
