package prober

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// File names in the pod's containers/ directory.
const (
	pidSuffix   = ".pid"
	stateSuffix = ".probe"
)

// maxPIDFileBytes caps what is read of a pid file.
const maxPIDFileBytes = 64

// stateFile writes one container's State; a run's writes stop once the
// run is over, so that nothing of it reaches the next run's file.
type stateFile struct {
	path string
	mu   sync.Mutex
	st   State
	over bool
}

// update changes the state with f and writes it, unless the run is over.
func (s *stateFile) update(f func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		return nil
	}
	f(&s.st)
	return writeJSON(s.path, s.st)
}

// end stops the run's writes.
func (s *stateFile) end() {
	s.mu.Lock()
	s.over = true
	s.mu.Unlock()
}

// writeJSON replaces path with v as JSON (mode 0600): a temporary file
// beside it, renamed over it.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readPID reads a pid file ("PID\n"); a missing or malformed one is 0.
func readPID(path string) int {
	f, err := os.Open(path) //nolint:gosec // the job's file in the pod's directory
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	b := make([]byte, maxPIDFileBytes)
	n, _ := f.Read(b)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}
