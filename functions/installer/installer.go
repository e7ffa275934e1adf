package installer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/syntax"
	"sigs.k8s.io/yaml"
)

// Options are the installer's own switches (the answers are separate).
type Options struct {
	// AnswersFile is a YAML file of Answers ("" for none).
	AnswersFile string
	// Interactive asks for the main answers on In (a terminal).
	Interactive bool
	// Force overwrites config, unit and values files that differ from what
	// would be written (secret files are always rewritten).
	Force bool
	// In, Out: prompts and messages (never a token).
	In  io.Reader
	Out io.Writer
	// HTTPClient talks to the OIDC issuer (nil: a default one).
	HTTPClient *http.Client
}

// flagDef binds a flag to an answer.
type flagDef struct {
	name, usage string
	set         func(a *Answers, v string) error
	boolean     bool
}

func str(p func(*Answers) *string) func(*Answers, string) error {
	return func(a *Answers, v string) error { *p(a) = v; return nil }
}

var flagDefs = []flagDef{
	{name: "sidecar", usage: "Sidecar: slurm or docker", set: str(func(a *Answers) *string { return &a.Sidecar })},
	{name: "public-url", usage: "PublicURL: where the cluster reaches interlink (https://host:port)", set: str(func(a *Answers) *string { return &a.PublicURL })},
	{name: "listen", usage: "Listen: ip:port interlink listens on", set: str(func(a *Answers) *string { return &a.Listen })},
	{name: "allow-plain-http", usage: "AllowPlainHTTP: allow an http PublicURL off loopback", boolean: true, set: func(a *Answers, v string) error {
		b, err := strconv.ParseBool(v)
		a.AllowPlainHTTP = b
		return err
	}},
	{name: "tls-cert", usage: "TLSCertFile: interlink's PEM serving certificate", set: str(func(a *Answers) *string { return &a.TLSCertFile })},
	{name: "tls-key", usage: "TLSKeyFile: its PEM key", set: str(func(a *Answers) *string { return &a.TLSKeyFile })},
	{name: "tls-ca", usage: "TLSCAFile: PEM CA of the certificate, for the cluster side to trust", set: str(func(a *Answers) *string { return &a.TLSCAFile })},
	{name: "auth", usage: "Auth.Mode: device-code, client-credentials or static", set: str(func(a *Answers) *string { return &a.Auth.Mode })},
	{name: "issuer", usage: "Auth.Issuer: OIDC issuer URL", set: str(func(a *Answers) *string { return &a.Auth.Issuer })},
	{name: "audience", usage: "Auth.Audience: audience interlink requires", set: str(func(a *Answers) *string { return &a.Auth.Audience })},
	{name: "client-id", usage: "Auth.ClientID: the VK's OAuth2 client", set: str(func(a *Answers) *string { return &a.Auth.ClientID })},
	{name: "client-secret-file", usage: "Auth.ClientSecretFile: file holding the client's secret", set: str(func(a *Answers) *string { return &a.Auth.ClientSecretFile })},
	{name: "node-name", usage: "NodeName: name of the virtual node", set: str(func(a *Answers) *string { return &a.NodeName })},
	{name: "namespace", usage: "Namespace: namespace of the Helm release", set: str(func(a *Answers) *string { return &a.Namespace })},
	{name: "sidecar-port", usage: "SidecarPort: loopback TCP port of the sidecar, with a generated token (default 0: a unix socket)", set: func(a *Answers, v string) error {
		p, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		a.SidecarPort = p
		return nil
	}},
	{name: "user", usage: "User: account running both services", set: str(func(a *Answers) *string { return &a.User })},
	{name: "bin-dir", usage: "BinDir: directory of the binaries", set: str(func(a *Answers) *string { return &a.BinDir })},
	{name: "config-dir", usage: "ConfigDir: directory of the config files", set: str(func(a *Answers) *string { return &a.ConfigDir })},
	{name: "state-dir", usage: "StateDir: directory of the sidecar's state", set: str(func(a *Answers) *string { return &a.StateDir })},
	{name: "unit-dir", usage: "UnitDir: directory of the systemd units", set: str(func(a *Answers) *string { return &a.UnitDir })},
	{name: "out", usage: "OutDir: directory of the cluster side's Helm values and secrets", set: str(func(a *Answers) *string { return &a.OutDir })},
}

// Main is the interlink-installer command: it parses args and runs.
func Main(ctx context.Context, args []string, in io.Reader, out io.Writer, terminal bool) error {
	flags := flag.NewFlagSet("interlink-installer", flag.ContinueOnError)
	flags.SetOutput(out)
	var opts Options
	var nonInteractive bool
	var initFile string
	flags.StringVar(&opts.AnswersFile, "answers", "", "YAML answers file (keys in docs/installer.md)")
	flags.BoolVar(&nonInteractive, "non-interactive", false, "never prompt, even on a terminal")
	flags.BoolVar(&opts.Force, "force", false, "overwrite config, unit and values files that differ")
	flags.StringVar(&initFile, "init", "", "write an answers file with every key and its default to this path, and exit")
	set := map[string]string{}
	for _, d := range flagDefs {
		fn := func(v string) error {
			if err := d.set(&Answers{}, v); err != nil {
				return err
			}
			set[d.name] = v
			return nil
		}
		if d.boolean {
			flags.BoolFunc(d.name, d.usage, fn)
		} else {
			flags.Func(d.name, d.usage, fn)
		}
	}
	flags.Usage = func() {
		fmt.Fprintf(out, "Usage: interlink-installer [--answers FILE] [flags]\n\nWrites interlink's and a sidecar's config, their systemd units, and the Helm values of the cluster side.\nSee docs/installer.md.\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (every answer is a flag or in --answers)", flags.Args())
	}
	if initFile != "" {
		return writeTemplate(initFile, out)
	}
	a := DefaultAnswers()
	if opts.AnswersFile != "" {
		if err := LoadAnswers(opts.AnswersFile, &a); err != nil {
			return err
		}
	}
	for _, d := range flagDefs {
		if v, ok := set[d.name]; ok {
			if err := d.set(&a, v); err != nil {
				return fmt.Errorf("--%s: %w", d.name, err)
			}
		}
	}
	opts.Interactive = terminal && !nonInteractive
	opts.In, opts.Out = in, out
	return Run(ctx, a, opts)
}

// LoadAnswers reads a YAML answers file over a; an unknown key is an error.
func LoadAnswers(path string, a *Answers) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("answers file: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, a); err != nil {
		return fmt.Errorf("answers file %s: %w", path, err)
	}
	return nil
}

func writeTemplate(path string, out io.Writer) error {
	a := DefaultAnswers()
	a.Sidecar, a.PublicURL = SidecarSlurm, "https://hpc-login.example.org:3000"
	raw, err := yaml.Marshal(a)
	if err != nil {
		return err
	}
	head := "# interlink-installer answers: edit, then run interlink-installer --answers " + path + "\n# Every key is described in docs/installer.md.\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--init: %w", err)
	}
	if _, err := f.Write(append([]byte(head), raw...)); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n", path)
	return nil
}

// Run completes and checks the answers, obtains the credentials, and
// writes every file.
func Run(ctx context.Context, a Answers, opts Options) error {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Interactive {
		if err := Ask(&a, opts.In, opts.Out); err != nil {
			return err
		}
	}
	a.Complete()
	if err := a.Validate(); err != nil {
		return fmt.Errorf("bad answers:\n%w", err)
	}
	own, err := resolveOwner(a.User)
	if err != nil {
		return err
	}
	if err := preflight(a, opts.Out); err != nil {
		return err
	}
	var sec Secrets
	if a.Auth.ClientSecretFile != "" {
		b, err := os.ReadFile(a.Auth.ClientSecretFile)
		if err != nil {
			return fmt.Errorf("Auth.ClientSecretFile: %w", err)
		}
		if sec.ClientSecret = strings.TrimSpace(string(b)); sec.ClientSecret == "" {
			return fmt.Errorf("Auth.ClientSecretFile %s is empty", a.Auth.ClientSecretFile)
		}
	}
	if a.TLSCAFile != "" {
		b, err := os.ReadFile(a.TLSCAFile)
		if err != nil {
			return fmt.Errorf("TLSCAFile: %w", err)
		}
		if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
			return fmt.Errorf("TLSCAFile %s holds no PEM certificate", a.TLSCAFile)
		}
		sec.CACert = string(b)
	}
	var issuer *Issuer
	if a.Auth.Mode != AuthStatic {
		if issuer, err = Discover(ctx, a.Auth.Issuer, opts.HTTPClient); err != nil {
			return err
		}
		sec.TokenURL = issuer.TokenURL()
		if a.Auth.Mode == AuthDeviceCode {
			if err := issuer.SupportsDeviceCode(); err != nil {
				return err
			}
		}
	}
	// Refuse to overwrite hand-edited files before asking the user to
	// authorize anything.
	probe := sec
	probe.StaticToken, probe.RefreshToken, probe.SidecarToken = "probe", "probe", "probe"
	plan, err := Render(a, probe)
	if err != nil {
		return err
	}
	if err := conflicts(plan, opts.Force); err != nil {
		return err
	}
	if a.SidecarPort != 0 {
		if sec.SidecarToken, err = sidecarToken(a); err != nil {
			return err
		}
	}
	switch a.Auth.Mode {
	case AuthStatic:
		if sec.StaticToken, err = staticToken(a); err != nil {
			return err
		}
	case AuthDeviceCode:
		tok, err := issuer.DeviceLogin(ctx, a.Auth, sec.ClientSecret, opts.Out)
		if err != nil {
			return err
		}
		if err := issuer.CheckAccessToken(ctx, tok, a.Auth.Audience); err != nil {
			return err
		}
		sec.RefreshToken = tok.RefreshToken
		fmt.Fprintln(opts.Out, "Authorized: got a refresh token for the virtual node.")
	case AuthClientCredentials:
		tok, err := issuer.ClientCredentials(ctx, a.Auth, sec.ClientSecret)
		if err != nil {
			return err
		}
		if err := issuer.CheckAccessToken(ctx, tok, a.Auth.Audience); err != nil {
			return err
		}
	}
	if plan, err = Render(a, sec); err != nil {
		return err
	}
	if err := Write(plan, own); err != nil {
		return err
	}
	return summary(a, plan, opts.Out)
}

// preflight checks the files the answers name.
func preflight(a Answers, out io.Writer) error {
	var errs []error
	for key, p := range map[string]string{"TLSCertFile": a.TLSCertFile, "TLSKeyFile": a.TLSKeyFile, "TLSCAFile": a.TLSCAFile, "Auth.ClientSecretFile": a.Auth.ClientSecretFile, "Slurm.SlurmConf": a.Slurm.SlurmConf} {
		if p == "" || (key == "Slurm.SlurmConf" && a.Sidecar != SidecarSlurm) {
			continue
		}
		if st, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		} else if !st.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("%s: %s is not a regular file", key, p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, b := range []string{"interlink", SidecarBinary(a.Sidecar)} {
		p := filepath.Join(a.BinDir, b)
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			fmt.Fprintf(out, "warning: %s is not an executable yet: install it there before starting the units\n", p)
		}
	}
	return nil
}

// owner is who the service files belong to.
type owner struct {
	uid, gid int
	chown    bool
}

func resolveOwner(name string) (owner, error) {
	u, err := osuser.Lookup(name)
	if os.Geteuid() == 0 {
		if err != nil {
			return owner{}, fmt.Errorf("User: the account %q does not exist on this host: create it first (useradd --system --create-home %s) or answer another User", name, name)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return owner{uid: uid, gid: gid, chown: true}, nil
	}
	cur, cerr := osuser.Current()
	if cerr != nil {
		return owner{}, fmt.Errorf("current user: %w", cerr)
	}
	if err != nil || u.Uid != cur.Uid {
		return owner{}, fmt.Errorf("User: %q is not you (%s), and only root can write files for another account: run as root or answer User: %s", name, cur.Username, cur.Username)
	}
	return owner{}, nil
}

// staticToken reuses the VK's token from an earlier run, or makes one.
func staticToken(a Answers) (string, error) {
	if b, err := os.ReadFile(filepath.Join(a.OutDir, VKTokenName)); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	if b, err := os.ReadFile(filepath.Join(a.ConfigDir, StaticTokensName)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(strings.TrimSpace(line), ",")
			if len(f) >= 2 && f[1] == staticTokenUser && f[0] != "" && !strings.HasPrefix(f[0], "#") {
				return f[0], nil
			}
		}
	}
	return randomToken()
}

// sidecarToken reuses interlink's token to the sidecar from an earlier run,
// or makes one.
func sidecarToken(a Answers) (string, error) {
	if b, err := os.ReadFile(filepath.Join(a.ConfigDir, SidecarTokenName)); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	return randomToken()
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// secretFile tells the files holding a credential: always rewritten.
func secretFile(f File) bool {
	switch filepath.Base(f.Path) {
	case StaticTokensName, VKTokenName, RefreshTokenName, SecretsName, SidecarTokensName, SidecarTokenName:
		return true
	}
	return false
}

// conflicts refuses to overwrite a file that differs, unless forced.
func conflicts(p Plan, force bool) error {
	if force {
		return nil
	}
	var errs []error
	for _, f := range p.Files {
		if secretFile(f) {
			continue
		}
		old, err := os.ReadFile(f.Path)
		if err == nil && !bytes.Equal(old, f.Data) {
			errs = append(errs, fmt.Errorf("%s exists and differs from what would be written", f.Path))
		}
	}
	if len(errs) > 0 {
		errs = append(errs, errors.New("run with --force to overwrite them"))
	}
	return errors.Join(errs...)
}

// Write creates the directories and writes every file atomically (a
// temporary file in the same directory, mode set before any byte is
// written, renamed over the target).
func Write(p Plan, own owner) error {
	for _, d := range p.Dirs {
		if err := os.MkdirAll(d.Path, d.Mode); err != nil {
			return err
		}
		if d.Service && own.chown {
			if err := os.Lchown(d.Path, own.uid, own.gid); err != nil {
				return err
			}
		}
	}
	for _, f := range p.Files {
		if err := writeFile(f, own); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	return nil
}

func writeFile(f File, own owner) error {
	dir := filepath.Dir(f.Path)                                    // made by Write from the plan's Dirs
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".*") // mode 0600
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if f.Service && own.chown {
		if err := tmp.Chown(own.uid, own.gid); err != nil {
			_ = tmp.Close()
			return err
		}
	}
	if _, err := tmp.Write(f.Data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(f.Mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.Path)
}

// sh quotes a word for the commands the summary prints.
func sh(s string) string {
	q, err := syntax.Quote(s, syntax.LangPOSIX)
	if err != nil {
		return "'<unprintable path>'"
	}
	return q
}

func summary(a Answers, p Plan, out io.Writer) error {
	var b strings.Builder
	b.WriteString("\nWrote:\n")
	for _, f := range p.Files {
		fmt.Fprintf(&b, "  %s  %s\n", f.Mode.String(), f.Path)
	}
	sc := SidecarBinary(a.Sidecar)
	fmt.Fprintf(&b, "\nOn this host (as root):\n")
	fmt.Fprintf(&b, "  systemctl daemon-reload\n  systemctl enable --now %s.service interlink.service\n", sc)
	fmt.Fprintf(&b, "  curl -fsS %s/healthz\n", sh(strings.TrimSuffix(a.PublicURL, "/")))
	fmt.Fprintf(&b, "\nOn the cluster (files in %s; keep them private):\n", sh(a.OutDir))
	fmt.Fprintf(&b, "  kubectl create namespace %s\n", sh(a.Namespace))
	for _, f := range p.Files {
		if filepath.Base(f.Path) == SecretsName {
			fmt.Fprintf(&b, "  kubectl apply -n %s -f %s\n", sh(a.Namespace), sh(f.Path))
		}
	}
	fmt.Fprintf(&b, "  helm install interlink charts/interlink -n %s -f %s\n", sh(a.Namespace), sh(filepath.Join(a.OutDir, ValuesName)))
	fmt.Fprintf(&b, "  kubectl get node %s\n", sh(a.NodeName))
	_, err := io.WriteString(out, b.String())
	return err
}

// question is one prompt of Ask.
type question struct {
	key, text string
	field     func(a *Answers) *string
	when      func(a *Answers) bool
}

var questions = []question{
	{"Sidecar", "Sidecar that runs the pods (slurm or docker)", func(a *Answers) *string { return &a.Sidecar }, nil},
	{"PublicURL", "URL where the cluster reaches interlink (https://host:port)", func(a *Answers) *string { return &a.PublicURL }, nil},
	{"TLSCertFile", "interlink's PEM serving certificate", func(a *Answers) *string { return &a.TLSCertFile }, func(a *Answers) bool { return strings.HasPrefix(a.PublicURL, "https://") }},
	{"TLSKeyFile", "its PEM key", func(a *Answers) *string { return &a.TLSKeyFile }, func(a *Answers) bool { return strings.HasPrefix(a.PublicURL, "https://") }},
	{"TLSCAFile", "PEM CA of that certificate, if not a public one (empty: none)", func(a *Answers) *string { return &a.TLSCAFile }, func(a *Answers) bool { return strings.HasPrefix(a.PublicURL, "https://") }},
	{"Auth.Mode", "Authentication (device-code, client-credentials or static)", func(a *Answers) *string { return &a.Auth.Mode }, nil},
	{"Auth.Issuer", "OIDC issuer URL", func(a *Answers) *string { return &a.Auth.Issuer }, func(a *Answers) bool { return a.Auth.Mode != AuthStatic }},
	{"Auth.ClientID", "OAuth2 client ID of the virtual node", func(a *Answers) *string { return &a.Auth.ClientID }, func(a *Answers) bool { return a.Auth.Mode != AuthStatic }},
	{"Auth.Audience", "Audience interlink requires", func(a *Answers) *string { return &a.Auth.Audience }, func(a *Answers) bool { return a.Auth.Mode != AuthStatic }},
	{"Auth.ClientSecretFile", "File holding the client's secret (empty for a public client)", func(a *Answers) *string { return &a.Auth.ClientSecretFile }, func(a *Answers) bool { return a.Auth.Mode != AuthStatic }},
	{"NodeName", "Name of the virtual node", func(a *Answers) *string { return &a.NodeName }, nil},
	{"User", "Account that runs the services", func(a *Answers) *string { return &a.User }, nil},
	{"Slurm.DataRootFolder", "Pod data directory, on the filesystem the compute nodes share", func(a *Answers) *string { return &a.Slurm.DataRootFolder }, func(a *Answers) bool { return a.Sidecar == SidecarSlurm }},
}

// Ask prompts for the main answers on a terminal; an empty line keeps the
// value shown in brackets.
func Ask(a *Answers, in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	for _, q := range questions {
		if q.key == "Auth.Mode" && a.Auth.Mode == "" {
			probe := *a
			probe.Complete()
			a.Auth.Mode = probe.Auth.Mode
		}
		if q.key == "NodeName" && a.NodeName == "" && a.Sidecar != "" {
			a.NodeName = "interlink-" + a.Sidecar
		}
		if q.key == "Slurm.DataRootFolder" && a.Slurm.DataRootFolder == "" && a.StateDir != "" {
			a.Slurm.DataRootFolder = filepath.Join(a.StateDir, "jobs")
		}
		if q.when != nil && !q.when(a) {
			continue
		}
		p := q.field(a)
		fmt.Fprintf(out, "%s [%s]: ", q.text, *p)
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return fmt.Errorf("reading the answer to %s: %w", q.key, err)
		}
		if v := strings.TrimSpace(line); v != "" {
			*p = v
		}
	}
	return nil
}
