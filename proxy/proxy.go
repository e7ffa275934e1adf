package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Identity headers set for the upstream (and stripped from the client).
const (
	HeaderUser   = "X-Forwarded-User"
	HeaderEmail  = "X-Forwarded-Email"
	HeaderGroups = "X-Forwarded-Groups"
)

// strippedHeaders are identity headers a client must never set itself.
var strippedHeaders = []string{HeaderUser, HeaderEmail, HeaderGroups, "X-Forwarded-Preferred-Username",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Remote-User", "X-Remote-Group"}

// Identity is who made a request.
type Identity struct {
	User   string
	Email  string
	Groups []string
	// expires is when a cached verification stops being valid.
	expires time.Time
}

// Outcome reasons, logged (never with the token) and counted.
const (
	OutcomeOK            = "ok"
	OutcomeMissing       = "missing"
	OutcomeMalformed     = "malformed"
	OutcomeInvalid       = "invalid"
	OutcomeUnknownIssuer = "unknown_issuer"
	OutcomeForbidden     = "forbidden"
)

// authError is a refused request: its status, reason and message.
type authError struct {
	status int
	reason string
	err    error
}

func (e *authError) Error() string { return e.err.Error() }

func unauthorized(reason string, format string, args ...any) *authError {
	return &authError{status: http.StatusUnauthorized, reason: reason, err: fmt.Errorf(format, args...)}
}

// Proxy authenticates requests before next.
type Proxy struct {
	cfg       Config
	next      http.Handler
	log       *slog.Logger
	verifiers map[string]*oidc.IDTokenVerifier // by issuer
	static    *staticTokens
	cache     *lru.Cache[[32]byte, Identity]
	now       func() time.Time
	// Observe, if set, is told every outcome and how long it took.
	Observe func(outcome string, d time.Duration)
}

// exempt paths are served without credentials (probes).
var exempt = map[string]bool{"/healthz": true}

// New returns next behind authentication. Issuer discovery happens here:
// an unreachable issuer is an error at start.
func New(ctx context.Context, cfg Config, next http.Handler, log *slog.Logger) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, next: next, log: log, verifiers: map[string]*oidc.IDTokenVerifier{}, now: time.Now}
	if cfg.CacheSize > 0 {
		c, err := lru.New[[32]byte, Identity](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("token cache: %w", err)
		}
		p.cache = c
	}
	for _, iss := range cfg.Issuers {
		// The provider's key set lives as long as the process: it refetches
		// the JWKS when a token names an unknown key (rotation).
		provider, err := oidc.NewProvider(context.WithoutCancel(ctx), iss)
		if err != nil {
			return nil, fmt.Errorf("OIDC issuer %s: %w", iss, err)
		}
		p.verifiers[iss] = provider.VerifierContext(context.WithoutCancel(ctx), &oidc.Config{
			SkipClientIDCheck:    true, // audiences are checked against the list below
			SupportedSigningAlgs: cfg.Algorithms,
			Now:                  func() time.Time { return p.now().Add(-cfg.ClockSkew.Duration) },
		})
	}
	if cfg.StaticTokensFile != "" {
		st, err := newStaticTokens(cfg.StaticTokensFile, log)
		if err != nil {
			return nil, err
		}
		p.static = st
	}
	if cfg.Insecure {
		log.Warn("AUTHENTICATION IS OFF: every request is accepted without a credential (Auth.Insecure). Use it only for tests on loopback.")
	}
	return p, nil
}

// Run watches the static tokens file until ctx ends.
func (p *Proxy) Run(ctx context.Context) error {
	if p.static == nil {
		<-ctx.Done()
		return nil
	}
	return p.static.watch(ctx)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, h := range strippedHeaders {
		r.Header.Del(h)
	}
	if exempt[r.URL.Path] || p.cfg.Insecure {
		p.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	id, err := p.authenticate(r)
	if err == nil {
		err = p.authorize(id)
	}
	outcome := OutcomeOK
	if err != nil {
		var ae *authError
		if !errors.As(err, &ae) {
			ae = unauthorized(OutcomeInvalid, "%v", err)
		}
		outcome = ae.reason
		p.refuse(w, r, ae)
	}
	if p.Observe != nil {
		p.Observe(outcome, time.Since(start))
	}
	if err != nil {
		return
	}
	r.Header.Set(HeaderUser, id.User)
	if id.Email != "" {
		r.Header.Set(HeaderEmail, id.Email)
	}
	if len(id.Groups) > 0 {
		r.Header.Set(HeaderGroups, strings.Join(id.Groups, ","))
	}
	p.next.ServeHTTP(w, r)
}

func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, e *authError) {
	p.log.Warn("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", e.status, "reason", e.reason, "err", e.err)
	reason := api.ReasonUnauthorized
	if e.status == http.StatusForbidden {
		reason = api.ReasonForbidden
	} else {
		desc := strings.NewReplacer(`"`, "'", "\n", " ").Replace(e.err.Error())
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="interlink", error="invalid_token", error_description=%q`, desc))
	}
	api.WriteError(w, r, &api.Error{Reason: reason, Err: e.err})
}

// authenticate finds the caller from a client certificate or a bearer token.
func (p *Proxy) authenticate(r *http.Request) (Identity, error) {
	if p.cfg.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		return Identity{User: leaf.Subject.CommonName, Groups: leaf.Subject.Organization}, nil
	}
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return Identity{}, unauthorized(OutcomeMissing, "no credential: send Authorization: Bearer <token>")
	}
	scheme, token, ok := strings.Cut(authz, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, unauthorized(OutcomeMalformed, "malformed Authorization header: want Bearer <token>")
	}
	key := sha256.Sum256([]byte(token))
	if p.cache != nil {
		if id, ok := p.cache.Get(key); ok && p.now().Before(id.expires) {
			return id, nil
		}
	}
	if p.static != nil {
		if id, ok := p.static.lookup(token); ok {
			return id, nil
		}
	}
	if len(p.verifiers) == 0 {
		return Identity{}, unauthorized(OutcomeInvalid, "bearer token not accepted")
	}
	id, err := p.verifyJWT(r.Context(), token)
	if err != nil {
		return Identity{}, err
	}
	if p.cache != nil {
		p.cache.Add(key, id)
	}
	return id, nil
}

// verifyJWT verifies a bearer JWT with the verifier of its issuer.
func (p *Proxy) verifyJWT(ctx context.Context, token string) (Identity, error) {
	algs := make([]jose.SignatureAlgorithm, 0, len(p.cfg.Algorithms))
	for _, a := range p.cfg.Algorithms {
		algs = append(algs, jose.SignatureAlgorithm(a))
	}
	parsed, err := jwt.ParseSigned(token, algs)
	if err != nil {
		return Identity{}, unauthorized(OutcomeMalformed, "bearer token is not a JWT signed with an accepted algorithm: %v", err)
	}
	var unverified jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Identity{}, unauthorized(OutcomeMalformed, "bearer token claims: %v", err)
	}
	v, ok := p.verifiers[unverified.Issuer]
	if !ok {
		return Identity{}, unauthorized(OutcomeUnknownIssuer, "token issuer %q is not trusted", unverified.Issuer)
	}
	tok, err := v.Verify(ctx, token)
	if err != nil {
		return Identity{}, unauthorized(OutcomeInvalid, "token rejected: %v", err)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(p.cfg.Audiences, a) }) {
		return Identity{}, unauthorized(OutcomeInvalid, "token audience %v is not one of %v", tok.Audience, p.cfg.Audiences)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, unauthorized(OutcomeMalformed, "token claims: %v", err)
	}
	now := p.now()
	if nbf, ok := claims["nbf"].(float64); ok && time.Unix(int64(nbf), 0).After(now.Add(p.cfg.ClockSkew.Duration)) {
		return Identity{}, unauthorized(OutcomeInvalid, "token not valid before %s", time.Unix(int64(nbf), 0).UTC().Format(time.RFC3339))
	}
	id := Identity{User: claimString(claims, p.cfg.UserClaim), Email: claimString(claims, p.cfg.EmailClaim),
		Groups: claimStrings(claims, p.cfg.GroupsClaim), expires: tok.Expiry.Add(p.cfg.ClockSkew.Duration)}
	if id.User == "" {
		id.User = tok.Subject
	}
	return id, nil
}

func claimString(c map[string]any, name string) string {
	s, _ := c[name].(string)
	return s
}

func claimStrings(c map[string]any, name string) []string {
	switch v := c[name].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// authorize applies the allow-lists.
func (p *Proxy) authorize(id Identity) error {
	c := &p.cfg
	if len(c.AllowedSubjects) > 0 && !slices.Contains(c.AllowedSubjects, id.User) {
		return &authError{status: http.StatusForbidden, reason: OutcomeForbidden, err: fmt.Errorf("user %q is not allowed", id.User)}
	}
	if len(c.AllowedEmails) > 0 && !slices.Contains(c.AllowedEmails, id.Email) {
		return &authError{status: http.StatusForbidden, reason: OutcomeForbidden, err: fmt.Errorf("email %q is not allowed", id.Email)}
	}
	if len(c.AllowedGroups) > 0 && !slices.ContainsFunc(id.Groups, func(g string) bool { return slices.Contains(c.AllowedGroups, g) }) {
		return &authError{status: http.StatusForbidden, reason: OutcomeForbidden, err: fmt.Errorf("groups %v are not allowed", id.Groups)}
	}
	return nil
}
