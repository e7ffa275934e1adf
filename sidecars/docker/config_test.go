package docker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-3f807049/interlink/observability/config"
)

// TestListenAuth: the default is a unix socket in the home directory; TCP
// (the original's SidecarPort, or a host:port Listen) refuses to start
// without a credential, naming the keys to set, and starts with one.
func TestListenAuth(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if got, want := cfg.ListenAddr(), filepath.Join(home, ".local/interlink/docker.sock"); got != want {
		t.Errorf("default ListenAddr %q, want %q", got, want)
	}

	tcp := DefaultConfig()
	tcp.SidecarPort = "4000"
	err := tcp.Validate()
	if err == nil {
		t.Fatal("TCP without a credential is valid")
	}
	for _, want := range []string{"127.0.0.1:4000", "Auth.TokenFile (INTERLINK_DOCKER_AUTH_TOKEN_FILE)", "Auth.ClientCAFile (INTERLINK_DOCKER_AUTH_CLIENT_CA_FILE)", "Auth.Insecure (INTERLINK_DOCKER_AUTH_INSECURE)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	tcp.Auth.TokenFile = filepath.Join(home, "tokens.csv")
	if err := tcp.Validate(); err != nil {
		t.Errorf("TCP with a token file: %v", err)
	}
	if got := tcp.ListenAddr(); got != "127.0.0.1:4000" {
		t.Errorf("SidecarPort's ListenAddr %q, want 127.0.0.1:4000", got)
	}

	// The same from a file and the environment, as the binary loads them.
	file := filepath.Join(home, "docker.yaml")
	if err := os.WriteFile(file, []byte("Listen: 127.0.0.1:4000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	if _, err := config.Load(&c, file); err == nil || !strings.Contains(err.Error(), "without a credential") {
		t.Errorf("a TCP Listen without a credential loaded: %v", err)
	}
	t.Setenv("INTERLINK_DOCKER_AUTH_INSECURE", "true")
	c = DefaultConfig()
	if _, err := config.Load(&c, file); err != nil || !c.Auth.Insecure {
		t.Errorf("INTERLINK_DOCKER_AUTH_INSECURE: %v %+v", err, c.Auth)
	}
}
