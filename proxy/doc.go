// Package proxy is interLink's authenticating front: an http.Handler that
// admits a request only with a valid credential and passes the caller's
// identity upstream as X-Forwarded-User, -Email and -Groups (any such
// headers sent by the client are dropped).
//
// Credentials, each enabled by its settings:
//   - bearer JWTs from one or more OIDC issuers, verified with
//     coreos/go-oidc (discovery, JWKS with key rotation, issuer, audience,
//     expiry and not-before with a small clock skew, an allow-list of
//     asymmetric signing algorithms), then optional allow-lists of subjects,
//     emails and groups; successful verifications are cached until the
//     token expires;
//   - static bearer tokens from a file (compared in constant time, reloaded
//     when the file changes);
//   - client certificates verified by the TLS server (mTLS).
//
// No authentication at all needs Insecure and is logged loudly.
//
// New(cfg, next) wraps the interLink handlers in the same process; it can
// equally front any upstream through httputil.ReverseProxy.
package proxy
