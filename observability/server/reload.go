package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often, at most, the key pair files are checked
// for a change.
const certCheckInterval = time.Second

// CertReloader serves a key pair and loads it again when either file
// changes (written in place, renamed over, or a Kubernetes Secret's symlink
// swap: the files are stat'ed through their links).
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// NewCertReloader loads the pair; serve it with its GetCertificate.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

func (r *CertReloader) load() error {
	stamp, err := r.fileStamp()
	if err != nil {
		return fmt.Errorf("TLS key pair: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
	return nil
}

// GetCertificate implements tls.Config.GetCertificate. A pair that fails to
// load is logged and the previous one kept.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < certCheckInterval {
		return r.cert, nil
	}
	r.checked = time.Now()
	if stamp, err := r.fileStamp(); err == nil && stamp != r.stamp {
		if err := r.load(); err != nil {
			r.log.Warn("TLS key pair changed but does not load; serving the previous one", "err", err)
		} else {
			r.log.Info("TLS key pair reloaded", "cert", r.certFile)
		}
	}
	return r.cert, nil
}

// GetClientCertificate implements tls.Config.GetClientCertificate: a
// client's certificate, reloaded as GetCertificate's.
func (r *CertReloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.GetCertificate(nil)
}
