package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// staticTokens are bearer tokens read from a CSV file (token,user[,groups]
// with groups separated by ';'), reloaded when the file changes.
type staticTokens struct {
	path string
	log  *slog.Logger
	mu   sync.RWMutex
	list []staticToken
}

type staticToken struct {
	token []byte
	id    Identity
}

func newStaticTokens(path string, log *slog.Logger) (*staticTokens, error) {
	s := &staticTokens{path: path, log: log}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *staticTokens) load() error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("static tokens file: %w", err)
	}
	defer func() { _ = f.Close() }()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.Comment = '#'
	r.TrimLeadingSpace = true
	var list []staticToken
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("static tokens file %s: %w", s.path, err)
		}
		if len(rec) < 2 || strings.TrimSpace(rec[0]) == "" || strings.TrimSpace(rec[1]) == "" {
			// The record is not echoed: it holds a token.
			return fmt.Errorf("static tokens file %s: record %d: want token,user[,groups]", s.path, line)
		}
		st := staticToken{token: []byte(strings.TrimSpace(rec[0])), id: Identity{User: strings.TrimSpace(rec[1])}}
		if len(rec) > 2 && rec[2] != "" {
			st.id.Groups = strings.Split(rec[2], ";")
		}
		list = append(list, st)
	}
	if len(list) == 0 {
		return fmt.Errorf("static tokens file %s holds no token", s.path)
	}
	s.mu.Lock()
	s.list = list
	s.mu.Unlock()
	return nil
}

// lookup compares token with every entry in constant time.
func (s *staticTokens) lookup(token string) (Identity, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found Identity
	ok := 0
	for _, st := range s.list {
		if subtle.ConstantTimeCompare(st.token, []byte(token)) == 1 {
			found, ok = st.id, 1
		}
	}
	return found, ok == 1
}

// watch reloads the file when it changes (atomic renames included: the
// directory is watched) until ctx ends. A bad new file is logged and the
// previous tokens kept.
func (s *staticTokens) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch static tokens: %w", err)
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("watch static tokens: %w", err)
	}
	// A change made between the first load and the watch would have no
	// event: read the file once more now that changes are seen.
	if err := s.load(); err != nil {
		s.log.Warn("static tokens file not reloaded; keeping the previous tokens", "err", err)
	}
	name := filepath.Clean(s.path)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if filepath.Clean(ev.Name) != name || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
				continue
			}
			if err := s.load(); err != nil {
				s.log.Warn("static tokens file not reloaded; keeping the previous tokens", "err", err)
				continue
			}
			s.log.Info("static tokens reloaded", "file", s.path)
		case err := <-w.Errors:
			s.log.Warn("watching static tokens", "err", err)
		}
	}
}
