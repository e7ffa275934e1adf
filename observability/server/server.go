// Package server runs an http.Handler the way every interLink binary does:
// on TCP, TLS (optionally requiring client certificates) or a unix socket,
// with timeouts set, until its context ends, then shutting down gracefully.
// RunSidecar adds how a sidecar authenticates its caller (Auth): the unix
// socket's mode, or on TCP a bearer token or a client certificate.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Timeouts of every server.
const (
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request (large status batches included).
	ReadTimeout = 2 * time.Minute
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout = 2 * time.Minute
	// ShutdownTimeout is the grace given to in-flight requests at stop.
	ShutdownTimeout = 10 * time.Second
)

// Config says where and how to serve.
type Config struct {
	// Listen is host:port, or a unix socket path (absolute, or unix://path).
	Listen string
	// CertFile and KeyFile enable TLS.
	CertFile, KeyFile string
	// ClientCAFile, with TLS, requires client certificates signed by it.
	ClientCAFile string
	// ClientCertOptional verifies a client certificate when one is sent but
	// lets requests without one through (to another authentication layer).
	ClientCertOptional bool
}

// Listen opens the listener of cfg. A unix socket is created mode 0660,
// replacing a stale socket file; its directory is created 0700 when missing.
func Listen(cfg Config) (net.Listener, error) {
	if path, ok := socketPath(cfg.Listen); ok {
		if dir := filepath.Dir(path); dir != "" {
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return nil, fmt.Errorf("create the socket's directory: %w", err)
				}
			}
		}
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen on socket %s: %w", path, err)
		}
		// Group access lets a sidecar and interLink run as different users.
		if err := os.Chmod(path, 0o660); err != nil { //nolint:gosec // a socket, not a file of data
			_ = l.Close()
			return nil, fmt.Errorf("chmod socket %s: %w", path, err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return l, nil
}

func socketPath(listen string) (string, bool) {
	if p, ok := strings.CutPrefix(listen, "unix://"); ok {
		return p, true
	}
	return listen, strings.HasPrefix(listen, "/")
}

// Serve serves h on l until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, l net.Listener, cfg Config, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.CertFile != "" {
		tc, err := tlsConfig(cfg, log)
		if err != nil {
			_ = l.Close()
			return err
		}
		srv.TLSConfig = tc
		l = tls.NewListener(l, tc)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("serving", "address", l.Addr().String(), "tls", cfg.CertFile != "", "mtls", cfg.ClientCAFile != "")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Long streams (followed logs) outlived the grace period: close
		// them; that is a normal stop.
		log.Warn("closing the requests still open after the shutdown grace period", "err", err)
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Run listens and serves until ctx ends.
func Run(ctx context.Context, cfg Config, h http.Handler, log *slog.Logger) error {
	l, err := Listen(cfg)
	if err != nil {
		return err
	}
	return Serve(ctx, l, cfg, h, log)
}

// tlsConfig serves the key pair of cfg, reloaded when its files change.
func tlsConfig(cfg Config, log *slog.Logger) (*tls.Config, error) {
	reloader, err := NewCertReloader(cfg.CertFile, cfg.KeyFile, log)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: reloader.GetCertificate}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", cfg.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		if cfg.ClientCertOptional {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return tc, nil
}
