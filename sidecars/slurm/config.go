package slurm

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/observability/tracing"
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
// interlink.io/flavor annotation, or for pods requesting GPUs the first
// flavor with GPU set, or else DefaultFlavor.
type Flavor struct {
	Name string `json:"Name" doc:"Name used by the interlink.io/flavor annotation."`
	// CPU and Memory are used when the pod requests none.
	CPU       string   `json:"CPU" doc:"CPUs of a job whose pod requests none (a Kubernetes quantity)."`
	Memory    string   `json:"Memory" doc:"Memory of a job whose pod requests none (a Kubernetes quantity)."`
	GPU       bool     `json:"GPU" doc:"Chosen for pods that request GPUs when no flavor is named."`
	Partition string   `json:"Partition" doc:"Partition of the flavor's jobs."`
	Flags     []string `json:"Flags" doc:"Extra sbatch flags, one per item (e.g. --constraint=a100)."`
}

// Config configures the SLURM sidecar. Keys in the original's spelling keep
// working; new ones use the INTERLINK_SLURM_ prefix.
type Config struct {
	Listen                    string            `json:"Listen" env:"INTERLINK_SLURM_LISTEN" doc:"Unix socket path (starting with /, ~/ or unix://; mode 0660) or TCP address (host:port, which needs Auth) to serve on."`
	SidecarPort               string            `json:"SidecarPort" env:"SIDECARPORT" doc:"TCP port to serve on instead of Listen's socket (on Listen's host if Listen is host:port, else 127.0.0.1); TCP needs Auth (original key)."`
	Auth                      server.Auth       `json:"Auth" envPrefix:"INTERLINK_SLURM_AUTH_" doc:"How callers (interlink) authenticate on TCP: a token or a client certificate, or Insecure. A unix socket needs none: its mode (0660) admits the sidecar's account and the socket's group."`
	SbatchPath                string            `json:"SbatchPath" env:"SBATCHPATH" doc:"sbatch command (original key)."`
	ScancelPath               string            `json:"ScancelPath" env:"SCANCELPATH" doc:"scancel command (original key)."`
	SqueuePath                string            `json:"SqueuePath" env:"SQUEUEPATH" doc:"squeue command (original key)."`
	SinfoPath                 string            `json:"SinfoPath" env:"INTERLINK_SLURM_SINFO_PATH" doc:"sinfo command, for the free resources a ping reports."`
	SacctPath                 string            `json:"SacctPath" env:"INTERLINK_SLURM_SACCT_PATH" doc:"sacct command, asked when Accounting is on."`
	Accounting                bool              `json:"Accounting" env:"INTERLINK_SLURM_ACCOUNTING" doc:"Ask sacct (one call per poll) for jobs squeue no longer lists."`
	SacctArgs                 []string          `json:"SacctArgs" env:"INTERLINK_SLURM_SACCT_ARGS" doc:"Extra sacct arguments (e.g. -c to read a jobcomp file)."`
	CommandTimeout            config.Duration   `json:"CommandTimeout" env:"INTERLINK_SLURM_COMMAND_TIMEOUT" doc:"Time limit of each Slurm command."`
	CommandPrefix             string            `json:"CommandPrefix" env:"COMMANDPREFIX" doc:"Shell run at the start of every job script, before the containers (original key; trusted: it comes from the operator)."`
	ExportPodData             bool              `json:"ExportPodData" env:"EXPORTPODDATA" doc:"Deliver ConfigMaps, Secrets, projected volumes and emptyDirs to the containers (original key)."`
	DataRootFolder            string            `json:"DataRootFolder" env:"DATAROOTFOLDER" doc:"Directory of the per-pod directories (scripts, logs, pod data); must be visible from the compute nodes unless SharedFS is off (original key)."`
	SharedFS                  bool              `json:"SharedFS" env:"SHARED_FS" doc:"Compute nodes share DataRootFolder. Off: pod data is embedded in the job script and written to node-local storage."`
	StatePath                 string            `json:"StatePath" env:"INTERLINK_SLURM_STATE_PATH" doc:"bbolt file mapping pod UIDs to jobs, so a restart recovers every job."`
	Runtime                   string            `json:"Runtime" env:"INTERLINK_SLURM_RUNTIME" doc:"Default container runtime: singularity, apptainer, enroot, charliecloud or podman (a pod chooses with interlink.io/runtime)."`
	SingularityPath           string            `json:"SingularityPath" env:"INTERLINK_SLURM_SINGULARITY_PATH" doc:"singularity command."`
	ApptainerPath             string            `json:"ApptainerPath" env:"INTERLINK_SLURM_APPTAINER_PATH" doc:"apptainer command."`
	EnrootPath                string            `json:"EnrootPath" env:"INTERLINK_SLURM_ENROOT_PATH" doc:"enroot command."`
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
	Flavors                   []Flavor          `json:"Flavors" doc:"Named presets of job resources and flags (YAML only)."`
	DefaultFlavor             string            `json:"DefaultFlavor" env:"INTERLINK_SLURM_DEFAULT_FLAVOR" doc:"Flavor of pods that name none and request no GPU."`
	AllowPreExec              bool              `json:"AllowPreExec" env:"INTERLINK_SLURM_ALLOW_PRE_EXEC" doc:"Run the shell of the slurm-job.vk.io/pre-exec annotation in the job. Off by default: whoever can create a pod on the node would run shell on the cluster outside any container."`
	AllowedHostPaths          []string          `json:"AllowedHostPaths" env:"INTERLINK_SLURM_ALLOWED_HOST_PATHS" doc:"Directories that hostPath volumes and the binds of slurm-job.vk.io/singularity-mounts may use (none by default)."`
	AllowedRuntimes           []string          `json:"AllowedRuntimes" env:"INTERLINK_SLURM_ALLOWED_RUNTIMES" doc:"Runtimes a pod may choose with interlink.io/runtime besides Runtime (none by default)."`
	AllowedSbatchFlags        []string          `json:"AllowedSbatchFlags" env:"INTERLINK_SLURM_ALLOWED_SBATCH_FLAGS" doc:"sbatch options a pod may give in slurm-job.vk.io/flags: --name (a flag), --name= (with a value), -x, -x= (docs/security.md). The default names no path or program and changes nothing sbatch prints."`
	AllowedMPIFlags           []string          `json:"AllowedMPIFlags" env:"INTERLINK_SLURM_ALLOWED_MPI_FLAGS" doc:"mpiexec options a pod may give in slurm-job.vk.io/mpi-flags, written as AllowedSbatchFlags (none by default: the annotation is refused)."`
	AllowedSingularityOptions []string          `json:"AllowedSingularityOptions" env:"INTERLINK_SLURM_ALLOWED_SINGULARITY_OPTIONS" doc:"singularity/apptainer options a pod may give in slurm-job.vk.io/singularity-options, written as AllowedSbatchFlags."`
	AllowedImageRoots         []string          `json:"AllowedImageRoots" env:"INTERLINK_SLURM_ALLOWED_IMAGE_ROOTS" doc:"Directories a pod may name in slurm-job.vk.io/image-root besides ImageRoot (none by default)."`
	EnvExecPath               string            `json:"EnvExecPath" env:"INTERLINK_SLURM_ENVEXEC_PATH" doc:"The interlink-envexec helper, which sets a container's env inside the container (empty: beside the sidecar's executable, then on PATH). With SharedFS it is copied into DataRootFolder."`
	JobEnv                    map[string]string `json:"JobEnv" env:"INTERLINK_SLURM_JOB_ENV" doc:"Environment given to sbatch beside PATH, HOME, USER, LANG, TMPDIR and SLURM_CONF; the sidecar's own environment is never passed to jobs."`
	Tsocks                    bool              `json:"Tsocks" env:"TSOCKS" doc:"Route the containers' TCP connections through an SSH SOCKS tunnel to TsocksLoginNode (original key)."`
	TsocksPath                string            `json:"TsocksPath" env:"TSOCKSPATH" doc:"Path of libtsocks.so on the compute nodes (original key)."`
	TsocksLoginNode           string            `json:"TsocksLoginNode" env:"TSOCKSLOGINNODE" doc:"SSH destination of the tunnel: a host or user@host reachable from the compute nodes without a password (original key)."`
	SSHPath                   string            `json:"SSHPath" env:"INTERLINK_SLURM_SSH_PATH" doc:"ssh command of the tunnel."`
	SSHArgs                   []string          `json:"SSHArgs" env:"INTERLINK_SLURM_SSH_ARGS" doc:"Extra ssh arguments of the tunnel (e.g. -F /path/ssh_config or -i KEY)."`
	LogPollInterval           config.Duration   `json:"LogPollInterval" env:"INTERLINK_SLURM_LOG_POLL_INTERVAL" doc:"How often a followed log is read."`
	MaxBodyBytes              int64             `json:"MaxBodyBytes" env:"INTERLINK_SLURM_MAX_BODY_BYTES" doc:"Request bodies larger than this are refused with 413."`
	LogFormat                 string            `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing                   tracing.Config    `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`
	LogLevel                  string            `json:"LogLevel" env:"INTERLINK_LOG_LEVEL" doc:"Log level: debug, info, warn or error."`
	VerboseLogging            bool              `json:"VerboseLogging" env:"VERBOSELOGGING" doc:"Log at debug level (original key)."`
	ErrorsOnlyLogging         bool              `json:"ErrorsOnlyLogging" env:"ERRORSONLYLOGGING" doc:"Log errors only (original key)."`
}

// LogSettings implements cli.Config.
func (c *Config) LogSettings() (format, level string) {
	return c.LogFormat, logging.LevelOr(c.LogLevel, c.VerboseLogging, c.ErrorsOnlyLogging)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:                    DefaultListen,
		SbatchPath:                "sbatch",
		ScancelPath:               "scancel",
		SqueuePath:                "squeue",
		SinfoPath:                 "sinfo",
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
		ChRunPath:                 "ch-run",
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
		Tracing:                   tracing.DefaultConfig(),
		LogFormat:                 "json",
		LogLevel:                  "info",
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

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if addr, err := server.SidecarListen(c.Listen, c.SidecarPort); c.Listen == "" {
		errs = append(errs, errors.New("Listen is empty"))
	} else if err != nil {
		errs = append(errs, err)
	} else if err := c.Auth.Validate(addr, "INTERLINK_SLURM_AUTH_"); err != nil {
		errs = append(errs, err)
	}
	for name, p := range map[string]string{"SbatchPath": c.SbatchPath, "ScancelPath": c.ScancelPath, "SqueuePath": c.SqueuePath} {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	for name, p := range map[string]string{"DataRootFolder": c.DataRootFolder, "StatePath": c.StatePath} {
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
	for name, v := range map[string]string{"Partition": c.Partition, "Account": c.Account, "QOS": c.QOS} {
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
		for field, q := range map[string]string{"CPU": f.CPU, "Memory": f.Memory} {
			if _, err := resource.ParseQuantity(q); q != "" && err != nil {
				errs = append(errs, fmt.Errorf("Flavors[%d].%s %q is not a quantity: %w", i, field, q, err))
			}
		}
		if err := checkSlurmName(f.Partition); f.Partition != "" && err != nil {
			errs = append(errs, fmt.Errorf("Flavors[%d].Partition: %w", i, err))
		}
		if err := checkFlags(f.Flags); err != nil {
			errs = append(errs, fmt.Errorf("Flavors[%d].Flags: %w", i, err))
		}
	}
	if c.DefaultFlavor != "" && !names[c.DefaultFlavor] {
		errs = append(errs, fmt.Errorf("DefaultFlavor %q is not one of Flavors", c.DefaultFlavor))
	}
	for key, paths := range map[string][]string{"AllowedHostPaths": c.AllowedHostPaths, "AllowedImageRoots": c.AllowedImageRoots} {
		for _, p := range paths {
			if !filepath.IsAbs(p) || strings.ContainsAny(p, ":,\n") {
				errs = append(errs, fmt.Errorf("%s: %q is not an absolute path without ':', ',' or a newline", key, p))
			}
		}
	}
	for _, r := range c.AllowedRuntimes {
		if !slices.Contains(runtimes, r) {
			errs = append(errs, fmt.Errorf("AllowedRuntimes: %q: want one of %s", r, strings.Join(runtimes, ", ")))
		}
	}
	for key, list := range map[string][]string{"AllowedSbatchFlags": c.AllowedSbatchFlags, "AllowedMPIFlags": c.AllowedMPIFlags, "AllowedSingularityOptions": c.AllowedSingularityOptions} {
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
