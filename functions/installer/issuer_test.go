package installer

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeIssuer is an in-process OIDC/OAuth2 issuer with discovery, JWKS, the
// device authorization endpoint (RFC 8628) and a token endpoint for the
// device_code, refresh_token and client_credentials grants. Hydra 2.3 has
// no device grant, so the installer's device-code path is tested here.
type fakeIssuer struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	signer   jose.Signer
	clientID string
	secret   string // client_credentials secret

	// Knobs.
	noDevice  bool   // no device_authorization_endpoint
	noRefresh bool   // grant no refresh token
	opaque    bool   // opaque (non-JWT) access tokens
	audience  string // aud of access tokens ("" = the requested one)
	deny      bool   // the user denies the request
	pending   int    // polls answered authorization_pending before approval

	mu        sync.Mutex
	polls     int
	deviceReq url.Values // form of the device authorization request
	refreshes int
}

const (
	fakeDeviceCode = "dev-code-123"
	fakeUserCode   = "WDJB-MJHT"
	fakeRefresh    = "refresh-token-secret-value"
)

func newFakeIssuer(t testing.TB, clientID string) *fakeIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIssuer{key: key, signer: signer, clientID: clientID}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("/jwks", f.jwks)
	mux.HandleFunc("/device", f.device)
	mux.HandleFunc("/token", f.token)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIssuer) URL() string { return f.srv.URL }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeIssuer) discovery(w http.ResponseWriter, _ *http.Request) {
	doc := map[string]any{
		"issuer":                                f.URL(),
		"authorization_endpoint":                f.URL() + "/auth",
		"token_endpoint":                        f.URL() + "/token",
		"jwks_uri":                              f.URL() + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
	}
	if !f.noDevice {
		doc["device_authorization_endpoint"] = f.URL() + "/device"
		doc["grant_types_supported"] = []string{"authorization_code", "refresh_token", "client_credentials", DeviceCodeGrant}
	}
	writeJSON(w, 200, doc)
}

func (f *fakeIssuer) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
}

func (f *fakeIssuer) device(w http.ResponseWriter, r *http.Request) {
	if f.noDevice || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	_ = r.ParseForm()
	f.mu.Lock()
	f.deviceReq = r.PostForm
	f.mu.Unlock()
	if r.PostForm.Get("client_id") != f.clientID {
		writeJSON(w, 400, map[string]string{"error": "invalid_client"})
		return
	}
	writeJSON(w, 200, map[string]any{
		"device_code":               fakeDeviceCode,
		"user_code":                 fakeUserCode,
		"verification_uri":          f.URL() + "/activate",
		"verification_uri_complete": f.URL() + "/activate?user_code=" + fakeUserCode,
		"expires_in":                60,
		"interval":                  1,
	})
}

// accessToken mints a JWT for aud (or an opaque string).
func (f *fakeIssuer) accessToken(aud string) (string, error) {
	if f.opaque {
		return "opaque-access-token", nil
	}
	if f.audience != "" {
		aud = f.audience
	}
	now := time.Now()
	claims := map[string]any{
		"iss": f.URL(), "sub": "vk-user", "aud": []string{aud},
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "groups": []string{"interlink"},
	}
	return jwt.Signed(f.signer).Claims(claims).Serialize()
}

func (f *fakeIssuer) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	form := r.PostForm
	clientID, secret, hasBasic := r.BasicAuth()
	if !hasBasic {
		clientID, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if clientID != f.clientID {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	aud := form.Get("audience")
	reply := map[string]any{"token_type": "Bearer", "expires_in": 600}
	switch form.Get("grant_type") {
	case DeviceCodeGrant:
		if form.Get("device_code") != fakeDeviceCode {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		f.mu.Lock()
		f.polls++
		polls := f.polls
		f.mu.Unlock()
		if f.deny {
			writeJSON(w, 400, map[string]string{"error": "access_denied", "error_description": "the user said no"})
			return
		}
		if polls <= f.pending {
			writeJSON(w, 400, map[string]string{"error": "authorization_pending"})
			return
		}
		if !f.noRefresh {
			reply["refresh_token"] = fakeRefresh
		}
		if aud == "" {
			// what was asked at the device endpoint
			f.mu.Lock()
			aud = f.deviceReq["audience"][0]
			f.mu.Unlock()
		}
	case "refresh_token":
		if form.Get("refresh_token") != fakeRefresh {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		f.mu.Lock()
		f.refreshes++
		f.mu.Unlock()
		if aud == "" {
			aud = "interlink"
		}
	case "client_credentials":
		if f.secret == "" || secret != f.secret {
			writeJSON(w, 401, map[string]string{"error": "invalid_client"})
			return
		}
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	at, err := f.accessToken(aud)
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": fmt.Sprint(err)})
		return
	}
	reply["access_token"] = at
	writeJSON(w, 200, reply)
}
