package sim

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/tracing"
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
	LogFormat    string          `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	Tracing      tracing.Config  `json:"Tracing" envPrefix:"INTERLINK_TRACING_" doc:"OpenTelemetry tracing."`
	LogLevel     string          `json:"LogLevel" env:"INTERLINK_LOG_LEVEL" doc:"Log level: debug, info, warn or error."`
}

// LogSettings implements cli.Config.
func (c *Config) LogSettings() (format, level string) { return c.LogFormat, c.LogLevel }

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:       DefaultListen,
		PendingDelay: config.D(DefaultPendingDelay),
		RunDuration:  config.D(DefaultRunDuration),
		LogInterval:  config.D(DefaultLogInterval),
		CPU:          DefaultCPU,
		Memory:       DefaultMemory,
		Pods:         DefaultPods,
		MaxBodyBytes: 128 << 20,
		Tracing:      tracing.DefaultConfig(),
		LogFormat:    "json",
		LogLevel:     "info",
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
	if c.LogInterval.Duration <= 0 {
		errs = append(errs, errors.New("LogInterval must be positive"))
	}
	for name, q := range map[string]string{"CPU": c.CPU, "Memory": c.Memory, "Pods": c.Pods} {
		if _, err := resource.ParseQuantity(q); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not a quantity: %w", name, q, err))
		}
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("MaxBodyBytes must be positive"))
	}
	return errors.Join(errs...)
}
