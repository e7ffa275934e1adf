package functions

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
)

// This file holds what interlink accepts only because the original
// interLink API server did: its JobScriptBuildConfig block, its Pprof block,
// its tracing variables and its command-line flags. docs/compat.md lists
// what each does here.

// Defaults of the original-only settings.
const (
	// DefaultPprofPort is the original interLink's profiling port.
	DefaultPprofPort = "6061"
	// OriginalConfigPath is the file the original reads when neither its
	// flag nor INTERLINKCONFIGPATH names one.
	OriginalConfigPath = "/etc/interlink/InterLinkConfig.yaml"
)

// ScriptBuildConfig is the original's JobScriptBuildConfig block, sent as
// jobConfig to a job script builder. The YAML keys are the original's
// (snake_case); the Go field names are the original's too, so a
// JobScriptTemplate reading .JobScriptBuild keeps working.
type ScriptBuildConfig struct {
	SingularityHub   SingularityHubConfig `json:"singularity_hub"`
	ApptainerOptions ApptainerOptions     `json:"apptainer_options"`
	VolumesOptions   VolumesOptions       `json:"volumes_options"`
}

// SingularityHubConfig is JobScriptBuildConfig.singularity_hub.
type SingularityHubConfig struct {
	Server               string `json:"server" doc:"SingularityHub proxy URL, passed to the job script builder."`
	MasterToken          string `json:"master_token" doc:"Its token, passed to the job script builder (never logged)."`
	CacheValiditySeconds int    `json:"cache_validity_seconds" doc:"Passed to the job script builder."`
}

// ApptainerOptions is JobScriptBuildConfig.apptainer_options.
type ApptainerOptions struct {
	Executable    string `json:"executable" doc:"Passed to the job script builder."`
	Fakeroot      bool   `json:"fakeroot" doc:"Passed to the job script builder."`
	ContainAll    bool   `json:"containall" doc:"Passed to the job script builder."`
	FuseMode      string `json:"fuse_mode" doc:"Passed to the job script builder."`
	NoInit        bool   `json:"no_init" doc:"Passed to the job script builder."`
	NoHome        bool   `json:"no_home" doc:"Passed to the job script builder."`
	NoPrivs       bool   `json:"no_privs" doc:"Passed to the job script builder."`
	NvidiaSupport bool   `json:"nvidia_support" doc:"Passed to the job script builder."`
	Cleanenv      bool   `json:"cleanenv" doc:"Passed to the job script builder."`
	Unsquash      bool   `json:"unsquash" doc:"Passed to the job script builder."`
}

// VolumesOptions is JobScriptBuildConfig.volumes_options.
type VolumesOptions struct {
	ScratchArea                 string   `json:"scratch_area" doc:"Passed to the job script builder."`
	ApptainerCacheDir           string   `json:"apptainer_cachedir" doc:"Passed to the job script builder."`
	ImageDir                    string   `json:"image_dir" doc:"Passed to the job script builder."`
	AdditionalDirectoriesInPath []string `json:"additional_directories_in_path" doc:"Passed to the job script builder."`
	FuseSleepSeconds            int      `json:"fuse_sleep_seconds" doc:"Passed to the job script builder."`
}

// wire is the block as the original sends it in jobConfig: its JSON keys
// differ from its YAML keys.
func (s *ScriptBuildConfig) wire() any {
	type hub struct {
		Server               string `json:"server"`
		MasterToken          string `json:"master_token"`
		CacheValiditySeconds int    `json:"cache_validity_seconds"`
	}
	type apptainer struct {
		Executable    string `json:"executable"`
		Fakeroot      bool   `json:"fakeroot"`
		ContainAll    bool   `json:"containall"`
		FuseMode      string `json:"fuseMode"`
		NoInit        bool   `json:"noInit"`
		NoHome        bool   `json:"noHome"`
		NoPrivs       bool   `json:"noPrivs"`
		NvidiaSupport bool   `json:"nvidiaSupport"`
		Cleanenv      bool   `json:"cleanenv"`
		Unsquash      bool   `json:"unsquash"`
	}
	a := s.ApptainerOptions
	return struct {
		Hub       hub            `json:"SingularityHubProxy"`
		Apptainer apptainer      `json:"ApptainerOptions"`
		Volumes   VolumesOptions `json:"Volumes"`
	}{
		Hub:       hub(s.SingularityHub),
		Apptainer: apptainer(a),
		Volumes:   s.VolumesOptions,
	}
}

// OriginalTelemetry holds the original's tracing variables. interlink
// exports spans over OTLP/HTTP (Tracing.Endpoint); the original over
// OTLP/gRPC to TELEMETRY_ENDPOINT, which interlink cannot speak: see
// Config.compatProblems.
type OriginalTelemetry struct {
	EnableTracing      string `env:"ENABLE_TRACING"`
	UniqueID           string `env:"TELEMETRY_UNIQUE_ID"`
	Endpoint           string `env:"TELEMETRY_ENDPOINT"`
	CACertFile         string `env:"TELEMETRY_CA_CRT_FILEPATH"`
	ClientCertFile     string `env:"TELEMETRY_CLIENT_CRT_FILEPATH"`
	ClientKeyFile      string `env:"TELEMETRY_CLIENT_KEY_FILEPATH"`
	InsecureSkipVerify string `env:"TELEMETRY_INSECURE_SKIP_VERIFY"`
}

// set lists the TELEMETRY_* variables that are set, with the ones that
// would change where or how spans go first.
func (t *OriginalTelemetry) set() (transport, other []string) {
	for _, v := range []struct {
		name, val string
		transport bool
	}{
		{"TELEMETRY_ENDPOINT", t.Endpoint, true},
		{"TELEMETRY_CA_CRT_FILEPATH", t.CACertFile, true},
		{"TELEMETRY_CLIENT_CRT_FILEPATH", t.ClientCertFile, true},
		{"TELEMETRY_CLIENT_KEY_FILEPATH", t.ClientKeyFile, true},
		{"TELEMETRY_INSECURE_SKIP_VERIFY", t.InsecureSkipVerify, false},
		{"TELEMETRY_UNIQUE_ID", t.UniqueID, false},
	} {
		switch {
		case v.val == "":
		case v.transport:
			transport = append(transport, v.name)
		default:
			other = append(other, v.name)
		}
	}
	return transport, other
}

// originalMTLS turns Auth.ClientCerts on for an original mTLS config: an
// https:// address with TLS.CACertFile and no Auth credential chosen. The
// CA's client certificates are then the credential, as in the original.
func (c *Config) originalMTLS() {
	a := &c.Auth
	if c.TLS.Enabled && c.TLS.CACertFile != "" && c.httpsAddress() &&
		len(a.Issuers) == 0 && a.StaticTokensFile == "" && !a.ClientCerts && !a.Insecure {
		a.ClientCerts, c.impliedClientCerts = true, true
	}
}

// httpsAddress tells whether InterlinkAddress is an https:// URL.
func (c *Config) httpsAddress() bool {
	u, err := url.Parse(c.InterlinkAddress)
	return err == nil && u.Scheme == "https"
}

// compatProblems are the original settings interlink refuses, each saying
// what to use instead.
func (c *Config) compatProblems() []error {
	var errs []error
	// TLS.Enabled serves TLS whatever the scheme (as interlink always did);
	// https:// without it would serve plain HTTP: refused, as the original
	// does.
	if _, err := c.Listen(); err == nil && c.httpsAddress() && !c.TLS.Enabled {
		errs = append(errs, fmt.Errorf("InterlinkAddress %s needs TLS.Enabled: true with TLS.CertFile and TLS.KeyFile", c.InterlinkAddress))
	}
	if c.Pprof.Enabled {
		if _, err := c.Pprof.Listen(DefaultPprofPort); err != nil {
			errs = append(errs, err)
		}
	}
	if c.JobScriptTemplate != "" {
		if _, err := os.Stat(c.JobScriptTemplate); err != nil {
			errs = append(errs, fmt.Errorf("JobScriptTemplate: %w", err))
		}
	}
	if len(c.JobScriptBuilderURLs) == 0 && !reflect.ValueOf(c.JobScriptBuildConfig).IsZero() {
		errs = append(errs, errors.New("JobScriptBuildConfig is set, but JobScriptBuilderURLs is empty: interlink calls a job script builder only at a URL listed there "+
			"(the virtual kubelet's JobScriptBuilderURL), never at any URL a create request names; list the builder's URL in JobScriptBuilderURLs"))
	}
	for _, u := range c.JobScriptBuilderURLs {
		if err := checkBuilderURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	if c.JobScriptMaxBytes < 1 {
		errs = append(errs, errors.New("JobScriptMaxBytes must be positive"))
	}
	if c.JobScriptBuilderTimeout.Duration <= 0 {
		errs = append(errs, errors.New("JobScriptBuilderTimeout must be positive"))
	}
	t := &c.OriginalTelemetry
	transport, _ := t.set()
	if t.EnableTracing == "1" {
		if c.Tracing.Endpoint == "" {
			errs = append(errs, errors.New("ENABLE_TRACING=1: the original exports spans over OTLP/gRPC to TELEMETRY_ENDPOINT (default localhost:4317); "+
				"interlink exports over OTLP/HTTP: set Tracing.Endpoint (INTERLINK_TRACING_ENDPOINT) to the collector's OTLP/HTTP address, e.g. http://collector:4318"))
		}
		if len(transport) > 0 {
			errs = append(errs, fmt.Errorf("%s: interlink cannot send spans over OTLP/gRPC or with a client certificate; "+
				"set Tracing.Endpoint (INTERLINK_TRACING_ENDPOINT) to an OTLP/HTTP collector and unset %s",
				strings.Join(transport, ", "), strings.Join(transport, ", ")))
		}
	}
	return errs
}

// CompatWarnings are the original settings interlink accepts without
// effect, one sentence each, to log at start.
func (c *Config) CompatWarnings() []string {
	var out []string
	if c.impliedClientCerts {
		out = append(out, "Auth.ClientCerts turned on: TLS.CACertFile is this original config's only credential, so clients are authenticated by a certificate it signed (user = CN), as in the original; set Auth to choose otherwise")
	}
	if c.DataRootFolder != "" {
		out = append(out, "DataRootFolder has no effect (it has none in the original interLink since 0.4 either); the sidecars keep pod data in their own DataRootFolder")
	}
	if c.ExportPodData {
		out = append(out, "ExportPodData has no effect (the original interLink dropped it after 0.3): interlink always sends the pod's ConfigMaps, Secrets and projected volumes to the sidecar")
	}
	t := &c.OriginalTelemetry
	transport, other := t.set()
	switch {
	case t.EnableTracing == "1" && len(other) > 0:
		out = append(out, strings.Join(other, ", ")+" ignored: interlink names its spans' service \"interlink\" and trusts the collector of Tracing.Endpoint by the system roots")
	case t.EnableTracing != "" && t.EnableTracing != "1":
		out = append(out, fmt.Sprintf("ENABLE_TRACING=%q has no effect (the original turns tracing on only with 1); interlink traces when Tracing.Endpoint is set", t.EnableTracing))
	}
	if t.EnableTracing != "1" && len(transport)+len(other) > 0 {
		out = append(out, strings.Join(append(transport, other...), ", ")+" have no effect without ENABLE_TRACING=1, as in the original; interlink traces when Tracing.Endpoint (INTERLINK_TRACING_ENDPOINT) is set")
	}
	if w := c.Pprof.Warning("interlink", DefaultPprofPort); w != "" {
		out = append(out, w)
	}
	return out
}

// OriginalFlags are the original interLink's command-line flags, found by
// ParseOriginalFlags.
type OriginalFlags struct {
	// Verbose (-verbose) and ErrorsOnly (-errorsonly) set the log level;
	// they win over the file and the environment.
	Verbose, ErrorsOnly bool
	// Version (-version): print the version and exit.
	Version bool
	// DefaultPath is OriginalConfigPath when it was used because no flag
	// and no INTERLINKCONFIGPATH named a file.
	DefaultPath string
}

// Env is how the log-level flags reach the config: as the variables of
// VerboseLogging and ErrorsOnlyLogging, which override the file.
func (f OriginalFlags) Env() map[string]string {
	switch {
	case f.Verbose:
		return map[string]string{"VERBOSELOGGING": "true", "ERRORSONLYLOGGING": "false"}
	case f.ErrorsOnly:
		return map[string]string{"VERBOSELOGGING": "false", "ERRORSONLYLOGGING": "true"}
	}
	return nil
}

// ParseOriginalFlags takes the original's flags out of args (os.Args[1:])
// and returns the rest for config.ParseFlags: -interlinkconfigpath becomes
// -config; -verbose, -errorsonly and -version are returned. When no flag
// and no INTERLINKCONFIGPATH (getenv) names a config file and
// OriginalConfigPath exists (exists), it is used, as the original does.
func ParseOriginalFlags(args []string, getenv func(string) string, exists func(string) bool) ([]string, OriginalFlags, error) {
	var f OriginalFlags
	var path, origPath string
	var test bool
	fs := flag.NewFlagSet("interlink", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&path, "config", "", "YAML config file")
	fs.BoolVar(&test, "config-test", false, "validate the config and exit")
	fs.StringVar(&origPath, "interlinkconfigpath", "", "the original's name of -config")
	fs.BoolVar(&f.Verbose, "verbose", false, "log at debug level (the original's flag)")
	fs.BoolVar(&f.ErrorsOnly, "errorsonly", false, "log errors only (the original's flag)")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, f, fmt.Errorf("flags: %w", err)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["config"] && set["interlinkconfigpath"] {
		return nil, f, errors.New("flags -config and -interlinkconfigpath both name a config file: give one")
	}
	var out []string
	switch {
	case set["config"]:
		out = append(out, "-config="+path)
	case set["interlinkconfigpath"]:
		out = append(out, "-config="+origPath)
	case getenv("INTERLINKCONFIGPATH") == "" && exists(OriginalConfigPath):
		f.DefaultPath = OriginalConfigPath
		out = append(out, "-config="+OriginalConfigPath)
	}
	if test {
		out = append(out, "-config-test")
	}
	return append(out, fs.Args()...), f, nil
}

// ApplyOriginalFlags is ParseOriginalFlags for a binary's main: it reads
// os.Args and the environment, leaves in os.Args the flags config.ParseFlags
// reads, and sets the variables of OriginalFlags.Env.
func ApplyOriginalFlags() (OriginalFlags, error) {
	args, f, err := ParseOriginalFlags(os.Args[1:], os.Getenv, func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	})
	if err != nil {
		return f, err
	}
	os.Args = append(os.Args[:1], args...)
	for k, v := range f.Env() {
		if err := os.Setenv(k, v); err != nil {
			return f, fmt.Errorf("set %s: %w", k, err)
		}
	}
	return f, nil
}

// Version is the module version interlink was built from ("devel" for a
// local build).
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}
