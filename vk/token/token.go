// Package token keeps a bearer token file fresh: it gets access tokens from
// an OAuth2 issuer's token endpoint (client_credentials or refresh_token
// grant, through golang.org/x/oauth2) and writes each one atomically (a
// temporary file renamed over the target, mode 0600) well before the
// previous one expires, retrying with backoff when the issuer fails. The
// virtual kubelet reads the file again whenever it changes.
package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/seed-3f807049/interlink/observability/config"
)

// Grants.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// Defaults of Config.
const (
	// DefaultRenewAt is the share of a token's lifetime after which a new
	// one is fetched.
	DefaultRenewAt = 0.75
	// DefaultRetryFirst and DefaultRetryLongest bound the backoff after a
	// failed fetch.
	DefaultRetryFirst   = time.Second
	DefaultRetryLongest = time.Minute
)

// Config configures a Refresher.
type Config struct {
	TokenURL         string          `json:"TokenURL" env:"INTERLINK_TOKEN_URL" doc:"The issuer's token endpoint."`
	Grant            string          `json:"Grant" env:"INTERLINK_TOKEN_GRANT" doc:"client_credentials or refresh_token."`
	ClientID         string          `json:"ClientID" env:"INTERLINK_TOKEN_CLIENT_ID" doc:"OAuth2 client ID."`
	ClientSecretFile string          `json:"ClientSecretFile" env:"INTERLINK_TOKEN_CLIENT_SECRET_FILE" doc:"File holding the client secret (empty for a public client)."`
	RefreshTokenFile string          `json:"RefreshTokenFile" env:"INTERLINK_TOKEN_REFRESH_TOKEN_FILE" doc:"File holding the refresh token (refresh_token grant); rewritten when the issuer rotates it."`
	Audience         string          `json:"Audience" env:"INTERLINK_TOKEN_AUDIENCE" doc:"Audience to request (the one interLink's proxy accepts)."`
	Scopes           []string        `json:"Scopes" env:"INTERLINK_TOKEN_SCOPES" envSeparator:"," doc:"Scopes to request."`
	TokenFile        string          `json:"TokenFile" env:"VKTOKENFILE" doc:"Where the access token is written (the VK's VKTokenFile)."`
	RenewAt          float64         `json:"RenewAt" env:"INTERLINK_TOKEN_RENEW_AT" doc:"Share of a token's lifetime after which a new one is fetched."`
	DefaultLifetime  config.Duration `json:"DefaultLifetime" env:"INTERLINK_TOKEN_DEFAULT_LIFETIME" doc:"Lifetime assumed when the issuer does not say (expires_in)."`
	MetricsListen    string          `json:"MetricsListen" env:"INTERLINK_TOKEN_METRICS_LISTEN" doc:"host:port to serve /metrics on (refreshes by outcome, token expiry); empty: not served."`
	LogFormat        string          `json:"LogFormat" env:"INTERLINK_LOG_FORMAT" doc:"Log format: json or text."`
	LogLevel         string          `json:"LogLevel" env:"INTERLINK_LOG_LEVEL" doc:"Log level: debug, info, warn or error."`
}

// LogSettings implements cli.Config.
func (c *Config) LogSettings() (format, level string) { return c.LogFormat, c.LogLevel }

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Grant: GrantClientCredentials, RenewAt: DefaultRenewAt, DefaultLifetime: config.D(time.Hour), LogFormat: "json", LogLevel: "info"}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.TokenURL == "" {
		errs = append(errs, errors.New("TokenURL is empty"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("ClientID is empty"))
	}
	if c.TokenFile == "" {
		errs = append(errs, errors.New("TokenFile is empty"))
	}
	switch c.Grant {
	case GrantClientCredentials:
		if c.ClientSecretFile == "" {
			errs = append(errs, errors.New("the client_credentials grant needs ClientSecretFile"))
		}
	case GrantRefreshToken:
		if c.RefreshTokenFile == "" {
			errs = append(errs, errors.New("the refresh_token grant needs RefreshTokenFile"))
		}
	default:
		errs = append(errs, fmt.Errorf("Grant %q: want client_credentials or refresh_token", c.Grant))
	}
	if c.RenewAt <= 0.1 || c.RenewAt >= 1 {
		errs = append(errs, errors.New("RenewAt must be between 0.1 and 1"))
	}
	return errors.Join(errs...)
}

// Refresher keeps TokenFile fresh.
type Refresher struct {
	cfg          Config
	cc           *clientcredentials.Config
	oc           *oauth2.Config
	refreshToken string
	log          *slog.Logger
	now          func() time.Time
	// Wrote, if set, is told of each token written (for metrics).
	Wrote func(expiry time.Time)
	// Failed, if set, is told of each failed refresh (for metrics).
	Failed func(err error)
}

// New returns a Refresher; it reads the secret files once.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Refresher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	secret := ""
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read ClientSecretFile: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	params := map[string][]string{}
	if cfg.Audience != "" {
		params["audience"] = []string{cfg.Audience}
	}
	r := &Refresher{cfg: cfg, log: log, now: time.Now}
	switch cfg.Grant {
	case GrantClientCredentials:
		r.cc = &clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: secret, TokenURL: cfg.TokenURL, Scopes: cfg.Scopes, EndpointParams: params}
	default:
		b, err := os.ReadFile(cfg.RefreshTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read RefreshTokenFile: %w", err)
		}
		r.refreshToken = strings.TrimSpace(string(b))
		r.oc = &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: secret, Endpoint: oauth2.Endpoint{TokenURL: cfg.TokenURL}, Scopes: cfg.Scopes}
	}
	_ = ctx
	return r, nil
}

// Run fetches and writes tokens until ctx ends.
func (r *Refresher) Run(ctx context.Context) error {
	wait := DefaultRetryFirst
	for {
		next, err := r.refresh(ctx)
		if err != nil && r.Failed != nil {
			r.Failed(err)
		}
		if err != nil {
			r.log.Warn("token refresh failed; retrying", "err", err, "retry_in_seconds", wait.Seconds())
			next, wait = wait, min(wait*2, DefaultRetryLongest)
		} else {
			wait = DefaultRetryFirst
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// refresh fetches one token, writes it, and returns when to fetch the next.
func (r *Refresher) refresh(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := r.fetch(ctx)
	if err != nil {
		return 0, err
	}
	now := r.now()
	expiry := tok.Expiry
	if expiry.IsZero() {
		expiry = now.Add(r.cfg.DefaultLifetime.Duration)
	}
	if err := writeAtomic(r.cfg.TokenFile, tok.AccessToken+"\n"); err != nil {
		return 0, err
	}
	if tok.RefreshToken != "" && r.cfg.Grant == GrantRefreshToken {
		if err := writeAtomic(r.cfg.RefreshTokenFile, tok.RefreshToken+"\n"); err != nil {
			return 0, fmt.Errorf("save the rotated refresh token: %w", err)
		}
	}
	if r.Wrote != nil {
		r.Wrote(expiry)
	}
	next := time.Duration(float64(expiry.Sub(now)) * r.cfg.RenewAt)
	r.log.Info("token written", "file", r.cfg.TokenFile, "expires", expiry.UTC().Format(time.RFC3339), "next_refresh_seconds", next.Seconds())
	return max(next, time.Second), nil
}

// fetch asks the issuer for a new token, never a cached one (oauth2's token
// sources would reuse a token until it expires).
func (r *Refresher) fetch(ctx context.Context) (*oauth2.Token, error) {
	var tok *oauth2.Token
	var err error
	if r.cc != nil {
		tok, err = r.cc.Token(ctx)
	} else {
		// An expired token makes the source use the refresh token now.
		tok, err = r.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: r.refreshToken, Expiry: time.Unix(1, 0)}).Token()
		if err == nil && tok.RefreshToken != "" {
			r.refreshToken = tok.RefreshToken
		}
	}
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	if tok.AccessToken == "" {
		return nil, errors.New("token endpoint returned no access token")
	}
	return tok, nil
}

// writeAtomic writes content to path through a temporary file in the same
// directory, mode 0600, renamed over path: readers see the old or the new
// token, never a partial one.
func writeAtomic(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		_ = f.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	return nil
}
