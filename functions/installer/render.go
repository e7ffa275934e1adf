package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/yaml"

	"github.com/seed-3f807049/interlink/functions"
	"github.com/seed-3f807049/interlink/sidecars/docker"
	"github.com/seed-3f807049/interlink/sidecars/slurm"
)

// Names of what the installer writes (file and Secret names, not
// credentials).
//
//nolint:gosec // G101: names, not credentials
const (
	InterlinkConfigName  = "interlink.yaml"
	StaticTokensName     = "static-tokens.csv"
	SidecarTokensName    = "sidecar-tokens.csv"
	SidecarTokenName     = "sidecar-token"
	InterlinkUnitName    = "interlink.service"
	ValuesName           = "values.yaml"
	SecretsName          = "secrets.yaml"
	VKTokenName          = "vk-token"
	RefreshTokenName     = "refresh-token"
	TokenSecretName      = "interlink-vk-token"
	RefreshSecretName    = "interlink-vk-refresh-token"
	ClientSecretName     = "interlink-vk-oidc-client"
	CASecretName         = "interlink-ca"
	staticTokenUser      = "interlink-vk"
	sidecarTokenUser     = "interlink"
	headerManagedComment = "Written by interlink-installer; run it again rather than editing by hand."
)

// Secrets are what the installer obtained or generated; they go only into
// 0600 files.
type Secrets struct {
	// StaticToken is the VK's bearer token (static mode).
	StaticToken string
	// SidecarToken is interlink's bearer token to a sidecar on TCP
	// (SidecarPort set).
	SidecarToken string
	// RefreshToken is the VK's first refresh token (device-code mode).
	RefreshToken string
	// ClientSecret is the OIDC client's secret, read from ClientSecretFile.
	ClientSecret string
	// TokenURL is the issuer's token endpoint, from discovery.
	TokenURL string
	// CACert is the PEM of TLSCAFile (not a secret, but shipped in one).
	CACert string
}

// File is one file to write.
type File struct {
	Path string
	Mode fs.FileMode
	Data []byte
	// Service files (configs, the state tree) belong to the service user.
	Service bool
}

// Dir is a directory to create.
type Dir struct {
	Path    string
	Mode    fs.FileMode
	Service bool
}

// Plan is everything the installer writes.
type Plan struct {
	Dirs  []Dir
	Files []File
}

// SidecarBinary is the binary (and unit and config base name) of a sidecar.
func SidecarBinary(sidecar string) string { return "interlink-" + sidecar }

// Render computes the files for valid, completed answers.
func Render(a Answers, s Secrets) (Plan, error) {
	var p Plan
	sc := SidecarBinary(a.Sidecar)
	ilCfg := filepath.Join(a.ConfigDir, InterlinkConfigName)
	scCfg := filepath.Join(a.ConfigDir, sc+".yaml")

	il, err := interlinkConfig(a)
	if err != nil {
		return p, err
	}
	side, err := sidecarConfig(a)
	if err != nil {
		return p, err
	}
	dataRoot := a.Docker.DataRootFolder
	if a.Sidecar == SidecarSlurm {
		dataRoot = a.Slurm.DataRootFolder
	}
	p.Dirs = []Dir{
		{Path: a.ConfigDir, Mode: 0o700, Service: true},
		{Path: a.StateDir, Mode: 0o700, Service: true},
		{Path: dataRoot, Mode: 0o700, Service: true},
		{Path: a.UnitDir, Mode: 0o755},
		{Path: a.OutDir, Mode: 0o700},
	}
	p.Files = append(p.Files,
		File{Path: ilCfg, Mode: 0o600, Data: il, Service: true},
		File{Path: scCfg, Mode: 0o600, Data: side, Service: true},
	)
	if a.Auth.Mode == AuthStatic {
		if s.StaticToken == "" {
			return p, errors.New("static mode needs a generated token")
		}
		csv := fmt.Sprintf("# %s\n# token,user[,groups]: the token of virtual node %s\n%s,%s\n", headerManagedComment, a.NodeName, s.StaticToken, staticTokenUser)
		p.Files = append(p.Files, File{Path: filepath.Join(a.ConfigDir, StaticTokensName), Mode: 0o600, Data: []byte(csv), Service: true})
	}

	if a.SidecarPort != 0 {
		if s.SidecarToken == "" {
			return p, errors.New("a sidecar on TCP needs a generated token")
		}
		csv := fmt.Sprintf("# %s\n# token,user[,groups]: the token interlink presents to %s\n%s,%s\n", headerManagedComment, sc, s.SidecarToken, sidecarTokenUser)
		p.Files = append(p.Files,
			File{Path: filepath.Join(a.ConfigDir, SidecarTokensName), Mode: 0o600, Data: []byte(csv), Service: true},
			File{Path: filepath.Join(a.ConfigDir, SidecarTokenName), Mode: 0o600, Data: []byte(s.SidecarToken + "\n"), Service: true})
	}

	// Units.
	ilUnit, scUnit, err := units(a, ilCfg, scCfg, dataRoot)
	if err != nil {
		return p, err
	}
	p.Files = append(p.Files,
		File{Path: filepath.Join(a.UnitDir, InterlinkUnitName), Mode: 0o644, Data: ilUnit},
		File{Path: filepath.Join(a.UnitDir, sc+".service"), Mode: 0o644, Data: scUnit},
	)

	// Cluster side.
	values, err := helmValues(a, s)
	if err != nil {
		return p, err
	}
	p.Files = append(p.Files, File{Path: filepath.Join(a.OutDir, ValuesName), Mode: 0o644, Data: values})
	secrets, err := secretManifests(a, s)
	if err != nil {
		return p, err
	}
	if secrets != nil {
		p.Files = append(p.Files, File{Path: filepath.Join(a.OutDir, SecretsName), Mode: 0o600, Data: secrets})
	}
	switch a.Auth.Mode {
	case AuthStatic:
		p.Files = append(p.Files, File{Path: filepath.Join(a.OutDir, VKTokenName), Mode: 0o600, Data: []byte(s.StaticToken + "\n")})
	case AuthDeviceCode:
		if s.RefreshToken == "" {
			return p, errors.New("device-code mode needs the refresh token")
		}
		p.Files = append(p.Files, File{Path: filepath.Join(a.OutDir, RefreshTokenName), Mode: 0o600, Data: []byte(s.RefreshToken + "\n")})
	}
	return p, nil
}

// withHeader marshals v as YAML under a comment.
func withHeader(comment string, v any) ([]byte, error) {
	out, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte("# "+comment+"\n# "+headerManagedComment+"\n"), out...), nil
}

// checkStrict loads raw into cfg (holding its defaults) refusing unknown
// keys, then validates it: what the binary will do with the file.
func checkStrict(name string, raw []byte, cfg interface{ Validate() error }) error {
	if err := yaml.UnmarshalStrict(raw, cfg); err != nil {
		return fmt.Errorf("rendered %s does not load: %w", name, err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("rendered %s is not valid: %w", name, err)
	}
	return nil
}

func interlinkConfig(a Answers) ([]byte, error) {
	host, port, _ := net.SplitHostPort(a.Listen)
	scheme := "http"
	if a.TLSCertFile != "" {
		scheme = "https"
	}
	auth := map[string]any{}
	switch a.Auth.Mode {
	case AuthStatic:
		auth["StaticTokensFile"] = filepath.Join(a.ConfigDir, StaticTokensName)
		if len(a.Auth.AllowedSubjects) > 0 {
			auth["AllowedSubjects"] = a.Auth.AllowedSubjects
		}
	default:
		auth["Issuers"] = []string{a.Auth.Issuer}
		auth["Audiences"] = []string{a.Auth.Audience}
		auth["GroupsClaim"] = a.Auth.GroupsClaim
		if len(a.Auth.AllowedSubjects) > 0 {
			auth["AllowedSubjects"] = a.Auth.AllowedSubjects
		}
		if len(a.Auth.AllowedGroups) > 0 {
			auth["AllowedGroups"] = a.Auth.AllowedGroups
		}
	}
	cfg := map[string]any{
		"InterlinkAddress": scheme + "://" + hostForURL(host),
		"InterlinkPort":    port,
		"SidecarService":   a.Sidecar,
		"SidecarURL":       "unix://" + a.SidecarSocket(),
		"Auth":             auth,
		"LogFormat":        "json",
	}
	if a.SidecarPort != 0 {
		cfg["SidecarURL"] = "http://127.0.0.1"
		cfg["SidecarPort"] = strconv.Itoa(a.SidecarPort)
		cfg["SidecarTokenFile"] = filepath.Join(a.ConfigDir, SidecarTokenName)
	}
	if a.TLSCertFile != "" {
		cfg["TLS"] = map[string]any{"Enabled": true, "CertFile": a.TLSCertFile, "KeyFile": a.TLSKeyFile}
	}
	out, err := withHeader("interlink: the interLink API server and its embedded authenticating proxy (docs/config.md#interlink).", cfg)
	if err != nil {
		return nil, err
	}
	check := functions.DefaultConfig()
	return out, checkStrict(InterlinkConfigName, out, &check)
}

// hostForURL brackets an IPv6 literal.
func hostForURL(h string) string {
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		return "[" + h + "]"
	}
	return h
}

// sidecarListen is the sidecar's Listen and Auth: the socket, which only
// User reaches (StateDir is 0700, the socket 0660 in User's group), or TCP
// loopback requiring interlink's token.
func sidecarListen(a Answers, cfg map[string]any) {
	if a.SidecarPort == 0 {
		cfg["Listen"] = a.SidecarSocket()
		return
	}
	cfg["Listen"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.SidecarPort))
	cfg["Auth"] = map[string]any{"TokenFile": filepath.Join(a.ConfigDir, SidecarTokensName)}
}

func sidecarConfig(a Answers) ([]byte, error) {
	name := SidecarBinary(a.Sidecar) + ".yaml"
	switch a.Sidecar {
	case SidecarSlurm:
		s := a.Slurm
		cfg := map[string]any{
			"DataRootFolder": s.DataRootFolder,
			"StatePath":      filepath.Join(a.StateDir, "slurm-state.db"),
			"Runtime":        s.Runtime,
			"LogFormat":      "json",
		}
		for key, v := range map[string]string{"Partition": s.Partition, "Account": s.Account, "ImageRoot": s.ImageRoot} {
			if v != "" {
				cfg[key] = v
			}
		}
		if s.CommandsDir != "" {
			for key, cmd := range map[string]string{"SbatchPath": "sbatch", "ScancelPath": "scancel", "SqueuePath": "squeue", "SinfoPath": "sinfo", "SacctPath": "sacct"} {
				cfg[key] = filepath.Join(s.CommandsDir, cmd)
			}
		}
		sidecarListen(a, cfg)
		out, err := withHeader("interlink-slurm: the SLURM sidecar (docs/config.md#interlink-slurm, docs/slurm.md).", cfg)
		if err != nil {
			return nil, err
		}
		check := slurm.DefaultConfig()
		return out, checkStrict(name, out, &check)
	default:
		d := a.Docker
		cfg := map[string]any{
			"DockerHost":     d.DockerHost,
			"DataRootFolder": d.DataRootFolder,
			"NetworkMode":    d.NetworkMode,
			"LogFormat":      "json",
		}
		sidecarListen(a, cfg)
		out, err := withHeader("interlink-docker: the Docker sidecar (docs/config.md#interlink-docker, docs/docker.md).", cfg)
		if err != nil {
			return nil, err
		}
		check := docker.DefaultConfig()
		return out, checkStrict(name, out, &check)
	}
}

func units(a Answers, ilCfg, scCfg, dataRoot string) (il, sc []byte, err error) {
	scName := SidecarBinary(a.Sidecar)
	_, port, _ := net.SplitHostPort(a.Listen)
	p, _ := strconv.Atoi(port)
	notes := []string{headerManagedComment}
	ilSvc := service{
		Description: "interLink API server (with its embedded authenticating proxy)",
		Wants:       []string{"network-online.target", scName + ".service"},
		After:       []string{"network-online.target", scName + ".service"},
		User:        a.User,
		Exec:        []string{filepath.Join(a.BinDir, "interlink"), "--config", ilCfg},
		BindService: p < 1024,
		Notes:       notes,
	}
	if a.SidecarPort == 0 {
		ilSvc.SeePaths = []string{a.StateDir} // the sidecar's socket
	}
	scSvc := service{
		User:           a.User,
		Exec:           []string{filepath.Join(a.BinDir, scName), "--config", scCfg},
		ReadWritePaths: []string{a.StateDir},
		Notes:          notes,
	}
	if dataRoot != a.StateDir && !underAny(dataRoot, []string{a.StateDir}) {
		scSvc.ReadWritePaths = append(scSvc.ReadWritePaths, dataRoot)
	}
	switch a.Sidecar {
	case SidecarSlurm:
		scSvc.Description = "interLink SLURM sidecar (submits pods as SLURM jobs)"
		scSvc.FullProc = true
		scSvc.Wants = []string{"network-online.target"}
		scSvc.After = []string{"network-online.target", "munge.service"}
		scSvc.Notes = append(scSvc.Notes,
			"sbatch, squeue and scancel run as "+a.User+": jobs are submitted as that account, which must exist on",
			"the compute nodes; the data root must be on the filesystem they share.")
		if a.Slurm.SlurmConf != "" {
			scSvc.Env = append(scSvc.Env, [2]string{"SLURM_CONF", a.Slurm.SlurmConf})
		}
	default:
		scSvc.Description = "interLink Docker sidecar (runs pods as containers)"
		scSvc.Wants = []string{"network-online.target"}
		scSvc.After = []string{"network-online.target", "docker.service"}
		if a.Docker.Group != "" {
			scSvc.SupplementaryGroups = []string{a.Docker.Group}
			scSvc.Notes = append(scSvc.Notes, "Membership of "+a.Docker.Group+" gives the Docker socket, which is as good as root on this host.")
		}
	}
	var b1, b2 bytes.Buffer
	if err := ilSvc.render(&b1); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", InterlinkUnitName, err)
	}
	if err := scSvc.render(&b2); err != nil {
		return nil, nil, fmt.Errorf("%s.service: %w", scName, err)
	}
	return b1.Bytes(), b2.Bytes(), nil
}

// helmValues targets charts/interlink/values.yaml (remote mode).
func helmValues(a Answers, s Secrets) ([]byte, error) {
	u, err := url.Parse(a.PublicURL)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portOf(u))
	token := map[string]any{}
	switch a.Auth.Mode {
	case AuthStatic:
		token["existingSecret"] = TokenSecretName
		token["existingSecretKey"] = "token"
	default:
		if s.TokenURL == "" {
			return nil, errors.New("the issuer's token endpoint is unknown (discovery did not run)")
		}
		r := map[string]any{
			"enabled":  true,
			"tokenURL": s.TokenURL,
			"clientID": a.Auth.ClientID,
			"audience": a.Auth.Audience,
			"grant":    "client_credentials",
		}
		if len(a.Auth.Scopes) > 0 {
			r["scopes"] = a.Auth.Scopes
		}
		if s.ClientSecret != "" {
			r["clientSecret"] = map[string]any{"existingSecret": ClientSecretName, "key": "client-secret"}
		}
		if a.Auth.Mode == AuthDeviceCode {
			r["grant"] = "refresh_token"
			r["refreshToken"] = map[string]any{"existingSecret": RefreshSecretName, "key": "refresh-token"}
		}
		token["refresher"] = r
	}
	il := map[string]any{"url": u.Scheme + "://" + hostForURL(u.Hostname()), "port": port}
	if s.CACert != "" {
		il["caSecret"], il["caSecretKey"] = CASecretName, "ca.crt"
	}
	values := map[string]any{
		"nodeName":  a.NodeName,
		"interlink": il,
		"token":     token,
		"node":      map[string]any{"cpu": a.Node.CPU, "memory": a.Node.Memory, "pods": a.Node.Pods},
	}
	apply := ""
	if a.Auth.Mode != AuthClientCredentials || s.ClientSecret != "" || s.CACert != "" {
		apply = fmt.Sprintf(" kubectl apply -n %s -f %s;", a.Namespace, SecretsName)
	}
	comment := fmt.Sprintf("Helm values of charts/interlink for virtual node %s, reaching interlink at %s.\n# Install: kubectl create namespace %s;%s helm install interlink charts/interlink -n %s -f %s",
		a.NodeName, a.PublicURL, a.Namespace, apply, a.Namespace, ValuesName)
	return withHeader(comment, values)
}

// secretManifests are the Secrets the values name, or nil.
func secretManifests(a Answers, s Secrets) ([]byte, error) {
	secret := func(name string, data map[string]string) map[string]any {
		return map[string]any{
			"apiVersion": "v1",
			"kind":       "Secret",
			"metadata":   map[string]any{"name": name, "namespace": a.Namespace, "labels": map[string]string{"app.kubernetes.io/part-of": "interlink"}},
			"type":       "Opaque",
			"stringData": data,
		}
	}
	var list []map[string]any
	switch a.Auth.Mode {
	case AuthStatic:
		list = append(list, secret(TokenSecretName, map[string]string{"token": s.StaticToken}))
	case AuthDeviceCode:
		list = append(list, secret(RefreshSecretName, map[string]string{"refresh-token": s.RefreshToken}))
	}
	if a.Auth.Mode != AuthStatic && s.ClientSecret != "" {
		list = append(list, secret(ClientSecretName, map[string]string{"client-secret": s.ClientSecret}))
	}
	if s.CACert != "" {
		list = append(list, secret(CASecretName, map[string]string{"ca.crt": s.CACert}))
	}
	if len(list) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteString("# Secrets of the virtual node's credentials: keep this file private (mode 0600).\n# " + headerManagedComment + "\n")
	for _, sec := range list {
		out, err := yaml.Marshal(sec)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(out)
	}
	return b.Bytes(), nil
}
