package prober

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Files of a container's runs that the job writes beside its pid file.
const (
	startedSuffix = ".started" // "TIME[ …]": the current run's start
	exitSuffix    = ".exit"    // the current run has ended
)

// runSlack is how far a run's process may have begun from the start the
// job recorded for the run (the job records it just before it forks the
// process; /proc's boot time is whole seconds).
const runSlack = 5 * time.Second

// readCapped reads at most n bytes of the job's file path.
func readCapped(path string, n int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the job's file in the pod's directory
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, n))
}

// errNotTheRun: the pid file names a process that is not the container's
// current run (the run ended, and its pid may be another's now).
var errNotTheRun = errors.New("container not running")

// isRun tells whether id is the current run of container name, whose files
// are in dir: the run has not ended (no NAME.exit), and the process began
// when the job recorded the run's start (NAME.started). A pid file
// outlives its run until the next one starts, and the pid may meanwhile be
// another process's, of another pod: nothing is done to it then.
func (p procFS) isRun(dir, name string, id procID) error {
	_, err := p.runStart(dir, name, id)
	return err
}

// runStart is isRun, and the run's start as the job recorded it.
func (p procFS) runStart(dir, name string, id procID) (time.Time, error) {
	if _, err := os.Lstat(filepath.Join(dir, name+exitSuffix)); err == nil {
		return time.Time{}, errNotTheRun
	}
	b, err := readCapped(filepath.Join(dir, name+startedSuffix), 4096)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", errNotTheRun, err)
	}
	word, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte(" "))
	recorded, err := time.Parse(time.RFC3339Nano, string(word))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %w", errNotTheRun, name+startedSuffix, err)
	}
	began, err := p.startedAt(id.start)
	if err != nil {
		return time.Time{}, err
	}
	if d := began.Sub(recorded); d < -runSlack || d > runSlack {
		return time.Time{}, fmt.Errorf("%w: process %d began at %s, the run at %s", errNotTheRun, id.pid, began.Format(time.RFC3339), recorded.Format(time.RFC3339))
	}
	return recorded, nil
}
