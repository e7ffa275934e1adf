// Package installer is the logic of interlink-installer: from a few answers
// (a YAML answers file, flags, or prompts on a terminal) it writes the remote
// side of interLink — interlink's config with its embedded authenticating
// proxy, the config of the chosen sidecar (slurm or docker), hardened systemd
// units for both — and the Helm values of the cluster side (charts/interlink).
//
// With an OIDC issuer it obtains the virtual kubelet's first refresh token by
// the device-code grant (RFC 8628) through golang.org/x/oauth2 and go-oidc
// discovery, and stores it in a 0600 file; it never prints or logs a token.
//
// Rendering is pure (Render returns the files; Write puts them on disk), so
// the files are pinned by golden tests, and every rendered config is loaded
// back through the real binary's Config and Validate before it is written.
package installer
