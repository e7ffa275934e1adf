package installer

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/unit"
)

// Quoting for systemd unit files (systemd.syntax(7), systemd.service(5)):
// every value is subject to %-specifier expansion (%% is a literal %);
// ExecStart= also expands $VAR and ${VAR} ($$ is a literal $) and splits
// words on whitespace, with C-style escapes inside double quotes.

// safeWord is what an ExecStart= word may hold without quotes.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkValue refuses what a unit file line cannot carry.
func checkValue(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("%q contains a control character", s)
		}
	}
	return nil
}

// specifiers escapes % for any unit value.
func specifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// execWord quotes one word of an ExecStart= command line.
func execWord(s string) (string, error) {
	if err := checkValue(s); err != nil {
		return "", err
	}
	s = strings.ReplaceAll(specifiers(s), "$", "$$")
	if safeWord.MatchString(s) {
		return s, nil
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`, nil
}

// ExecLine renders argv as the value of ExecStart=: each word is read back
// by systemd as exactly the given string.
func ExecLine(argv []string) (string, error) {
	if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
		return "", errors.New("ExecStart needs an absolute executable path")
	}
	if strings.Contains(argv[0], "$") {
		// systemd substitutes $VAR in the arguments, not in the executable's
		// path, where $$ would stay $$: no escape works for both.
		return "", fmt.Errorf("ExecStart executable %q must not contain '$'", argv[0])
	}
	words := make([]string, len(argv))
	for i, a := range argv {
		w, err := execWord(a)
		if err != nil {
			return "", fmt.Errorf("ExecStart argument %d: %w", i, err)
		}
		words[i] = w
	}
	return strings.Join(words, " "), nil
}

// EnvAssignment renders KEY=VALUE as one quoted word of Environment=.
func EnvAssignment(key, value string) (string, error) {
	if !envKey.MatchString(key) {
		return "", fmt.Errorf("environment variable name %q is not valid", key)
	}
	if err := checkValue(value); err != nil {
		return "", fmt.Errorf("environment variable %s: %w", key, err)
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(specifiers(key+"="+value)) + `"`, nil
}

// service describes one systemd service of the remote side.
type service struct {
	Description string
	After       []string
	Wants       []string
	// User runs the service, with its primary group.
	User string
	// SupplementaryGroups, e.g. docker for the Docker socket.
	SupplementaryGroups []string
	Exec                []string
	Env                 [][2]string
	// ReadWritePaths are the only places the service may write.
	ReadWritePaths []string
	// SeePaths must stay visible to the service (not writable): interlink
	// connects to the sidecar's socket there.
	SeePaths []string
	// BindService lets it listen on a port below 1024.
	BindService bool
	// FullProc leaves /proc whole (ProcSubset=all): the SLURM commands may
	// read system files there.
	FullProc bool
	// Notes are comment lines at the top of the unit.
	Notes []string
}

// homes are the trees ProtectHome= hides.
var homes = []string{"/home", "/root", "/run/user"}

// tmps are the trees PrivateTmp= replaces with the service's own.
var tmps = []string{"/tmp", "/var/tmp"}

func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// render writes the unit. Paths were checked by unitPath.
func (s service) render(w io.Writer) error {
	exec, err := ExecLine(s.Exec)
	if err != nil {
		return err
	}
	opt := unit.NewUnitOption
	opts := []*unit.UnitOption{
		opt("Unit", "Description", specifiers(s.Description)),
		opt("Unit", "Documentation", "https://github.com/seed-3f807049/interlink/blob/main/docs/installer.md"),
	}
	for _, a := range s.Wants {
		opts = append(opts, opt("Unit", "Wants", a))
	}
	for _, a := range s.After {
		opts = append(opts, opt("Unit", "After", a))
	}
	opts = append(opts,
		opt("Service", "Type", "exec"),
		opt("Service", "User", s.User),
	)
	if len(s.SupplementaryGroups) > 0 {
		opts = append(opts, opt("Service", "SupplementaryGroups", strings.Join(s.SupplementaryGroups, " ")))
	}
	for _, kv := range s.Env {
		e, err := EnvAssignment(kv[0], kv[1])
		if err != nil {
			return err
		}
		opts = append(opts, opt("Service", "Environment", e))
	}
	opts = append(opts,
		opt("Service", "ExecStart", exec),
		opt("Service", "Restart", "on-failure"),
		opt("Service", "RestartSec", "5s"),
		opt("Service", "TimeoutStopSec", "30s"),
		opt("Service", "LimitNOFILE", "65536"),
		opt("Service", "UMask", "0077"),
	)
	// Hardening: nothing here stops what the services need (listening,
	// running sbatch and friends, talking to munge or the Docker socket).
	protectHome, privateTmp := "yes", "yes"
	for _, p := range append(slices.Clone(s.ReadWritePaths), s.SeePaths...) {
		if underAny(p, homes) {
			protectHome = "read-only" // ReadWritePaths= opens the paths below it
		}
		if underAny(p, tmps) {
			// A private /tmp would hide the path from what must see it too:
			// SLURM jobs and dockerd run outside the service's namespace.
			privateTmp = "no"
		}
	}
	caps := ""
	if s.BindService {
		caps = "CAP_NET_BIND_SERVICE"
	}
	opts = append(opts,
		opt("Service", "NoNewPrivileges", "yes"),
		opt("Service", "CapabilityBoundingSet", caps),
		opt("Service", "AmbientCapabilities", caps),
		opt("Service", "ProtectSystem", "strict"),
		opt("Service", "ProtectHome", protectHome),
	)
	if len(s.ReadWritePaths) > 0 {
		paths := make([]string, len(s.ReadWritePaths))
		for i, p := range s.ReadWritePaths {
			paths[i] = specifiers(p)
		}
		opts = append(opts, opt("Service", "ReadWritePaths", strings.Join(paths, " ")))
	}
	if !s.FullProc {
		opts = append(opts, opt("Service", "ProcSubset", "pid"))
	}
	for _, kv := range [][2]string{
		{"PrivateTmp", privateTmp},
		{"PrivateMounts", "yes"},
		{"PrivateDevices", "yes"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectKernelLogs", "yes"},
		{"ProtectControlGroups", "yes"},
		{"ProtectClock", "yes"},
		{"ProtectHostname", "yes"},
		{"ProtectProc", "invisible"},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{"RestrictNamespaces", "yes"},
		{"RestrictRealtime", "yes"},
		{"RestrictSUIDSGID", "yes"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallArchitectures", "native"},
		{"SystemCallFilter", "@system-service"},
		{"SystemCallFilter", "~@privileged"},
		{"SystemCallErrorNumber", "EPERM"},
	} {
		opts = append(opts, opt("Service", kv[0], kv[1]))
	}
	opts = append(opts, opt("Install", "WantedBy", "multi-user.target"))

	for _, n := range s.Notes {
		if _, err := fmt.Fprintf(w, "# %s\n", n); err != nil {
			return err
		}
	}
	_, err = io.Copy(w, unit.Serialize(opts))
	return err
}
