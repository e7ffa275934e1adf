package installer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validDocker is a complete, valid set of answers.
func validDocker() Answers {
	a := DefaultAnswers()
	a.Sidecar = SidecarDocker
	a.PublicURL = "https://hpc.example.org:3000"
	a.TLSCertFile, a.TLSKeyFile = "/etc/interlink/tls.crt", "/etc/interlink/tls.key"
	return a
}

func TestValidAnswers(t *testing.T) {
	for _, a := range []Answers{validDocker(), func() Answers {
		a := validDocker()
		a.Sidecar = SidecarSlurm
		a.Auth = AuthAnswers{Issuer: "https://iam.example.org/", ClientID: "vk", Audience: "interlink", GroupsClaim: "groups"}
		return a
	}()} {
		a.Complete()
		if err := a.Validate(); err != nil {
			t.Errorf("%s: %v", a.Sidecar, err)
		}
	}
}

func TestComplete(t *testing.T) {
	a := DefaultAnswers()
	a.Sidecar, a.PublicURL = SidecarSlurm, "http://127.0.0.1:3000"
	a.Auth.Issuer = "http://127.0.0.1:4444"
	a.Complete()
	want := map[string]string{
		"Auth.Mode": a.Auth.Mode, "NodeName": a.NodeName, "Listen": a.Listen,
		"Slurm.DataRootFolder": a.Slurm.DataRootFolder, "Scopes": strings.Join(a.Auth.Scopes, " "),
	}
	for k, got := range map[string]string{
		"Auth.Mode": AuthDeviceCode, "NodeName": "interlink-slurm", "Listen": "127.0.0.1:3000",
		"Slurm.DataRootFolder": "/var/lib/interlink/jobs", "Scopes": "openid offline_access",
	} {
		if want[k] != got {
			t.Errorf("%s = %q, want %q", k, want[k], got)
		}
	}
	if a.SidecarPort != 0 || a.SidecarSocket() != "/var/lib/interlink/slurm.sock" {
		t.Errorf("SidecarPort = %d, socket %s: want the unix socket in StateDir", a.SidecarPort, a.SidecarSocket())
	}
}

// TestBadAnswers: every bad answer is refused with an error naming it.
func TestBadAnswers(t *testing.T) {
	cases := []struct {
		key    string
		mutate func(*Answers)
		want   string
	}{
		{"Sidecar", func(a *Answers) { a.Sidecar = "" }, "missing"},
		{"Sidecar", func(a *Answers) { a.Sidecar = "pbs" }, `"pbs": want slurm or docker`},
		{"PublicURL", func(a *Answers) { a.PublicURL = "" }, "missing"},
		{"PublicURL", func(a *Answers) { a.PublicURL = "ftp://x:1" }, "want https://host:port"},
		{"PublicURL", func(a *Answers) { a.PublicURL = "https://x:3000/api" }, "no path"},
		{"PublicURL", func(a *Answers) { a.PublicURL = "https://x:99999" }, "want 1 to 65535"},
		{"PublicURL", func(a *Answers) { a.TLSCertFile, a.TLSKeyFile = "", "" }, "set TLSCertFile and TLSKeyFile"},
		{"PublicURL", func(a *Answers) { a.PublicURL = "http://hpc.example.org:3000"; a.TLSCertFile, a.TLSKeyFile = "", "" }, "plain http off loopback"},
		{"Listen", func(a *Answers) {
			a.PublicURL, a.Listen, a.TLSCertFile, a.TLSKeyFile = "http://127.0.0.1:3000", "0.0.0.0:3000", "", ""
		}, "plain http off loopback"},
		{"Listen", func(a *Answers) { a.Listen = "nowhere" }, "want ip:port"},
		{"Listen", func(a *Answers) { a.Listen = "0.0.0.0:4000"; a.SidecarPort = 4000 }, "is also SidecarPort"},
		{"TLSCertFile", func(a *Answers) { a.TLSKeyFile = "" }, "go together"},
		{"TLSKeyFile", func(a *Answers) { a.TLSKeyFile = "tls.key" }, "absolute path"},
		{"TLSCAFile", func(a *Answers) { a.TLSCAFile = "ca.crt" }, "absolute path"},
		{"TLSCAFile", func(a *Answers) {
			a.PublicURL, a.TLSCertFile, a.TLSKeyFile, a.TLSCAFile = "http://127.0.0.1:3000", "", "", "/ca.crt"
		}, "without TLSCertFile"},
		{"Node.CPU", func(a *Answers) { a.Node.CPU = "1e3" }, "such as 100"},
		{"Auth.Mode", func(a *Answers) { a.Auth.Mode = "kerberos" }, "want device-code, client-credentials, static"},
		{"Auth.Issuer", func(a *Answers) { a.Auth.Mode = AuthStatic; a.Auth.Issuer = "https://iam" }, "Auth.Mode is static"},
		{"Auth.AllowedGroups", func(a *Answers) { a.Auth.Mode = AuthStatic; a.Auth.AllowedGroups = []string{"g"} }, "no groups"},
		{"Auth.Issuer", func(a *Answers) { a.Auth.Mode = AuthDeviceCode; a.Auth.ClientID = "vk" }, "missing"},
		{"Auth.Issuer", func(a *Answers) {
			a.Auth.Mode, a.Auth.Issuer, a.Auth.ClientID = AuthDeviceCode, "http://iam.example.org", "vk"
		}, "must use https"},
		{"Auth.ClientID", func(a *Answers) { a.Auth.Mode, a.Auth.Issuer = AuthDeviceCode, "https://iam.example.org" }, "missing"},
		{"Auth.Audience", func(a *Answers) {
			a.Auth.Mode, a.Auth.Issuer, a.Auth.ClientID, a.Auth.Audience = AuthDeviceCode, "https://iam.example.org", "vk", ""
		}, "missing"},
		{"Auth.ClientSecretFile", func(a *Answers) {
			a.Auth.Mode, a.Auth.Issuer, a.Auth.ClientID = AuthClientCredentials, "https://iam", "vk"
		}, "missing"},
		{"Auth.ClientSecretFile", func(a *Answers) {
			a.Auth.Mode, a.Auth.Issuer, a.Auth.ClientID, a.Auth.ClientSecretFile = AuthClientCredentials, "https://iam", "vk", "secret"
		}, "absolute path"},
		{"Auth.Scopes", func(a *Answers) {
			a.Auth.Mode, a.Auth.Issuer, a.Auth.ClientID, a.Auth.Scopes = AuthDeviceCode, "https://iam", "vk", []string{"a b"}
		}, "not a scope"},
		{"NodeName", func(a *Answers) { a.NodeName = "Not_A_Node" }, "not a valid node name"},
		{"Namespace", func(a *Answers) { a.Namespace = "a.b" }, "not a valid namespace"},
		{"Node.CPU", func(a *Answers) { a.Node.CPU = "lots" }, "not a Kubernetes quantity"},
		{"Node.Memory", func(a *Answers) { a.Node.Memory = "1 GB" }, "not a Kubernetes quantity"},
		{"SidecarPort", func(a *Answers) { a.SidecarPort = 70000 }, "want 1 to 65535"},
		{"StateDir", func(a *Answers) { a.StateDir = "/srv/" + strings.Repeat("x", 100) }, "longer than a unix socket path"},
		{"User", func(a *Answers) { a.User = "Root Admin" }, "not a valid user name"},
		{"User", func(a *Answers) { a.User = "%i" }, "not a valid user name"},
		{"BinDir", func(a *Answers) { a.BinDir = "bin" }, "absolute path"},
		{"BinDir", func(a *Answers) { a.BinDir = "/opt/$HOME/bin" }, "must not contain '$'"},
		{"ConfigDir", func(a *Answers) { a.ConfigDir = "/etc/inter link" }, "whitespace"},
		{"ConfigDir", func(a *Answers) { a.ConfigDir = "/etc/interlink/" }, "not clean"},
		{"StateDir", func(a *Answers) { a.StateDir = "/" }, "not allowed"},
		{"UnitDir", func(a *Answers) { a.UnitDir = `/etc/"systemd"` }, "quotes"},
		{"UnitDir", func(a *Answers) { a.UnitDir = "/etc/\xff" }, "UTF-8"},
		{"OutDir", func(a *Answers) { a.OutDir = "" }, "missing"},
		{"Docker.DataRootFolder", func(a *Answers) { a.Docker.DataRootFolder = "/data:/etc" }, "':'"},
		{"Docker.DockerHost", func(a *Answers) { a.Docker.DockerHost = "/var/run/docker.sock" }, "want unix:///path or tcp://host:port"},
		{"Docker.DockerHost", func(a *Answers) { a.Docker.DockerHost = "tcp://nohost" }, "want tcp://host:port"},
		{"Docker.Group", func(a *Answers) { a.Docker.Group = "Docker Users" }, "not a valid group name"},
		{"Docker.NetworkMode", func(a *Answers) { a.Docker.NetworkMode = "container:x" }, "want bridge"},
		{"Slurm.Runtime", func(a *Answers) { a.Sidecar = SidecarSlurm; a.Slurm.Runtime = "docker" }, "want one of singularity"},
		{"Slurm.Partition", func(a *Answers) { a.Sidecar = SidecarSlurm; a.Slurm.Partition = "gpu;rm -rf" }, "not a valid Slurm name"},
		{"Slurm.Account", func(a *Answers) { a.Sidecar = SidecarSlurm; a.Slurm.Account = "a b" }, "not a valid Slurm name"},
		{"Slurm.DataRootFolder", func(a *Answers) { a.Sidecar = SidecarSlurm; a.Slurm.DataRootFolder = "jobs" }, "absolute path"},
		{"Slurm.SlurmConf", func(a *Answers) { a.Sidecar = SidecarSlurm; a.Slurm.SlurmConf = "slurm.conf" }, "absolute path"},
		{"Slurm.CommandsDir", func(a *Answers) { a.Sidecar = SidecarSlurm; a.Slurm.CommandsDir = "/opt/slurm bin" }, "whitespace"},
	}
	for _, tc := range cases {
		t.Run(tc.key+"/"+tc.want, func(t *testing.T) {
			a := validDocker()
			tc.mutate(&a)
			a.Complete()
			err := a.Validate()
			if err == nil {
				t.Fatalf("accepted")
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, tc.key+": ") && strings.Contains(line, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error %q naming %s in:\n%v", tc.want, tc.key, err)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	a := DefaultAnswers()
	a.User = "Bad User"
	a.Complete()
	err := a.Validate()
	for _, key := range []string{"Sidecar:", "PublicURL:", "User:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s not reported in %v", key, err)
		}
	}
}

func TestLoadAnswers(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("Sidecar: slurm\nPublicURL: https://h:3000\nSlurm:\n  Partition: gpu\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := DefaultAnswers()
	if err := LoadAnswers(good, &a); err != nil {
		t.Fatal(err)
	}
	if a.Sidecar != "slurm" || a.Slurm.Partition != "gpu" || a.User != DefaultUser {
		t.Errorf("loaded %+v", a)
	}
	for name, body := range map[string]string{
		"unknown.yaml": "Sidecar: slurm\nPublicAddress: https://h:3000\n",
		"type.yaml":    "SidecarPort: many\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		a := DefaultAnswers()
		err := LoadAnswers(p, &a)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want one naming the file", name, err)
		}
		if name == "unknown.yaml" && !strings.Contains(err.Error(), "PublicAddress") {
			t.Errorf("the unknown key is not named: %v", err)
		}
	}
}

func TestMainFlags(t *testing.T) {
	var out bytes.Buffer
	err := Main(context.Background(), []string{"--sidecar-port", "x"}, nil, &out, false)
	if err == nil || !strings.Contains(err.Error(), "sidecar-port") {
		t.Errorf("err = %v", err)
	}
	err = Main(context.Background(), []string{"stray"}, nil, &out, false)
	if err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("err = %v", err)
	}
	err = Main(context.Background(), []string{"--sidecar", "pbs", "--public-url", "https://h:3000"}, nil, &out, false)
	if err == nil || !strings.Contains(err.Error(), `Sidecar: "pbs"`) || !strings.Contains(err.Error(), "PublicURL:") {
		t.Errorf("err = %v", err)
	}
	tmpl := filepath.Join(t.TempDir(), "answers.yaml")
	if err := Main(context.Background(), []string{"--init", tmpl}, nil, &out, false); err != nil {
		t.Fatal(err)
	}
	a := DefaultAnswers()
	if err := LoadAnswers(tmpl, &a); err != nil {
		t.Fatalf("the --init template does not load: %v", err)
	}
	if err := Main(context.Background(), []string{"--init", tmpl}, nil, &out, false); err == nil {
		t.Error("--init overwrote a file")
	}
}

func TestAsk(t *testing.T) {
	a := DefaultAnswers()
	in := strings.NewReader("slurm\nhttp://127.0.0.1:3000\n\ncluster-a\n\n/shared/jobs\n")
	var out bytes.Buffer
	if err := Ask(&a, in, &out); err != nil {
		t.Fatal(err)
	}
	a.Complete()
	if a.Sidecar != "slurm" || a.PublicURL != "http://127.0.0.1:3000" || a.Auth.Mode != AuthStatic ||
		a.NodeName != "cluster-a" || a.User != DefaultUser || a.Slurm.DataRootFolder != "/shared/jobs" {
		t.Errorf("answers %+v", a)
	}
	if err := a.Validate(); err != nil {
		t.Error(err)
	}
	if !strings.Contains(out.String(), "Name of the virtual node [interlink-slurm]") {
		t.Errorf("prompts:\n%s", out.String())
	}
	// Input ends before every question is answered.
	b := DefaultAnswers()
	if err := Ask(&b, strings.NewReader("docker\n"), &out); err == nil || !strings.Contains(err.Error(), "PublicURL") {
		t.Errorf("err = %v", err)
	}
}
