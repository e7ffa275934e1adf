package docker

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/logging"
	"github.com/seed-3f807049/interlink/observability/server"
	"github.com/seed-3f807049/interlink/sidecars/serve"
)

// Defaults of Config.
const (
	// DefaultListen is the sidecar's unix socket (its directory is created
	// 0700 when missing): only the sidecar's account and the socket's group
	// reach it. SidecarPort (the original Docker plugin's port was 4000)
	// selects TCP instead, which needs a credential (Auth).
	DefaultListen = "~/.local/interlink/docker.sock"
	// DefaultDockerHost is the Docker Engine's socket.
	DefaultDockerHost = "unix:///var/run/docker.sock"
	// DefaultDataRootFolder holds one directory of data per pod.
	DefaultDataRootFolder = "~/.local/interlink/docker"
	// DefaultPauseImage holds each pod's network namespace.
	DefaultPauseImage = "registry.k8s.io/pause:3.10"
	// DefaultGracePeriod is used for pods without terminationGracePeriodSeconds.
	DefaultGracePeriod = 30 * time.Second
	// DefaultAPITimeout bounds each Docker API call (pulls and log streams
	// excepted).
	DefaultAPITimeout = 30 * time.Second
	// DefaultPullTimeout bounds an image pull, which goes on in the
	// background when the create that started it gives up waiting.
	DefaultPullTimeout = 30 * time.Minute
)

// Config configures the Docker sidecar. Keys in the original's spelling
// keep working; new ones use the INTERLINK_DOCKER_ prefix.
type Config struct {
	Listen                 string          `json:"Listen" env:"INTERLINK_DOCKER_LISTEN" doc:"Unix socket path (starting with /, ~/ or unix://; mode 0660) or TCP address (host:port, which needs Auth) to serve on."`
	SidecarPort            string          `json:"SidecarPort" env:"SIDECARPORT" doc:"TCP port to serve on instead of Listen's socket (on Listen's host if Listen is host:port, else 127.0.0.1); TCP needs Auth (original key)."`
	Auth                   server.Auth     `json:"Auth" envPrefix:"INTERLINK_DOCKER_AUTH_" doc:"How callers (interlink) authenticate on TCP: a token or a client certificate, or Insecure. A unix socket needs none: its mode (0660) admits the sidecar's account and the socket's group."`
	DockerHost             string          `json:"DockerHost" env:"DOCKER_HOST" doc:"Docker Engine address: unix:///path, tcp://host:port."`
	DataRootFolder         string          `json:"DataRootFolder" env:"DATAROOTFOLDER" doc:"Directory of the per-pod data directories bound into the containers (original key)."`
	ExportPodData          bool            `json:"ExportPodData" env:"EXPORTPODDATA" doc:"Deliver ConfigMaps, Secrets, projected volumes and emptyDirs to the containers (original key)."`
	AllowedHostPaths       []string        `json:"AllowedHostPaths" env:"INTERLINK_DOCKER_ALLOWED_HOST_PATHS" doc:"Directories that hostPath volumes may bind (none by default)."`
	AllowPrivileged        bool            `json:"AllowPrivileged" env:"INTERLINK_DOCKER_ALLOW_PRIVILEGED" doc:"Let pods run privileged containers (securityContext.privileged: root on the Docker host, every device). Refused by default."`
	AllowHostNamespaces    bool            `json:"AllowHostNamespaces" env:"INTERLINK_DOCKER_ALLOW_HOST_NAMESPACES" doc:"Let pods join the Docker host's network, PID and IPC namespaces (hostNetwork, hostPID, hostIPC). Refused by default."`
	AllowedCapabilities    []string        `json:"AllowedCapabilities" env:"INTERLINK_DOCKER_ALLOWED_CAPABILITIES" doc:"Capabilities pods may add (securityContext.capabilities.add), named as in Kubernetes: NET_ADMIN, SYS_PTRACE; ALL allows any. None by default; dropping capabilities is always allowed."`
	AllowUnconfinedSeccomp bool            `json:"AllowUnconfinedSeccomp" env:"INTERLINK_DOCKER_ALLOW_UNCONFINED_SECCOMP" doc:"Let pods run without a seccomp filter (seccompProfile.type Unconfined). Refused by default: every container gets Docker's default profile."`
	NetworkMode            string          `json:"NetworkMode" env:"INTERLINK_DOCKER_NETWORK_MODE" doc:"Network of each pod's namespace (its pause container): bridge, none, host or a network's name."`
	PauseImage             string          `json:"PauseImage" env:"INTERLINK_DOCKER_PAUSE_IMAGE" doc:"Image of the pause container holding each pod's network namespace."`
	PauseCommand           []string        `json:"PauseCommand" env:"INTERLINK_DOCKER_PAUSE_COMMAND" doc:"Command of the pause container, if its image has none that waits forever."`
	GPUDriver              string          `json:"GPUDriver" env:"INTERLINK_DOCKER_GPU_DRIVER" doc:"Device driver of GPU requests (nvidia.com/gpu)."`
	APITimeout             config.Duration `json:"APITimeout" env:"INTERLINK_DOCKER_API_TIMEOUT" doc:"Time limit of each Docker API call (image pulls and log streams excepted)."`
	PullTimeout            config.Duration `json:"PullTimeout" env:"INTERLINK_DOCKER_PULL_TIMEOUT" doc:"Time limit of an image pull. A pull outlives the create that started it: a create that cannot wait longer (interLink's CallTimeout) gets a 503, and its retry finds the pull going on or done."`
	MaxBodyBytes           int64           `json:"MaxBodyBytes" env:"INTERLINK_DOCKER_MAX_BODY_BYTES" doc:"Request bodies larger than this are refused with 413."`
	serve.Config
	VerboseLogging    bool `json:"VerboseLogging" env:"VERBOSELOGGING" doc:"Log at debug level (original key)."`
	ErrorsOnlyLogging bool `json:"ErrorsOnlyLogging" env:"ERRORSONLYLOGGING" doc:"Log errors only (original key)."`
}

// LogSettings implements cli.Config.
func (c *Config) LogSettings() (format, level string) {
	return c.LogFormat, logging.LevelOr(c.LogLevel, c.VerboseLogging, c.ErrorsOnlyLogging)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Config:         serve.DefaultConfig(),
		Listen:         DefaultListen,
		DockerHost:     DefaultDockerHost,
		DataRootFolder: DefaultDataRootFolder,
		ExportPodData:  true,
		NetworkMode:    "bridge",
		PauseImage:     DefaultPauseImage,
		GPUDriver:      "nvidia",
		APITimeout:     config.D(DefaultAPITimeout),
		PullTimeout:    config.D(DefaultPullTimeout),
		MaxBodyBytes:   64 << 20,
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
	var errs []error
	if addr, err := server.SidecarListen(c.Listen, c.SidecarPort); c.Listen == "" {
		errs = append(errs, errors.New("Listen is empty"))
	} else if err != nil {
		errs = append(errs, err)
	} else if err := c.Auth.Validate(addr, "INTERLINK_DOCKER_AUTH_"); err != nil {
		errs = append(errs, err)
	}
	if c.DockerHost == "" {
		errs = append(errs, errors.New("DockerHost is empty"))
	}
	switch abs, err := config.ExpandHome(c.DataRootFolder); {
	case err != nil:
		errs = append(errs, fmt.Errorf("DataRootFolder: %w", err))
	case !filepath.IsAbs(abs):
		errs = append(errs, fmt.Errorf("DataRootFolder %q must be an absolute path (or start with ~/)", c.DataRootFolder))
	case strings.ContainsAny(abs, ":,\n"):
		errs = append(errs, fmt.Errorf("DataRootFolder %q must not contain ':', ',' or a newline (they separate bind mounts)", c.DataRootFolder))
	}
	for _, p := range c.AllowedHostPaths {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("AllowedHostPaths: %q is not an absolute path", p))
		}
	}
	for _, name := range c.AllowedCapabilities {
		if _, ok := capName(name); !ok {
			errs = append(errs, fmt.Errorf("AllowedCapabilities: %q is not a capability name (such as NET_ADMIN, or ALL)", name))
		}
	}
	if c.NetworkMode == "" || strings.HasPrefix(c.NetworkMode, "container:") {
		errs = append(errs, fmt.Errorf("NetworkMode %q: want bridge, none, host or a network's name", c.NetworkMode))
	}
	if c.PauseImage == "" {
		errs = append(errs, errors.New("PauseImage is empty"))
	}
	if c.APITimeout.Duration <= 0 || c.PullTimeout.Duration <= 0 || c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("APITimeout, PullTimeout and MaxBodyBytes must be positive"))
	}
	return errors.Join(errs...)
}
