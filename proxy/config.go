package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/seed-3f807049/interlink/observability/config"
)

// Defaults of Config.
const (
	// DefaultClockSkew is the tolerance on exp and nbf.
	DefaultClockSkew = 30 * time.Second
	// DefaultCacheSize bounds the cache of verified tokens.
	DefaultCacheSize = 10000
	// DefaultUserClaim, DefaultEmailClaim and DefaultGroupsClaim name the
	// claims that carry the caller's identity.
	DefaultUserClaim   = "sub"
	DefaultEmailClaim  = "email"
	DefaultGroupsClaim = "groups"
)

// DefaultAlgorithms are the signing algorithms accepted by default: only
// asymmetric ones (never none, never HMAC).
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// Config selects and configures the credentials interLink accepts.
type Config struct {
	Issuers          []string        `json:"Issuers" env:"INTERLINK_AUTH_ISSUERS" envSeparator:"," doc:"OIDC issuer URLs whose bearer JWTs are accepted (discovery and JWKS are read from each)."`
	Audiences        []string        `json:"Audiences" env:"INTERLINK_AUTH_AUDIENCES" envSeparator:"," doc:"A JWT must name one of these audiences in aud."`
	Algorithms       []string        `json:"Algorithms" env:"INTERLINK_AUTH_ALGORITHMS" envSeparator:"," doc:"Accepted JWT signing algorithms; asymmetric only (none and HS* are refused)."`
	ClockSkew        config.Duration `json:"ClockSkew" env:"INTERLINK_AUTH_CLOCK_SKEW" doc:"Tolerance on a JWT's exp and nbf."`
	AllowedSubjects  []string        `json:"AllowedSubjects" env:"INTERLINK_AUTH_ALLOWED_SUBJECTS" envSeparator:"," doc:"If set, only these users (UserClaim) are allowed (403 otherwise)."`
	AllowedEmails    []string        `json:"AllowedEmails" env:"INTERLINK_AUTH_ALLOWED_EMAILS" envSeparator:"," doc:"If set, only these emails (EmailClaim) are allowed."`
	AllowedGroups    []string        `json:"AllowedGroups" env:"INTERLINK_AUTH_ALLOWED_GROUPS" envSeparator:"," doc:"If set, only members of one of these groups (GroupsClaim) are allowed."`
	UserClaim        string          `json:"UserClaim" env:"INTERLINK_AUTH_USER_CLAIM" doc:"Claim holding the user name."`
	EmailClaim       string          `json:"EmailClaim" env:"INTERLINK_AUTH_EMAIL_CLAIM" doc:"Claim holding the email."`
	GroupsClaim      string          `json:"GroupsClaim" env:"INTERLINK_AUTH_GROUPS_CLAIM" doc:"Claim holding the groups (a list or a string)."`
	StaticTokensFile string          `json:"StaticTokensFile" env:"INTERLINK_AUTH_STATIC_TOKENS_FILE" doc:"CSV file of accepted bearer tokens: token,user[,group1;group2]; reloaded when it changes."`
	ClientCerts      bool            `json:"ClientCerts" env:"INTERLINK_AUTH_CLIENT_CERTS" doc:"Accept TLS client certificates verified against TLS.CACertFile as credentials (user = CN, groups = O)."`
	Insecure         bool            `json:"Insecure" env:"INTERLINK_AUTH_INSECURE" doc:"Accept requests without any credential. For tests on loopback only: logged loudly at start."`
	CacheSize        int             `json:"CacheSize" env:"INTERLINK_AUTH_CACHE_SIZE" doc:"Number of verified tokens cached until they expire."`
}

// DefaultConfig returns the defaults (no credential enabled: a config must
// choose one, or Insecure).
func DefaultConfig() Config {
	return Config{
		Algorithms:  append([]string(nil), DefaultAlgorithms...),
		ClockSkew:   config.D(DefaultClockSkew),
		UserClaim:   DefaultUserClaim,
		EmailClaim:  DefaultEmailClaim,
		GroupsClaim: DefaultGroupsClaim,
		CacheSize:   DefaultCacheSize,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	for _, iss := range c.Issuers {
		if u, err := url.Parse(iss); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("Auth.Issuers: %q is not an http(s) URL", iss))
		}
	}
	if len(c.Issuers) > 0 && len(c.Audiences) == 0 {
		errs = append(errs, errors.New("Auth.Audiences must be set with Auth.Issuers: a token for another service must not be accepted"))
	}
	for _, a := range c.Algorithms {
		if a == "none" || a == "HS256" || a == "HS384" || a == "HS512" {
			errs = append(errs, fmt.Errorf("Auth.Algorithms: %s is refused (only asymmetric algorithms)", a))
		}
	}
	if c.ClockSkew.Duration < 0 || c.ClockSkew.Duration > 5*time.Minute {
		errs = append(errs, errors.New("Auth.ClockSkew must be between 0 and 5m"))
	}
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("Auth.CacheSize must not be negative"))
	}
	enabled := len(c.Issuers) > 0 || c.StaticTokensFile != "" || c.ClientCerts
	if !enabled && !c.Insecure {
		errs = append(errs, errors.New("no authentication configured: set Auth.Issuers, Auth.StaticTokensFile or Auth.ClientCerts (or Auth.Insecure for a test on loopback)"))
	}
	if enabled && c.Insecure {
		errs = append(errs, errors.New("Auth.Insecure cannot be combined with a credential"))
	}
	return errors.Join(errs...)
}
