package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// savedPod is a pod in the state file.
type savedPod struct {
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	JobID          string            `json:"jobID"`
	Created        time.Time         `json:"created"`
	Outcome        uint8             `json:"outcome"`
	Containers     []string          `json:"containers"`
	InitContainers []string          `json:"initContainers,omitempty"`
	Data           map[string]string `json:"data,omitempty"`
}

type savedState struct {
	Seq  uint64                 `json:"seq"`
	Pods map[types.UID]savedPod `json:"pods"`
}

// load reads the state file, if there is one.
func (s *Sidecar) load() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read sim state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("sim state %s: %w", s.cfg.StateFile, err)
	}
	s.seq.Store(st.Seq)
	for uid, p := range st.Pods {
		s.pods[uid] = &pod{name: p.Name, namespace: p.Namespace, jid: p.JobID, created: p.Created, outcome: p.Outcome,
			containers: p.Containers, initContainers: p.InitContainers, data: p.Data}
	}
	return nil
}

// Save writes the jobs to the state file (atomically), if one is set.
func (s *Sidecar) Save() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	st := savedState{Seq: s.seq.Load(), Pods: map[types.UID]savedPod{}}
	s.mu.RLock()
	for uid, p := range s.pods {
		st.Pods[uid] = savedPod{Name: p.name, Namespace: p.namespace, JobID: p.jid, Created: p.created, Outcome: p.outcome,
			Containers: p.containers, InitContainers: p.initContainers, Data: p.data}
	}
	s.mu.RUnlock()
	b, err := json.Marshal(&st)
	if err != nil {
		return fmt.Errorf("encode sim state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.cfg.StateFile), ".sim-state-")
	if err != nil {
		return fmt.Errorf("save sim state: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save sim state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save sim state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.cfg.StateFile); err != nil {
		return fmt.Errorf("save sim state: %w", err)
	}
	return nil
}
