package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/proxy"
)

// Auth is how a sidecar (SLURM, Docker) authenticates its caller,
// interlink. On a unix socket the socket's file mode is the credential: the
// socket is 0660, so only its owner and its group (which must hold only
// interlink's account) may connect. On TCP anyone who reaches the port
// could submit pods as the sidecar's account, so a credential is required:
// a bearer token (TokenFile) or a client certificate (CertFile, KeyFile and
// ClientCAFile), or else the explicit Insecure. The YAML keys are under
// Auth; the environment variables take the sidecar's prefix
// (INTERLINK_SLURM_AUTH_, INTERLINK_DOCKER_AUTH_).
type Auth struct {
	TokenFile    string `json:"TokenFile" env:"TOKEN_FILE" doc:"CSV file of the bearer tokens a caller must present: token,user[,groups] lines, as interlink's Auth.StaticTokensFile; reloaded when it changes. interlink sends its token with SidecarTokenFile. Required on TCP unless ClientCAFile or Insecure is set."`
	CertFile     string `json:"CertFile" env:"CERT_FILE" doc:"PEM serving certificate: the TCP listener serves HTTPS (reloaded when it changes)."`
	KeyFile      string `json:"KeyFile" env:"KEY_FILE" doc:"PEM key of CertFile."`
	ClientCAFile string `json:"ClientCAFile" env:"CLIENT_CA_FILE" doc:"PEM CA of the client certificates accepted as a credential (with CertFile and KeyFile); interlink presents one with SidecarCertFile and SidecarKeyFile."`
	Insecure     bool   `json:"Insecure" env:"INSECURE" doc:"Serve TCP without any credential: whoever reaches the port submits pods as the sidecar's account. Only for tests, or an original interLink (which sends no credential) on a host without other users; logged loudly at start."`
}

// SidecarListen returns the address a sidecar serves: listen (host:port, or
// a unix socket path, absolute, unix://path, or ~/path in the home
// directory), unless port (the original's SidecarPort) is set: then TCP on
// that port, on listen's host when listen is host:port, else on loopback.
func SidecarListen(listen, port string) (string, error) {
	_, socket := socketPath(listen)
	home := strings.HasPrefix(listen, "~/")
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("SidecarPort %q: want 1 to 65535", port)
		}
		if socket || home {
			return net.JoinHostPort("127.0.0.1", port), nil
		}
		return config.WithPort(listen, port), nil
	}
	if home {
		p, err := config.ExpandHome(listen)
		if err != nil {
			return "", fmt.Errorf("Listen: %w", err)
		}
		return p, nil
	}
	return listen, nil
}

// credential tells whether a credential is required.
func (a *Auth) credential() bool { return a.TokenFile != "" || a.ClientCAFile != "" }

// Validate checks a against the address the sidecar serves (host:port, or a
// unix socket path); env is the prefix of its environment variables
// (INTERLINK_SLURM_AUTH_), named in the messages with the YAML keys.
func (a *Auth) Validate(listen, env string) error {
	var errs []error
	key := func(name, suffix string) string { return fmt.Sprintf("Auth.%s (%s%s)", name, env, suffix) }
	_, socket := socketPath(listen)
	if (a.CertFile == "") != (a.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together", key("CertFile", "CERT_FILE"), key("KeyFile", "KEY_FILE")))
	}
	if a.ClientCAFile != "" && a.CertFile == "" {
		errs = append(errs, fmt.Errorf("%s needs %s and %s: client certificates are checked over HTTPS", key("ClientCAFile", "CLIENT_CA_FILE"),
			key("CertFile", "CERT_FILE"), key("KeyFile", "KEY_FILE")))
	}
	if socket && a.CertFile != "" {
		errs = append(errs, fmt.Errorf("%s is for a TCP listener: the unix socket %s is served without TLS", key("CertFile", "CERT_FILE"), listen))
	}
	if a.Insecure && a.credential() {
		errs = append(errs, fmt.Errorf("%s cannot be combined with a credential (Auth.TokenFile, Auth.ClientCAFile)", key("Insecure", "INSECURE")))
	}
	if !socket && !a.credential() && !a.Insecure {
		errs = append(errs, fmt.Errorf("the sidecar listens on TCP (%s) without a credential: anyone who reaches the port could submit pods as its account. "+
			"Serve a unix socket (a Listen path, without SidecarPort), or set %s (interlink sends the token with SidecarTokenFile), "+
			"or %s, %s and %s (interlink presents SidecarCertFile), or %s to accept any caller",
			listen, key("TokenFile", "TOKEN_FILE"), key("CertFile", "CERT_FILE"), key("KeyFile", "KEY_FILE"), key("ClientCAFile", "CLIENT_CA_FILE"),
			key("Insecure", "INSECURE")))
	}
	return errors.Join(errs...)
}

// ServerConfig returns the server settings of a sidecar serving listen: HTTPS
// with CertFile, verifying a client certificate when one is sent (the API's
// authentication requires it; /metrics does not).
func (a *Auth) ServerConfig(listen string) Config {
	return Config{Listen: listen, CertFile: a.CertFile, KeyFile: a.KeyFile, ClientCAFile: a.ClientCAFile, ClientCertOptional: true}
}

// SidecarHandler returns a sidecar's handler: api behind the authentication
// of a (none on a unix socket without a credential), and the handlers of
// open (by path, such as /metrics: Prometheus scrapes it, and it carries no
// pod data) without. run watches the token file until ctx ends.
func SidecarHandler(ctx context.Context, listen string, a Auth, api http.Handler, open map[string]http.Handler, log *slog.Logger) (h http.Handler, run func(context.Context) error, err error) {
	run = func(ctx context.Context) error { <-ctx.Done(); return nil }
	protected := api
	_, socket := socketPath(listen)
	switch {
	case a.Insecure && !socket:
		log.Warn("AUTHENTICATION IS OFF: whoever reaches " + listen + " can submit pods as this sidecar's account (Auth.Insecure). " +
			"Serve a unix socket, or require a token (Auth.TokenFile) or client certificates (Auth.ClientCAFile).")
	case a.credential():
		pc := proxy.DefaultConfig()
		pc.StaticTokensFile, pc.ClientCerts = a.TokenFile, a.ClientCAFile != ""
		p, err := proxy.New(ctx, pc, api, log.With("component", "auth"))
		if err != nil {
			return nil, nil, fmt.Errorf("sidecar authentication: %w", err)
		}
		protected, run = p, p.Run
		log.Info("callers must authenticate", "token", a.TokenFile != "", "client_certificate", a.ClientCAFile != "")
	case socket:
		log.Info("callers are those the unix socket's mode (0660) lets in: its owner and its group", "socket", listen)
	default:
		// Validate refuses this; never serve it.
		return nil, nil, errors.New("sidecar authentication: TCP without a credential needs Auth.Insecure")
	}
	mux := http.NewServeMux()
	for path, oh := range open {
		mux.Handle(path, oh)
	}
	mux.Handle("/", protected)
	return mux, run, nil
}

// RunSidecar serves a sidecar on listen until ctx ends (see SidecarHandler).
func RunSidecar(ctx context.Context, listen string, a Auth, api http.Handler, open map[string]http.Handler, log *slog.Logger) error {
	h, run, err := SidecarHandler(ctx, listen, a, api, open, log)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return run(ctx) })
	g.Go(func() error { return Run(ctx, a.ServerConfig(listen), h, log) })
	return g.Wait()
}
