package sim

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars/serve"
)

// Defaults of Config.
const (
	// DefaultListen is the sim's listen address.
	DefaultListen = "127.0.0.1:4100"
	// DefaultPendingDelay is how long a pod stays Pending after create.
	DefaultPendingDelay = 500 * time.Millisecond
	// DefaultRunDuration is how long a pod's containers run.
	DefaultRunDuration = 2 * time.Second
	// DefaultLogInterval is the interval between synthetic log lines.
	DefaultLogInterval = 500 * time.Millisecond
	// DefaultCPU, DefaultMemory and DefaultPods are the capacity reported by
	// a ping.
	DefaultCPU    = "1000"
	DefaultMemory = "4Ti"
	DefaultPods   = "100000"
)

// Config configures the simulated sidecar.
type Config struct {
	Listen       string          `json:"Listen" env:"INTERLINK_SIM_LISTEN" doc:"TCP address (host:port) or unix socket path (starting with / or unix://) to serve on."`
	PendingDelay config.Duration `json:"PendingDelay" env:"INTERLINK_SIM_PENDING_DELAY" doc:"How long a pod stays Pending after create."`
	RunDuration  config.Duration `json:"RunDuration" env:"INTERLINK_SIM_RUN_DURATION" doc:"How long a pod's containers run before they end."`
	LogInterval  config.Duration `json:"LogInterval" env:"INTERLINK_SIM_LOG_INTERVAL" doc:"Interval between synthetic log lines of a running container."`
	CPU          string          `json:"CPU" env:"INTERLINK_SIM_CPU" doc:"CPU capacity reported by a ping (a Kubernetes quantity)."`
	Memory       string          `json:"Memory" env:"INTERLINK_SIM_MEMORY" doc:"Memory capacity reported by a ping (a Kubernetes quantity)."`
	Pods         string          `json:"Pods" env:"INTERLINK_SIM_PODS" doc:"Pod capacity reported by a ping."`
	MaxBodyBytes int64           `json:"MaxBodyBytes" env:"INTERLINK_SIM_MAX_BODY_BYTES" doc:"Request bodies larger than this are refused with 413."`
	serve.Config
	StateFile string `json:"StateFile" env:"INTERLINK_SIM_STATE_FILE" doc:"File the sim saves its jobs to when it stops and reads when it starts, so that a restarted sim keeps them (as a real sidecar does); empty: jobs live in memory only."`
	Faults    Faults `json:"Faults" envPrefix:"INTERLINK_SIM_FAULT_" doc:"Faults injected into the protocol's calls, for fault tests (off by default); also set at run time with POST /sim/faults."`
	// OriginalPlugin makes every create that reaches the sim for a pod it
	// holds a duplicate job, so a test sees any that interLink and the VK
	// let through.
	OriginalPlugin bool `json:"OriginalPlugin" env:"INTERLINK_SIM_ORIGINAL_PLUGIN" doc:"Behave as an original interLink plugin does, for tests of what interLink does in front of one: replies carry no Interlink-Api-Version header, and a create for a pod already held makes another job (counted as duplicateJobs in /sim/stats)."`
	// OriginalPing is how an original plugin answers a ping.
	OriginalPing string `json:"OriginalPing" env:"INTERLINK_SIM_ORIGINAL_PING" doc:"With OriginalPlugin, how a ping (a status call for no pod) is answered, as one kind of original plugin does: object (a PingResponse, as the SLURM plugin since 0.6.2), array ([], an empty status list), null (the Docker plugin, and the SLURM plugin up to 0.5.0) or text (the text of sinfo -s, as the SLURM plugin from 0.5.1 to 0.6.2)."`
}

// OriginalPing values.
const (
	PingObject = "object"
	PingArray  = "array"
	PingNull   = "null"
	PingText   = "text"
)

// Faults makes the sim answer slowly or fail, for a while, as a struggling
// backend would. They apply to /create, /delete, /status (pings included)
// and /getLogs; the sim's own paths are never faulted.
type Faults struct {
	Delay     config.Duration `json:"Delay" env:"DELAY" doc:"Added before each faulted call is answered."`
	ErrorRate float64         `json:"ErrorRate" env:"ERROR_RATE" doc:"Share (0 to 1) of faulted calls answered 503 Service Unavailable."`
	Start     config.Duration `json:"Start" env:"START" doc:"Faults begin this long after the sim starts (or after POST /sim/faults)."`
	Duration  config.Duration `json:"Duration" env:"DURATION" doc:"Faults last this long; 0 means until changed."`
}

// Active tells whether f changes anything.
func (f *Faults) Active() bool { return f.Delay.Duration > 0 || f.ErrorRate > 0 }

var _ serve.Settings = (*Config)(nil)

// Serving implements serve.Settings: the sim authenticates no caller.
func (c *Config) Serving() serve.Serving {
	return serve.Serving{Addr: c.Listen, MaxBodyBytes: c.MaxBodyBytes}
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Config:       serve.DefaultConfig(),
		Listen:       DefaultListen,
		PendingDelay: config.D(DefaultPendingDelay),
		RunDuration:  config.D(DefaultRunDuration),
		LogInterval:  config.D(DefaultLogInterval),
		CPU:          DefaultCPU,
		Memory:       DefaultMemory,
		Pods:         DefaultPods,
		MaxBodyBytes: 128 << 20,
		OriginalPing: PingObject,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("Listen is empty"))
	}
	if c.PendingDelay.Duration < 0 || c.RunDuration.Duration < 0 {
		errs = append(errs, errors.New("PendingDelay and RunDuration must not be negative"))
	}
	switch c.OriginalPing {
	case PingObject, PingArray, PingNull, PingText:
	default:
		errs = append(errs, fmt.Errorf("OriginalPing %q: want object, array, null or text", c.OriginalPing))
	}
	if c.LogInterval.Duration <= 0 {
		errs = append(errs, errors.New("LogInterval must be positive"))
	}
	for name, q := range config.SortedByKey(map[string]string{"CPU": c.CPU, "Memory": c.Memory, "Pods": c.Pods}) {
		if _, err := resource.ParseQuantity(q); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not a quantity: %w", name, q, err))
		}
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("MaxBodyBytes must be positive"))
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate reports every problem at once.
func (f *Faults) Validate() error {
	var errs []error
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("Faults.ErrorRate %v must be between 0 and 1", f.ErrorRate))
	}
	if f.Delay.Duration < 0 || f.Delay.Duration > 10*time.Minute {
		errs = append(errs, errors.New("Faults.Delay must be between 0 and 10m"))
	}
	if f.Start.Duration < 0 || f.Duration.Duration < 0 {
		errs = append(errs, errors.New("Faults.Start and Faults.Duration must not be negative"))
	}
	return errors.Join(errs...)
}
