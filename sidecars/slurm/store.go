package slurm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// record is what the sidecar keeps of a pod.
type record struct {
	UID            string    `json:"uid"`
	Namespace      string    `json:"namespace"`
	Name           string    `json:"name"`
	JobID          string    `json:"jobID"`
	Dir            string    `json:"dir"` // relative to DataRootFolder
	InitContainers []string  `json:"initContainers,omitempty"`
	Containers     []string  `json:"containers"`
	Created        time.Time `json:"created"`
	// Final is the job's end as Slurm last told it, kept once seen so that
	// a job purged from squeue still has its fate.
	Final *jobState `json:"final,omitempty"`
	// Probes, hooks and termination messages (absent in older records).
	podProbes
	// StopUntil, when set, is the end of the job's graceful stop: Delete
	// signaled it and removes the pod once it ended (Slurm.stopLater).
	StopUntil time.Time `json:"stopUntil,omitzero"`
}

// store maps pod UIDs to records, in memory and in a bbolt file, so that a
// restarted sidecar recovers every job.
type store struct {
	db *bolt.DB
	mu sync.RWMutex
	m  map[string]*record
}

var bucket = []byte("pods")

func openStore(path string) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	// Creates wait for their record to be on disk; a short batch delay
	// lets concurrent ones share a commit without slowing a lone one much.
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &store{db: db, m: map[string]*record{}}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %s: %w", k, err)
			}
			s.m[string(k)] = &r
			return nil
		})
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

// get returns a copy of the record of uid.
func (s *store) get(uid string) (record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.m[uid]
	if !ok {
		return record{}, false
	}
	return *r, true
}

func (s *store) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// each calls fn with every record, under the store's read lock.
func (s *store) each(fn func(*record)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.m {
		fn(r)
	}
}

// put writes r durably; concurrent puts share one commit.
func (s *store) put(r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(r.UID), v) }); err != nil {
		return fmt.Errorf("save pod %s: %w", r.UID, err)
	}
	s.mu.Lock()
	s.m[r.UID] = &r
	s.mu.Unlock()
	return nil
}

func (s *store) remove(uid string) error {
	if err := s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(uid)) }); err != nil {
		return fmt.Errorf("forget pod %s: %w", uid, err)
	}
	s.mu.Lock()
	delete(s.m, uid)
	s.mu.Unlock()
	return nil
}
