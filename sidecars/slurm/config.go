package slurm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/sidecars/serve"
)

// Defaults of Config.
const (
	// DefaultListen is the sidecar's unix socket (its directory is created
	// 0700 when missing): only the sidecar's account and the socket's group
	// reach it. SidecarPort (the original SLURM plugin's port was 4001)
	// selects TCP instead, which needs a credential (Auth).
	DefaultListen = "~/.local/interlink/slurm.sock"
	// DefaultDataRootFolder holds one directory per pod (the original's
	// default, under the sidecar user's home).
	DefaultDataRootFolder = "~/.local/interlink/jobs"
	// DefaultStatePath is the bbolt file mapping pod UIDs to jobs.
	DefaultStatePath = "~/.local/interlink/slurm-state.db"
	// DefaultRuntime runs containers with Singularity, as the original.
	DefaultRuntime = RuntimeSingularity
	// DefaultCommandTimeout bounds each sbatch, squeue, scancel, sacct or
	// sinfo call.
	DefaultCommandTimeout = 30 * time.Second
	// DefaultLogPollInterval is how often a followed log file is read.
	DefaultLogPollInterval = 250 * time.Millisecond
	// DefaultBashPath is the job script's interpreter.
	DefaultBashPath = "/bin/bash"
	// DefaultImagePrefix turns an image reference into a URI Singularity,
	// Apptainer and Enroot pull from.
	DefaultImagePrefix = "docker://"
)

// Container runtimes.
const (
	RuntimeSingularity  = "singularity"
	RuntimeApptainer    = "apptainer"
	RuntimeEnroot       = "enroot"
	RuntimeCharliecloud = "charliecloud"
	RuntimePodman       = "podman"
)

var runtimes = []string{RuntimeSingularity, RuntimeApptainer, RuntimeEnroot, RuntimeCharliecloud, RuntimePodman}

// Flavor is a named preset of job resources and flags, chosen by the
// interlink.io/flavor (or slurm-job.vk.io/flavor) annotation, or for pods
// requesting GPUs a GPU flavor (selectFlavor), or else DefaultFlavor. The
// original SLURM plugin's keys (CPUDefault, MemoryDefault, UID, SlurmFlags)
// are read beside ours.
type Flavor struct {
	Name        string `json:"Name" doc:"Name used by the flavor annotations. In the original's map form the map key is the name."`
	Description string `json:"Description" doc:"Free text (original key)."`
	// CPU and Memory are used when the pod requests none.
	CPU           string   `json:"CPU" doc:"CPUs of a job whose pod requests none (a Kubernetes quantity)."`
	Memory        string   `json:"Memory" doc:"Memory of a job whose pod requests none (a Kubernetes quantity)."`
	CPUDefault    int64    `json:"CPUDefault" doc:"The original's CPU: whole CPUs of a job whose pod requests none."`
	MemoryDefault string   `json:"MemoryDefault" doc:"The original's Memory: 16G, 32000M, 1024K (G, M, K powers of 1024, an optional B) or bytes."`
	GPU           bool     `json:"GPU" doc:"Chosen for pods that request GPUs when no flavor is named."`
	Partition     string   `json:"Partition" doc:"Partition of the flavor's jobs."`
	Flags         []string `json:"Flags" doc:"Extra sbatch flags, one per item (e.g. --constraint=a100)."`
	SlurmFlags    []string `json:"SlurmFlags" doc:"The original's Flags: sbatch options, read as shell words (as on an #SBATCH line); an option and its value as two words (\"--time 01:00:00\") is taken as --time=01:00:00, and an item may hold several options (\"--nodes 1 --ntasks 4\")."`
	UID           *int64   `json:"UID" doc:"sbatch --uid of the flavor's pods that set no runAsUser (original key); must be within AllowedUIDs, and not a uid NamespaceUIDs gives to a namespace."`
}

// Flavors is the list of flavors. In YAML it is a list (ours) or, as the
// original SLURM plugin writes it, a map from name to flavor, taken in the
// order of its names.
type Flavors []Flavor

// UnmarshalJSON reads a list or a map of flavors.
func (f *Flavors) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var m map[string]Flavor
		if err := json.Unmarshal(t, &m); err != nil {
			return fmt.Errorf("flavors: %w", err)
		}
		out := make(Flavors, 0, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fl := m[k]
			fl.Name = k // the original looks flavors up by key; its Name is a label
			out = append(out, fl)
		}
		*f = out
		return nil
	}
	var l []Flavor
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("flavors: want a list or a map of flavors: %w", err)
	}
	*f = l
	return nil
}

// cpu is the flavor's default CPU (zero when it sets none).
func (f *Flavor) cpu() (resource.Quantity, error) {
	switch {
	case f.CPU != "" && f.CPUDefault != 0:
		return resource.Quantity{}, errors.New("CPU and CPUDefault are both set: set one")
	case f.CPUDefault < 0:
		return resource.Quantity{}, fmt.Errorf("CPUDefault %d is negative", f.CPUDefault)
	case f.CPUDefault > 0:
		return *resource.NewQuantity(f.CPUDefault, resource.DecimalSI), nil
	case f.CPU != "":
		q, err := resource.ParseQuantity(f.CPU)
		if err != nil {
			return q, fmt.Errorf("CPU %q is not a quantity: %w", f.CPU, err)
		}
		return q, nil
	}
	return resource.Quantity{}, nil
}

// memory is the flavor's default memory (zero when it sets none).
func (f *Flavor) memory() (resource.Quantity, error) {
	switch {
	case f.Memory != "" && f.MemoryDefault != "":
		return resource.Quantity{}, errors.New("Memory and MemoryDefault are both set: set one")
	case f.MemoryDefault != "":
		n, err := parseMemory(f.MemoryDefault)
		if err != nil {
			return resource.Quantity{}, fmt.Errorf("MemoryDefault: %w", err)
		}
		return *resource.NewQuantity(n, resource.BinarySI), nil
	case f.Memory != "":
		q, err := resource.ParseQuantity(f.Memory)
		if err != nil {
			return q, fmt.Errorf("Memory %q is not a quantity: %w", f.Memory, err)
		}
		return q, nil
	}
	return resource.Quantity{}, nil
}

// flags are the flavor's sbatch options: Flags, then SlurmFlags, each item
// read as shell words as sbatch reads an #SBATCH line, so it may hold
// several options; an option and its value in two words ("--name value",
// "-x value") are joined into one (--name=value, -xvalue). Every option is
// then checked.
func (f *Flavor) flags() ([]string, error) {
	out := slices.Clone(f.Flags)
	for _, fl := range f.SlurmFlags {
		w, err := words(fl)
		if err != nil {
			return nil, fmt.Errorf("SlurmFlags: %w", err)
		}
		for i := 0; i < len(w); i++ {
			o := w[i]
			if i+1 < len(w) && optionValue(w[i+1]) {
				switch {
				case strings.HasPrefix(o, "--") && len(o) > 2 && !strings.Contains(o, "="):
					o += "=" + w[i+1]
					i++
				case len(o) == 2 && o[0] == '-' && strings.ContainsRune(shortWithArg, rune(o[1])):
					o += w[i+1]
					i++
				}
			}
			out = append(out, o)
		}
	}
	if err := checkFlags(out); err != nil {
		return nil, fmt.Errorf("%w (in Flags or SlurmFlags)", err)
	}
	return out, nil
}

// optionValue tells whether a word after an option is its value: not an
// option itself (a negative number is a value).
func optionValue(w string) bool {
	return !strings.HasPrefix(w, "-") || len(w) > 1 && w[1] >= '0' && w[1] <= '9'
}

// parseMemory reads the original's MemoryDefault: a whole number of bytes,
// or of K, M or G (powers of 1024, with an optional B, any case).
func parseMemory(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"G", 1 << 30}, {"MB", 1 << 20}, {"M", 1 << 20}, {"KB", 1 << 10}, {"K", 1 << 10}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a whole number of bytes, or of K, M or G (e.g. 16G)", s)
	}
	return n * mult, nil
}

// Config configures the SLURM sidecar. Keys in the original's spelling keep
// working; new ones use the INTERLINK_SLURM_ prefix.
type Config struct {
	Listen                    string            `json:"Listen" env:"INTERLINK_SLURM_LISTEN" doc:"Unix socket path (starting with /, ~/ or unix://; mode 0660) or TCP address (host:port, which needs Auth) to serve on."`
	SidecarPort               string            `json:"SidecarPort" env:"SIDECARPORT" doc:"TCP port to serve on instead of Listen's socket (on Listen's host if Listen is host:port, else 127.0.0.1); TCP needs Auth (original key)."`
	Auth                      server.Auth       `json:"Auth" envPrefix:"INTERLINK_SLURM_AUTH_" doc:"How callers (interlink) authenticate on TCP: a token or a client certificate, or Insecure. A unix socket needs none: its mode (0660) admits the sidecar's account and the socket's group."`
	SbatchPath                string            `json:"SbatchPath" env:"SBATCHPATH" doc:"sbatch command (original key)."`
	ScancelPath               string            `json:"ScancelPath" env:"SCANCELPATH" doc:"scancel command (original key)."`
	SrunPath                  string            `json:"SrunPath" env:"INTERLINK_SLURM_SRUN_PATH" doc:"srun command, with which kubectl exec reaches a running job's node (srun --overlap --jobid) and enters the container there with interlink-prober."`
	SqueuePath                string            `json:"SqueuePath" env:"SQUEUEPATH" doc:"squeue command (original key)."`
	Socket                    string            `json:"Socket" doc:"unix:///path: serve on that unix socket, as Listen; SidecarPort is then unused, as in the original (original key)."`
	SinfoPath                 string            `json:"SinfoPath" env:"SINFOPATH" doc:"sinfo command, for the free resources a ping reports (original key)."`
	PortForwardVia            string            `json:"PortForwardVia" env:"INTERLINK_SLURM_PORT_FORWARD_VIA" doc:"How kubectl port-forward reaches a pod's port: node (the sidecar connects to the job's node, at its NodeAddr) or job (tunneled through the job with srun --overlap and interlink-prober, for sites whose compute nodes the sidecar's host cannot reach). Either way only a TCP containerPort the pod declared is forwarded: the pods share their node's network."`
	ResourceScriptPath        string            `json:"ResourceScriptPath" env:"INTERLINK_SLURM_RESOURCE_SCRIPT_PATH" doc:"Program (absolute path) whose standard output, a ping reply in JSON ({\"resources\": {\"cpu\": ..., \"memory\": ...}}), gives the resources a ping reports instead of sinfo (original key). Run without arguments, with the jobs' environment, within CommandTimeout; at most 1 MiB of output is read."`
	Taints                    []api.Taint       `json:"Taints" doc:"Taints ({Key, Value, Effect}) every ping reply asks the virtual node to carry, replacing its non-system taints (original key)."`
	SacctPath                 string            `json:"SacctPath" env:"INTERLINK_SLURM_SACCT_PATH" doc:"sacct command, asked when Accounting is on."`
	Accounting                bool              `json:"Accounting" env:"INTERLINK_SLURM_ACCOUNTING" doc:"Ask sacct (one call per poll) for jobs squeue no longer lists."`
	SacctArgs                 []string          `json:"SacctArgs" env:"INTERLINK_SLURM_SACCT_ARGS" doc:"Extra sacct arguments (e.g. -c to read a jobcomp file)."`
	CommandTimeout            config.Duration   `json:"CommandTimeout" env:"INTERLINK_SLURM_COMMAND_TIMEOUT" doc:"Time limit of each Slurm command."`
	CommandPrefix             string            `json:"CommandPrefix" env:"COMMANDPREFIX" doc:"Shell run at the start of every job script, before the containers (original key; trusted: it comes from the operator)."`
	JobScriptTemplate         string            `json:"JobScriptTemplate" env:"INTERLINK_SLURM_JOB_SCRIPT_TEMPLATE" doc:"File of a Go text/template whose output every job script runs after CommandPrefix, before the containers (the site's job-script template; trusted). It reads the pod as data: .Namespace, .Name, .UID, .Labels, .Annotations (maps), .InitContainers and .Containers (each .Name, .Image), .Dir (the pod's directory) and .JobUID (sbatch --uid, or -1); every string prints as one quoted shell word. Parsed at start; a pod carrying a job script from interlink (the original's JobScriptTemplate on interLink's side) is refused."`
	ExportPodData             bool              `json:"ExportPodData" env:"EXPORTPODDATA" doc:"Deliver ConfigMaps, Secrets, projected volumes and emptyDirs to the containers (original key)."`
	DataRootFolder            string            `json:"DataRootFolder" env:"DATAROOTFOLDER" doc:"Directory of the per-pod directories (scripts, logs, pod data); must be visible from the compute nodes unless SharedFS is off (original key)."`
	SharedFS                  bool              `json:"SharedFS" env:"SHARED_FS" doc:"Compute nodes share DataRootFolder. Off: pod data is embedded in the job script and written to node-local storage."`
	StatePath                 string            `json:"StatePath" env:"INTERLINK_SLURM_STATE_PATH" doc:"bbolt file mapping pod UIDs to jobs, so a restart recovers every job."`
	Runtime                   string            `json:"Runtime" env:"INTERLINK_SLURM_RUNTIME" doc:"Default container runtime: singularity, apptainer, enroot, charliecloud or podman (a pod chooses with interlink.io/runtime)."`
	ContainerRuntime          string            `json:"ContainerRuntime" doc:"The original's Runtime: singularity or enroot (or another of Runtime's values); it sets Runtime, and a different Runtime beside it is refused (original key)."`
	BashPath                  string            `json:"BashPath" env:"INTERLINK_SLURM_BASH_PATH" doc:"bash of the compute nodes, the job script's #! line (original key)."`
	SingularityPath           string            `json:"SingularityPath" env:"SINGULARITYPATH" doc:"singularity command (original key)."`
	SingularityPrefix         string            `json:"SingularityPrefix" doc:"No effect (nor in the original): accepted with a warning."`
	ApptainerPath             string            `json:"ApptainerPath" env:"INTERLINK_SLURM_APPTAINER_PATH" doc:"apptainer command."`
	EnrootPath                string            `json:"EnrootPath" env:"INTERLINK_SLURM_ENROOT_PATH" doc:"enroot command (original key)."`
	EnrootDefaultOptions      []string          `json:"EnrootDefaultOptions" env:"INTERLINK_SLURM_ENROOT_OPTIONS" doc:"Options of every enroot start (original key; the operator's, so any option)."`
	EnrootPrefix              string            `json:"EnrootPrefix" doc:"No effect (nor in the original): accepted with a warning."`
	ChRunPath                 string            `json:"ChRunPath" env:"INTERLINK_SLURM_CH_RUN_PATH" doc:"Charliecloud's ch-run command."`
	PodmanPath                string            `json:"PodmanPath" env:"INTERLINK_SLURM_PODMAN_PATH" doc:"podman command."`
	PodmanLocalStorage        bool              `json:"PodmanLocalStorage" env:"INTERLINK_SLURM_PODMAN_LOCAL_STORAGE" doc:"The sidecar's host sees the podman image storage the jobs use (one machine, or storage shared with the compute nodes, with the same podman config: give it to both through JobEnv, e.g. CONTAINERS_CONF and CONTAINERS_STORAGE_CONF). The sidecar then checks each image at create (podman image exists, then podman pull unless imagePullPolicy is Never) and refuses one it cannot get as ImageNotFound (the pod waits in ErrImagePull/ImagePullBackOff), and removes a deleted pod's containers left by a killed job. Off: the job pulls a missing image, and fails if it cannot."`
	MpiexecPath               string            `json:"MpiexecPath" env:"INTERLINK_SLURM_MPIEXEC_PATH" doc:"mpiexec command, for pods with the slurm-job.vk.io/mpi-flags annotation."`
	SingularityDefaultOptions []string          `json:"SingularityDefaultOptions" env:"INTERLINK_SLURM_SINGULARITY_OPTIONS" doc:"Options of every singularity/apptainer exec (original key). Where jobs run as root without every capability (containers, some clusters), add --userns (docs/slurm.md)."`
	ImagePrefix               string            `json:"ImagePrefix" env:"INTERLINK_SLURM_IMAGE_PREFIX" doc:"Prefix turning an image reference into a URI for Singularity, Apptainer and Enroot (original key)."`
	ImageRoot                 string            `json:"ImageRoot" env:"INTERLINK_SLURM_IMAGE_ROOT" doc:"Directory of local images: image directories (ch-image storage or a directory of images; Charliecloud and Apptainer/Singularity find a reference there as Docker normalizes it, and apply the image's config) and SIF files (a path ending in .sif). Charliecloud images are always looked up there."`
	Partition                 string            `json:"Partition" env:"INTERLINK_SLURM_PARTITION" doc:"Default partition (a pod chooses with interlink.io/partition)."`
	Account                   string            `json:"Account" env:"INTERLINK_SLURM_ACCOUNT" doc:"Default account (a pod chooses with interlink.io/account)."`
	QOS                       string            `json:"QOS" env:"INTERLINK_SLURM_QOS" doc:"Default QOS (a pod chooses with interlink.io/qos)."`
	GPUFlag                   string            `json:"GPUFlag" env:"INTERLINK_SLURM_GPU_FLAG" doc:"How GPUs are asked of Slurm: gres (--gres=gpu:N) or gpus (--gpus=N)."`
	Flavors                   Flavors           `json:"Flavors" doc:"Named presets of job resources and flags (YAML only): a list, or the original's map from name to flavor."`
	DefaultFlavor             string            `json:"DefaultFlavor" env:"INTERLINK_SLURM_DEFAULT_FLAVOR" doc:"Flavor of pods that name none and request no GPU."`
	AllowPreExec              bool              `json:"AllowPreExec" env:"INTERLINK_SLURM_ALLOW_PRE_EXEC" doc:"Run the shell of the slurm-job.vk.io/pre-exec annotation in the job. Off by default: whoever can create a pod on the node would run shell on the cluster outside any container."`
	AllowedHostPaths          []string          `json:"AllowedHostPaths" env:"INTERLINK_SLURM_ALLOWED_HOST_PATHS" doc:"Directories that hostPath volumes and the binds of slurm-job.vk.io/singularity-mounts may use (none by default)."`
	AllowedRuntimes           []string          `json:"AllowedRuntimes" env:"INTERLINK_SLURM_ALLOWED_RUNTIMES" doc:"Runtimes a pod may choose with interlink.io/runtime besides Runtime (none by default)."`
	AllowedSbatchFlags        []string          `json:"AllowedSbatchFlags" env:"INTERLINK_SLURM_ALLOWED_SBATCH_FLAGS" doc:"sbatch options a pod may give in slurm-job.vk.io/flags: --name (a flag), --name= (with a value), -x, -x= (docs/security.md). The default names no path or program and changes nothing sbatch prints."`
	AllowedMPIFlags           []string          `json:"AllowedMPIFlags" env:"INTERLINK_SLURM_ALLOWED_MPI_FLAGS" doc:"mpiexec options a pod may give in slurm-job.vk.io/mpi-flags, written as AllowedSbatchFlags (none by default: the annotation is refused)."`
	AllowedSingularityOptions []string          `json:"AllowedSingularityOptions" env:"INTERLINK_SLURM_ALLOWED_SINGULARITY_OPTIONS" doc:"singularity/apptainer options a pod may give in slurm-job.vk.io/singularity-options, written as AllowedSbatchFlags."`
	AllowedImageRoots         []string          `json:"AllowedImageRoots" env:"INTERLINK_SLURM_ALLOWED_IMAGE_ROOTS" doc:"What a pod may name in slurm-job.vk.io/image-root besides ImageRoot and ImagePrefix: directories, and URI prefixes (docker://, oras://ghcr.io/org/) put before the pod's images (none by default)."`
	AllowedEnrootOptions      []string          `json:"AllowedEnrootOptions" env:"INTERLINK_SLURM_ALLOWED_ENROOT_OPTIONS" doc:"enroot start options a pod may give in slurm-job.vk.io/enroot-options, written as AllowedSbatchFlags (none by default: the annotation is refused). Binds of slurm-job.vk.io/enroot-mounts need AllowedHostPaths."`
	DefaultUID                OptionalUID       `json:"DefaultUID" env:"INTERLINK_SLURM_DEFAULT_UID" doc:"sbatch --uid of pods that set no runAsUser and whose flavor sets no UID (original key); must be within AllowedUIDs, and not a uid NamespaceUIDs gives to a namespace (refused at start: it applies to every namespace)."`
	AllowedUIDs               []string          `json:"AllowedUIDs" env:"INTERLINK_SLURM_ALLOWED_UIDS" doc:"uids (1000, or ranges 1000-1999) jobs may run as with sbatch --uid: the pod's securityContext.runAsUser, else NamespaceUIDs, else its flavor's UID, else DefaultUID. Empty (the default): every job runs as the sidecar's account, and a runAsUser other than it is refused. Needs the sidecar to run as root; 0 only when listed. Set, every job needs a uid: a pod that names none (no runAsUser within AllowedUIDs, no NamespaceUIDs entry for its namespace, no flavor UID, no DefaultUID) is refused with a 400 rather than run as root."`
	NamespaceUIDs             map[string]int64  `json:"NamespaceUIDs" env:"INTERLINK_SLURM_NAMESPACE_UIDS" doc:"uid the pods of a namespace run as (namespace: uid), within AllowedUIDs: a pod there whose runAsUser differs is refused; flavor UIDs and DefaultUID do not apply there. A uid listed here belongs to its namespaces: a pod of another namespace asking for it (runAsUser or a flavor's UID) is refused with a 400, and DefaultUID or a flavor UID equal to it is refused at start."`
	EnvExecPath               string            `json:"EnvExecPath" env:"INTERLINK_SLURM_ENVEXEC_PATH" doc:"The interlink-envexec helper, which sets a container's env inside the container (empty: beside the sidecar's executable, then on PATH). With SharedFS it is copied into DataRootFolder."`
	ProberPath                string            `json:"ProberPath" env:"INTERLINK_SLURM_PROBER_PATH" doc:"The interlink-prober helper, which runs the probes and lifecycle hooks of a pod's containers in its job and samples their resource usage (kubectl top) (empty: beside the sidecar's executable, then on PATH; build it with CGO_ENABLED=0, as it runs on the compute nodes). With SharedFS it is copied into DataRootFolder. Without it, pods with probes or hooks are refused and pods report no usage."`
	NsenterPath               string            `json:"NsenterPath" env:"INTERLINK_SLURM_NSENTER_PATH" doc:"util-linux nsenter, with which the prober runs exec probes and hooks inside Charliecloud, Apptainer, Singularity and Enroot containers."`
	JobEnv                    map[string]string `json:"JobEnv" env:"INTERLINK_SLURM_JOB_ENV" doc:"Environment given to sbatch beside PATH, HOME, USER, LANG, TMPDIR and SLURM_CONF; the sidecar's own environment is never passed to jobs."`
	Tsocks                    bool              `json:"Tsocks" env:"TSOCKS" doc:"Route the containers' TCP connections through an SSH SOCKS tunnel to TsocksLoginNode (original key)."`
	TsocksPath                string            `json:"TsocksPath" env:"TSOCKSPATH" doc:"Path of libtsocks.so on the compute nodes (original key)."`
	TsocksLoginNode           string            `json:"TsocksLoginNode" env:"TSOCKSLOGINNODE" doc:"SSH destination of the tunnel: a host or user@host reachable from the compute nodes without a password (original key)."`
	SSHPath                   string            `json:"SSHPath" env:"INTERLINK_SLURM_SSH_PATH" doc:"ssh command of the tunnel."`
	SSHArgs                   []string          `json:"SSHArgs" env:"INTERLINK_SLURM_SSH_ARGS" doc:"Extra ssh arguments of the tunnel (e.g. -F /path/ssh_config or -i KEY)."`
	LogPollInterval           config.Duration   `json:"LogPollInterval" env:"INTERLINK_SLURM_LOG_POLL_INTERVAL" doc:"How often a followed log is read."`
	MaxBodyBytes              int64             `json:"MaxBodyBytes" env:"INTERLINK_SLURM_MAX_BODY_BYTES" doc:"Request bodies larger than this are refused with 413."`
	serve.Config
	VerboseLogging    bool   `json:"VerboseLogging" env:"VERBOSELOGGING" doc:"Log at debug level (original key)."`
	ErrorsOnlyLogging bool   `json:"ErrorsOnlyLogging" env:"ERRORSONLYLOGGING" doc:"Log errors only (original key)."`
	EnableProbes      bool   `json:"EnableProbes" doc:"No effect: probes and lifecycle hooks always run in the job (ProberPath); accepted with a warning when on (original key)."`
	VKConfigPath      string `json:"VKConfigPath" doc:"No effect (nor in the original): accepted with a warning."`
	Namespace         string `json:"Namespace" doc:"No effect (nor in the original): accepted with a warning."`
}

// geteuid is the sidecar's effective uid (a variable for tests).
var geteuid = os.Geteuid

// Warnings lists the original's keys that are accepted without effect.
func (c *Config) Warnings() []string {
	var out []string
	for key, set := range config.SortedByKey(map[string]bool{"SingularityPrefix": c.SingularityPrefix != "", "EnrootPrefix": c.EnrootPrefix != "",
		"VKConfigPath": c.VKConfigPath != "", "Namespace": c.Namespace != ""}) {
		if set {
			out = append(out, key+" has no effect (nor in the original SLURM plugin)")
		}
	}
	if c.EnableProbes {
		out = append(out, "EnableProbes has no effect: probes and lifecycle hooks always run in the job (ProberPath)")
	}
	slices.Sort(out)
	return out
}

// resolveOriginal turns the original SLURM plugin's keys into ours:
// ContainerRuntime into Runtime, Socket into Listen, a relative
// DataRootFolder into an absolute one (against the working directory, where
// the original created it). It can run more than once.
func (c *Config) resolveOriginal() []error {
	var errs []error
	if r := c.ContainerRuntime; r != "" {
		switch {
		case !slices.Contains(runtimes, r):
			errs = append(errs, fmt.Errorf("ContainerRuntime %q: want singularity or enroot (or one of %s)", r, strings.Join(runtimes, ", ")))
		case c.Runtime != DefaultRuntime && c.Runtime != r:
			errs = append(errs, fmt.Errorf("ContainerRuntime %q and Runtime %q disagree: set one of them", r, c.Runtime))
		default:
			c.Runtime = r
		}
	}
	if c.Socket != "" {
		p, ok := strings.CutPrefix(c.Socket, "unix://")
		switch {
		case !ok || !filepath.IsAbs(p):
			errs = append(errs, fmt.Errorf("Socket %q: want unix:///absolute/path (for TCP set SidecarPort, or Listen)", c.Socket))
		case c.Listen != DefaultListen && c.Listen != p:
			errs = append(errs, fmt.Errorf("Socket %q and Listen %q disagree: set one of them", c.Socket, c.Listen))
		default:
			// As the original: a unix Socket wins over SidecarPort.
			c.Listen, c.SidecarPort = p, ""
		}
	}
	if d := c.DataRootFolder; d != "" && !filepath.IsAbs(d) && !strings.HasPrefix(d, "~/") {
		abs, err := filepath.Abs(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("DataRootFolder %q: %w", d, err))
		} else {
			c.DataRootFolder = abs
		}
	}
	return errs
}

// uriPrefix is an image-root given as a URI prefix: a scheme, "://", then
// printable characters without blanks or quotes.
var uriPrefix = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*://[A-Za-z0-9._~/:@%+=-]*$`)

// OptionalUID is a uid that may be unset (absent, or null in YAML).
type OptionalUID struct {
	UID int64
	Set bool
}

// UID returns an OptionalUID holding uid.
func UID(uid int64) OptionalUID { return OptionalUID{UID: uid, Set: true} }

// UnmarshalJSON reads a number or null.
func (u *OptionalUID) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*u = OptionalUID{}
		return nil
	}
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("uid: want a whole number: %w", err)
	}
	*u = UID(v)
	return nil
}

// UnmarshalText reads a number (an environment variable).
func (u *OptionalUID) UnmarshalText(b []byte) error {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("uid %q: want a whole number", b)
	}
	*u = UID(v)
	return nil
}

// MarshalText writes the uid, or nothing when unset.
func (u OptionalUID) MarshalText() ([]byte, error) {
	if !u.Set {
		return nil, nil
	}
	return strconv.AppendInt(nil, u.UID, 10), nil
}

// uidRange is one entry of AllowedUIDs.
type uidRange struct{ lo, hi int64 }

func parseUIDRanges(list []string) ([]uidRange, error) {
	out := make([]uidRange, 0, len(list))
	for _, e := range list {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(e), "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.ParseInt(lo, 10, 64)
		b, err2 := strconv.ParseInt(hi, 10, 64)
		if err1 != nil || err2 != nil || a < 0 || b < a || b > math.MaxUint32-1 {
			return nil, fmt.Errorf("%q: want a uid (1000) or a range (1000-1999)", e)
		}
		out = append(out, uidRange{a, b})
	}
	return out, nil
}

// uidAllowed tells whether uid is within the ranges.
func uidAllowed(ranges []uidRange, uid int64) bool {
	return slices.ContainsFunc(ranges, func(r uidRange) bool { return uid >= r.lo && uid <= r.hi })
}

// checkUIDs checks the uid keys: every uid the config names is within
// AllowedUIDs, and the sidecar can pass sbatch --uid (it runs as root).
func (c *Config) checkUIDs() []error {
	var errs []error
	ranges, err := parseUIDRanges(c.AllowedUIDs)
	if err != nil {
		return []error{fmt.Errorf("AllowedUIDs: %w", err)}
	}
	check := func(key string, uid int64) {
		if !uidAllowed(ranges, uid) {
			errs = append(errs, fmt.Errorf("%s %d is not within AllowedUIDs: list it there to run jobs as that uid with sbatch --uid (the sidecar must run as root)", key, uid))
		}
	}
	// DefaultUID and flavor UIDs serve pods of every namespace: a uid
	// NamespaceUIDs gives to some namespaces only cannot be one of them.
	bound := func(key string, uid int64) {
		if ns := uidNamespaces(c.NamespaceUIDs, uid); len(ns) > 0 {
			errs = append(errs, fmt.Errorf("%s %d is the uid NamespaceUIDs gives to namespace %s: it would run other namespaces' pods as that tenant; choose another uid", key, uid, strings.Join(ns, ", ")))
		}
	}
	if c.DefaultUID.Set {
		check("DefaultUID", c.DefaultUID.UID)
		bound("DefaultUID", c.DefaultUID.UID)
	}
	for _, f := range c.Flavors {
		if f.UID != nil {
			check("Flavors["+f.Name+"].UID", *f.UID)
			bound("Flavors["+f.Name+"].UID", *f.UID)
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(c.NamespaceUIDs)) {
		check("NamespaceUIDs["+ns+"]", c.NamespaceUIDs[ns])
	}
	if euid := geteuid(); len(ranges) > 0 && euid != 0 {
		errs = append(errs, fmt.Errorf("AllowedUIDs: sbatch --uid needs the sidecar to run as root, and it runs as uid %d", euid))
	}
	return errs
}

// LogSettings implements cli.Config.
func (c *Config) LogSettings() (format, level string) {
	return c.LogFormat, logging.LevelOr(c.LogLevel, c.VerboseLogging, c.ErrorsOnlyLogging)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Config:                    serve.DefaultConfig(),
		Listen:                    DefaultListen,
		SbatchPath:                "sbatch",
		ScancelPath:               "scancel",
		SrunPath:                  "srun",
		SqueuePath:                "squeue",
		SinfoPath:                 "sinfo",
		PortForwardVia:            PortForwardViaNode,
		SacctPath:                 "sacct",
		CommandTimeout:            config.D(DefaultCommandTimeout),
		ExportPodData:             true,
		DataRootFolder:            DefaultDataRootFolder,
		SharedFS:                  true,
		StatePath:                 DefaultStatePath,
		Runtime:                   DefaultRuntime,
		SingularityPath:           "singularity",
		ApptainerPath:             "apptainer",
		EnrootPath:                "enroot",
		EnrootDefaultOptions:      []string{"--rw"},
		BashPath:                  DefaultBashPath,
		ChRunPath:                 "ch-run",
		NsenterPath:               "nsenter",
		PodmanPath:                "podman",
		MpiexecPath:               "mpiexec",
		SingularityDefaultOptions: []string{"--containall", "--no-home"},
		AllowedSbatchFlags:        slices.Clone(defaultSbatchFlags),
		AllowedSingularityOptions: slices.Clone(defaultSingularityOptions),
		ImagePrefix:               DefaultImagePrefix,
		GPUFlag:                   "gres",
		SSHPath:                   "ssh",
		LogPollInterval:           config.D(DefaultLogPollInterval),
		MaxBodyBytes:              64 << 20,
	}
}

// ListenAddr returns the address to serve on: Listen with ~/ expanded, or
// TCP on SidecarPort when that is set (see server.SidecarListen).
func (c *Config) ListenAddr() string {
	addr, err := server.SidecarListen(c.Listen, c.SidecarPort)
	if err != nil {
		return c.Listen // Validate reports it
	}
	return addr
}

var _ serve.Settings = (*Config)(nil)

// Serving implements serve.Settings.
func (c *Config) Serving() serve.Serving {
	return serve.Serving{Addr: c.ListenAddr(), Auth: &c.Auth, MaxBodyBytes: c.MaxBodyBytes}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	if _, err := loadJobTemplate(c.JobScriptTemplate); err != nil {
		return err
	}
	errs := c.resolveOriginal()
	errs = append(errs, c.checkUIDs()...)
	if c.PortForwardVia != PortForwardViaNode && c.PortForwardVia != PortForwardViaJob {
		errs = append(errs, fmt.Errorf("PortForwardVia %q: want %s or %s", c.PortForwardVia, PortForwardViaNode, PortForwardViaJob))
	}
	if addr, err := server.SidecarListen(c.Listen, c.SidecarPort); c.Listen == "" {
		errs = append(errs, errors.New("Listen is empty"))
	} else if err != nil {
		errs = append(errs, err)
	} else if err := c.Auth.Validate(addr, "INTERLINK_SLURM_AUTH_"); err != nil {
		errs = append(errs, err)
	}
	for name, p := range config.SortedByKey(map[string]string{"SbatchPath": c.SbatchPath, "ScancelPath": c.ScancelPath, "SqueuePath": c.SqueuePath}) {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	for name, p := range config.SortedByKey(map[string]string{"DataRootFolder": c.DataRootFolder, "StatePath": c.StatePath}) {
		switch abs, err := config.ExpandHome(p); {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		case !filepath.IsAbs(abs):
			errs = append(errs, fmt.Errorf("%s %q must be an absolute path (or start with ~/)", name, p))
		case strings.ContainsAny(abs, ":,\n"):
			errs = append(errs, fmt.Errorf("%s %q must not contain ':', ',' or a newline (they separate bind mounts)", name, p))
		}
	}
	if !slices.Contains(runtimes, c.Runtime) {
		errs = append(errs, fmt.Errorf("Runtime %q: want one of %s", c.Runtime, strings.Join(runtimes, ", ")))
	}
	if c.ImageRoot != "" && !filepath.IsAbs(c.ImageRoot) {
		errs = append(errs, fmt.Errorf("ImageRoot %q must be an absolute path", c.ImageRoot))
	}
	if c.GPUFlag != "gres" && c.GPUFlag != "gpus" {
		errs = append(errs, fmt.Errorf("GPUFlag %q: want gres or gpus", c.GPUFlag))
	}
	for name, v := range config.SortedByKey(map[string]string{"Partition": c.Partition, "Account": c.Account, "QOS": c.QOS}) {
		if err := checkSlurmName(v); v != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	names := map[string]bool{}
	for i, f := range c.Flavors {
		if f.Name == "" || names[f.Name] {
			errs = append(errs, fmt.Errorf("Flavors[%d]: the name %q is empty or used twice", i, f.Name))
		}
		names[f.Name] = true
		_, err1 := f.cpu()
		_, err2 := f.memory()
		_, err3 := f.flags()
		for _, err := range []error{err1, err2, err3} {
			if err != nil {
				errs = append(errs, fmt.Errorf("Flavors[%s]: %w", f.Name, err))
			}
		}
		if err := checkSlurmName(f.Partition); f.Partition != "" && err != nil {
			errs = append(errs, fmt.Errorf("Flavors[%d].Partition: %w", i, err))
		}
		if f.UID != nil && *f.UID < 0 {
			errs = append(errs, fmt.Errorf("Flavors[%s].UID %d is negative", f.Name, *f.UID))
		}
	}
	if c.DefaultUID.Set && c.DefaultUID.UID < 0 {
		errs = append(errs, fmt.Errorf("DefaultUID %d is negative", c.DefaultUID.UID))
	}
	for ns := range config.SortedByKey(c.NamespaceUIDs) {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("NamespaceUIDs: %q is not a namespace name", ns))
		}
	}
	for _, o := range c.EnrootDefaultOptions {
		if !strings.HasPrefix(o, "-") || strings.ContainsAny(o, "\n\x00") {
			errs = append(errs, fmt.Errorf("EnrootDefaultOptions: %q is not an option", o))
		}
	}
	if !filepath.IsAbs(c.BashPath) || strings.ContainsAny(c.BashPath, " \t\n\x00") {
		errs = append(errs, fmt.Errorf("BashPath %q must be an absolute path without blanks", c.BashPath))
	}
	if c.ResourceScriptPath != "" && !filepath.IsAbs(c.ResourceScriptPath) {
		errs = append(errs, fmt.Errorf("ResourceScriptPath %q must be an absolute path", c.ResourceScriptPath))
	}
	for _, t := range c.Taints {
		if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 || !slices.Contains([]string{"NoSchedule", "PreferNoSchedule", "NoExecute"}, t.Effect) {
			errs = append(errs, fmt.Errorf("Taints: {Key: %q, Effect: %q}: want a qualified key and NoSchedule, PreferNoSchedule or NoExecute", t.Key, t.Effect))
		}
	}
	if c.DefaultFlavor != "" && !names[c.DefaultFlavor] {
		errs = append(errs, fmt.Errorf("DefaultFlavor %q is not one of Flavors", c.DefaultFlavor))
	}
	for _, p := range c.AllowedHostPaths {
		if !filepath.IsAbs(p) || strings.ContainsAny(p, ":,\n") {
			errs = append(errs, fmt.Errorf("AllowedHostPaths: %q is not an absolute path without ':', ',' or a newline", p))
		}
	}
	for _, p := range c.AllowedImageRoots {
		if !uriPrefix.MatchString(p) && (!filepath.IsAbs(p) || strings.ContainsAny(p, ":,\n")) {
			errs = append(errs, fmt.Errorf("AllowedImageRoots: %q is neither an absolute path without ':', ',' or a newline, nor a URI prefix (docker://, oras://host/org/)", p))
		}
	}
	for _, r := range c.AllowedRuntimes {
		if !slices.Contains(runtimes, r) {
			errs = append(errs, fmt.Errorf("AllowedRuntimes: %q: want one of %s", r, strings.Join(runtimes, ", ")))
		}
	}
	for key, list := range config.SortedByKey(map[string][]string{"AllowedSbatchFlags": c.AllowedSbatchFlags, "AllowedMPIFlags": c.AllowedMPIFlags,
		"AllowedSingularityOptions": c.AllowedSingularityOptions, "AllowedEnrootOptions": c.AllowedEnrootOptions}) {
		allowed, err := parseAllowList(list)
		if err == nil && key == "AllowedSbatchFlags" {
			err = checkNeverSbatch(allowed)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if c.Tsocks && (!filepath.IsAbs(c.TsocksPath) || c.TsocksLoginNode == "" || strings.HasPrefix(c.TsocksLoginNode, "-")) {
		errs = append(errs, errors.New("Tsocks needs TsocksPath (absolute) and TsocksLoginNode (a host, not an option)"))
	}
	if c.CommandTimeout.Duration <= 0 || c.LogPollInterval.Duration <= 0 {
		errs = append(errs, errors.New("CommandTimeout and LogPollInterval must be positive"))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("MaxBodyBytes must be positive"))
	}
	return errors.Join(errs...)
}
