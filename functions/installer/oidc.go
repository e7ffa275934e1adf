package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/seed-3f807049/interlink/proxy"
)

// DeviceCodeGrant is the grant type of RFC 8628.
const DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code"

// Issuer is an OIDC issuer read by discovery.
type Issuer struct {
	URL      string
	provider *oidc.Provider
	client   *http.Client
	grants   []string
}

// ctx carries the HTTP client to go-oidc and oauth2.
func (i *Issuer) ctx(ctx context.Context) context.Context {
	ctx = oidc.ClientContext(ctx, i.client)
	return context.WithValue(ctx, oauth2.HTTPClient, i.client)
}

// Discover reads the issuer's discovery document.
func Discover(ctx context.Context, issuer string, client *http.Client) (*Issuer, error) {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	i := &Issuer{URL: issuer, client: client}
	p, err := oidc.NewProvider(i.ctx(ctx), issuer)
	if err != nil {
		return nil, fmt.Errorf("Auth.Issuer %s: OIDC discovery failed: %w", issuer, err)
	}
	var claims struct {
		Grants []string `json:"grant_types_supported"`
	}
	if err := p.Claims(&claims); err != nil {
		return nil, fmt.Errorf("Auth.Issuer %s: discovery document: %w", issuer, err)
	}
	i.provider, i.grants = p, claims.Grants
	if p.Endpoint().TokenURL == "" {
		return nil, fmt.Errorf("Auth.Issuer %s: the discovery document has no token_endpoint", issuer)
	}
	return i, nil
}

// TokenURL is the issuer's token endpoint.
func (i *Issuer) TokenURL() string { return i.provider.Endpoint().TokenURL }

// SupportsDeviceCode tells whether the issuer advertises RFC 8628: a
// device_authorization_endpoint, and the grant when it lists its grants.
func (i *Issuer) SupportsDeviceCode() error {
	if i.provider.Endpoint().DeviceAuthURL == "" {
		return fmt.Errorf("Auth.Issuer %s does not support the device-code grant (no device_authorization_endpoint in its discovery document): use Auth.Mode client-credentials or static", i.URL)
	}
	if len(i.grants) > 0 && !slices.Contains(i.grants, DeviceCodeGrant) {
		return fmt.Errorf("Auth.Issuer %s does not list the device-code grant in grant_types_supported: use Auth.Mode client-credentials or static", i.URL)
	}
	return nil
}

// DeviceLogin runs the device-code grant: it asks for a device code, tells
// the user on out where to go and which code to enter, and polls until the
// issuer answers with tokens. It needs a refresh token in the answer.
func (i *Issuer) DeviceLogin(ctx context.Context, au AuthAnswers, clientSecret string, out io.Writer) (*oauth2.Token, error) {
	if err := i.SupportsDeviceCode(); err != nil {
		return nil, err
	}
	ctx = i.ctx(ctx)
	cfg := oauth2.Config{ClientID: au.ClientID, ClientSecret: clientSecret, Endpoint: i.provider.Endpoint(), Scopes: au.Scopes}
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("audience", au.Audience)}
	authOpts := opts
	if clientSecret != "" {
		// RFC 8628 3.1: a confidential client authenticates at the device
		// authorization endpoint too (client_secret_post).
		authOpts = append(authOpts, oauth2.SetAuthURLParam("client_secret", clientSecret))
	}
	da, err := cfg.DeviceAuth(ctx, authOpts...)
	if err != nil {
		return nil, fmt.Errorf("device authorization request to %s: %w", i.provider.Endpoint().DeviceAuthURL, err)
	}
	if da.VerificationURI == "" || da.UserCode == "" || da.DeviceCode == "" {
		return nil, errors.New("the issuer's device authorization answer lacks verification_uri, user_code or device_code")
	}
	fmt.Fprintf(out, "\nTo authorize virtual node access to interlink, open\n\n    %s\n\nand enter the code\n\n    %s\n\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s)\n", da.VerificationURIComplete)
	}
	if !da.Expiry.IsZero() {
		fmt.Fprintf(out, "Waiting for the authorization (the code expires at %s)...\n", da.Expiry.Format(time.Kitchen))
	}
	tok, err := cfg.DeviceAccessToken(ctx, da, opts...)
	if err != nil {
		return nil, fmt.Errorf("device-code grant: %w", err)
	}
	if tok.RefreshToken == "" {
		return nil, fmt.Errorf("the issuer granted no refresh token: allow refresh tokens for client %s and request the offline_access scope (Auth.Scopes)", au.ClientID)
	}
	return tok, nil
}

// ClientCredentials gets one token with the client_credentials grant, to
// check the client before the cluster side relies on it.
func (i *Issuer) ClientCredentials(ctx context.Context, au AuthAnswers, clientSecret string) (*oauth2.Token, error) {
	cfg := clientcredentials.Config{
		ClientID: au.ClientID, ClientSecret: clientSecret, TokenURL: i.TokenURL(), Scopes: au.Scopes,
		EndpointParams: map[string][]string{"audience": {au.Audience}},
	}
	tok, err := cfg.Token(i.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("client_credentials grant for client %s: %w", au.ClientID, err)
	}
	return tok, nil
}

// CheckAccessToken verifies an access token as interlink's proxy will:
// a JWT signed by the issuer with an asymmetric algorithm, for audience.
func (i *Issuer) CheckAccessToken(ctx context.Context, tok *oauth2.Token, audience string) error {
	v := i.provider.Verifier(&oidc.Config{ClientID: audience, SupportedSigningAlgs: proxy.DefaultAlgorithms})
	if _, err := v.Verify(i.ctx(ctx), tok.AccessToken); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "malformed jwt") {
			msg = "it is not a JWT"
		}
		return fmt.Errorf("interlink would refuse the issuer's access tokens (%s): the issuer must issue JWT access tokens with audience %q (Auth.Audience)", msg, audience)
	}
	return nil
}
