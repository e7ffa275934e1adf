package slurm

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

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
