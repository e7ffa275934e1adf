package slurm

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
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
	if b.parts, err = b.scriptParts(); err != nil {
		return nil, invalid(err)
	}
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
	// parts are what the job script holds besides the containers, checked
	// (scriptParts).
	parts scriptParts
}

// scriptParts are what the pod and the site add to the job script besides
// the containers.
type scriptParts struct {
	// jobTemplate is the site's JobScriptTemplate rendered for the pod,
	// nil without one.
	jobTemplate *string
	// preExec is the pod's pre-exec annotation (AllowPreExec), nil
	// without one.
	preExec *string
	// mpi is mpiexec and the flags of the pod's mpi-flags annotation
	// (AllowedMPIFlags), nil without one: each container's runtime runs
	// under it.
	mpi []string
	// policy is the pod's restart policy (restartPolicy).
	policy corev1.RestartPolicy
}

// scriptParts renders the site's template for the pod, and checks its
// pre-exec annotation, its MPI flags and its restart policy, in that order:
// the first refusal is the one the user sees.
func (b *builder) scriptParts() (scriptParts, error) {
	var sp scriptParts
	p := b.pod
	if b.site.jobTemplate != nil {
		out, err := renderJobTemplate(b.site.jobTemplate, b)
		if err != nil {
			return sp, err
		}
		sp.jobTemplate = &out
	}
	if pre, ok := p.Annotations[AnnotationPreExec]; ok {
		if !b.cfg.AllowPreExec {
			return sp, fmt.Errorf("annotation %s is refused: AllowPreExec is off in the sidecar's config", AnnotationPreExec)
		}
		sp.preExec = &pre
	}
	if f, ok := p.Annotations[AnnotationMPIFlags]; ok {
		flags, err := allowedWords(f, b.cfg.AllowedMPIFlags, "AllowedMPIFlags")
		if err == nil {
			err = b.need("MpiexecPath", "mpiexec")
		}
		if err != nil {
			return sp, fmt.Errorf("annotation %s: %w", AnnotationMPIFlags, err)
		}
		sp.mpi = append([]string{b.cfg.MpiexecPath}, flags...)
	}
	var err error
	if sp.policy, err = restartPolicy(p.Spec.RestartPolicy); err != nil {
		return sp, err
	}
	return sp, nil
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
