package installer

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func deviceAnswers(iss string) AuthAnswers {
	return AuthAnswers{Mode: AuthDeviceCode, Issuer: iss, Audience: "interlink", ClientID: "vk", Scopes: DefaultDeviceScopes, GroupsClaim: "groups"}
}

func TestDeviceLogin(t *testing.T) {
	f := newFakeIssuer(t, "vk")
	f.pending = 1 // one authorization_pending answer before approval
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	iss, err := Discover(ctx, f.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if iss.TokenURL() != f.URL()+"/token" {
		t.Errorf("token URL %q", iss.TokenURL())
	}
	var out bytes.Buffer
	tok, err := iss.DeviceLogin(ctx, deviceAnswers(f.URL()), "", &out)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != fakeRefresh {
		t.Errorf("refresh token not returned")
	}
	if err := iss.CheckAccessToken(ctx, tok, "interlink"); err != nil {
		t.Errorf("CheckAccessToken: %v", err)
	}
	msg := out.String()
	for _, want := range []string{f.URL() + "/activate", fakeUserCode, "user_code=" + fakeUserCode} {
		if !strings.Contains(msg, want) {
			t.Errorf("the user is not told %q:\n%s", want, msg)
		}
	}
	for _, secret := range []string{fakeRefresh, tok.AccessToken, fakeDeviceCode} {
		if strings.Contains(msg, secret) {
			t.Errorf("a token or the device code was printed:\n%s", msg)
		}
	}
	if f.polls < 2 {
		t.Errorf("polls = %d, want the pending answer to be retried", f.polls)
	}
	req := f.deviceReq
	if req.Get("audience") != "interlink" || req.Get("scope") != "openid offline_access" {
		t.Errorf("device authorization request %v: want audience and scopes", req)
	}
}

func TestDeviceLoginFailures(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*fakeIssuer)
		want  string
	}{
		{"no device endpoint", func(f *fakeIssuer) { f.noDevice = true }, "does not support the device-code grant"},
		{"denied", func(f *fakeIssuer) { f.deny = true }, "access_denied"},
		{"no refresh token", func(f *fakeIssuer) { f.noRefresh = true }, "granted no refresh token"},
		{"opaque access token", func(f *fakeIssuer) { f.opaque = true }, "it is not a JWT"},
		{"wrong audience", func(f *fakeIssuer) { f.audience = "someone-else" }, `audience "interlink"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIssuer(t, "vk")
			tc.setup(f)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			iss, err := Discover(ctx, f.URL(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			tok, err := iss.DeviceLogin(ctx, deviceAnswers(f.URL()), "", &out)
			if err == nil {
				err = iss.CheckAccessToken(ctx, tok, "interlink")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), fakeRefresh) || strings.Contains(out.String(), fakeRefresh) {
				t.Error("the refresh token leaked into a message")
			}
		})
	}
}

func TestDiscoverFailure(t *testing.T) {
	ctx := context.Background()
	_, err := Discover(ctx, "http://127.0.0.1:1", nil)
	if err == nil || !strings.Contains(err.Error(), "Auth.Issuer") {
		t.Fatalf("err = %v, want one naming Auth.Issuer", err)
	}
}

func TestClientCredentials(t *testing.T) {
	f := newFakeIssuer(t, "vk")
	f.secret = "s3cret"
	ctx := context.Background()
	iss, err := Discover(ctx, f.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	au := AuthAnswers{Mode: AuthClientCredentials, Issuer: f.URL(), Audience: "interlink", ClientID: "vk"}
	tok, err := iss.ClientCredentials(ctx, au, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.CheckAccessToken(ctx, tok, "interlink"); err != nil {
		t.Fatal(err)
	}
	if _, err := iss.ClientCredentials(ctx, au, "wrong"); err == nil || !strings.Contains(err.Error(), "client vk") {
		t.Fatalf("a wrong secret: err = %v", err)
	}
}
