package vk

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/seed-3f807049/interlink/observability/config"
)

// Flags are the VK's command-line flags: ours and the original's.
type Flags struct {
	// Path is the config file: --config or the original's -configpath,
	// else VK_CONFIG_PATH, else the original's CONFIGPATH ("" for none).
	Path string
	// Test validates the config and exits.
	Test bool
	// NodeName is the original's -nodename; it wins over the file and NODENAME.
	NodeName string
}

// ParseFlags parses args (os.Args[1:]).
func ParseFlags(args []string, getenv func(string) string) (Flags, error) {
	fs := flag.NewFlagSet("interlink-vk", flag.ContinueOnError)
	var f Flags
	def := getenv("VK_CONFIG_PATH")
	if def == "" {
		def = getenv("CONFIGPATH")
	}
	fs.StringVar(&f.Path, "config", def, "YAML config file (env VK_CONFIG_PATH, or the original's CONFIGPATH)")
	fs.StringVar(&f.Path, "configpath", def, "the original's name of --config")
	fs.BoolVar(&f.Test, "config-test", false, "validate the config and exit")
	fs.StringVar(&f.NodeName, "nodename", "", "name of the virtual node (the original's flag; env NODENAME)")
	err := fs.Parse(args)
	return f, err
}

// Load fills cfg (holding its defaults) from the file of f and the
// environment, validates it, and returns the warnings to log at start:
// unknown keys, and the original's keys and variables accepted without
// effect. The original's settings this VK cannot honor are errors.
func Load(cfg *Config, f Flags, getenv func(string) string) (warnings []string, err error) {
	unknown, err := config.Load(cfg, f.Path)
	if err != nil {
		return nil, err
	}
	if f.NodeName != "" {
		cfg.NodeName = f.NodeName
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("invalid config: %w", err)
		}
	}
	unknown = slices.DeleteFunc(unknown, func(k string) bool { return slices.Contains(legacyKeys, k) })
	if len(unknown) > 0 {
		sort.Strings(unknown)
		warnings = append(warnings, "unknown config keys ignored: "+strings.Join(unknown, ", "))
	}
	envWarnings, err := originalEnv(cfg, getenv)
	if err != nil {
		return nil, err
	}
	return append(append(warnings, envWarnings...), cfg.Warnings()...), nil
}

// telemetryEnv are the original's OpenTelemetry (OTLP/gRPC) variables.
var telemetryEnv = []string{"TELEMETRY_UNIQUE_ID", "TELEMETRY_ENDPOINT", "TELEMETRY_CA_CRT_FILEPATH",
	"TELEMETRY_CLIENT_CRT_FILEPATH", "TELEMETRY_CLIENT_KEY_FILEPATH", "TELEMETRY_INSECURE_SKIP_VERIFY"}

// oldSharedEnv are variables the original VK read before 0.3.0 from a
// config it shared with interLink and the SLURM plugin.
var oldSharedEnv = []string{"SIDECARURL", "SIDECARPORT", "SBATCHPATH", "SCANCELPATH", "TSOCKS", "TSOCKSPATH", "SHARED_FS", "INTERLINKCONFIGPATH"}

// originalEnv checks the original's environment variables that have no
// field of ours.
func originalEnv(cfg *Config, getenv func(string) string) (warnings []string, err error) {
	var set []string
	for _, k := range telemetryEnv {
		if getenv(k) != "" {
			set = append(set, k)
		}
	}
	switch tr := getenv("ENABLE_TRACING"); {
	case tr == "1" && len(set) > 0:
		return nil, fmt.Errorf("ENABLE_TRACING=1 with %s: the original's OTLP/gRPC exporter is not supported; unset them and set INTERLINK_TRACING_ENDPOINT to an OTLP/HTTP collector (http://collector:4318)", strings.Join(set, ", "))
	case tr == "1" && cfg.Tracing.Endpoint == "":
		return nil, errors.New("ENABLE_TRACING=1: the original's OTLP/gRPC exporter (default localhost:4317) is not supported; set INTERLINK_TRACING_ENDPOINT (or Tracing.Endpoint) to an OTLP/HTTP collector (http://collector:4318)")
	case tr != "" && tr != "1":
		warnings = append(warnings, fmt.Sprintf("ENABLE_TRACING=%s has no effect (only 1 turned the original's tracing on); tracing is Tracing.Endpoint", tr))
	case tr == "" && len(set) > 0:
		warnings = append(warnings, strings.Join(set, ", ")+" have no effect without ENABLE_TRACING=1 (as in the original)")
	}
	for _, k := range oldSharedEnv {
		if getenv(k) != "" {
			warnings = append(warnings, k+" has no effect on the virtual kubelet (the original's stopped reading it in 0.3.0)")
		}
	}
	return warnings, nil
}
