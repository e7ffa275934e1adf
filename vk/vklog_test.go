package vk

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestVKLoggerLevels: virtual-kubelet's per-pod Info lines and its force
// delete after our DeletePod are Debug; its warnings and errors, with their
// fields and bare error arguments, keep their level.
func TestVKLoggerLevels(t *testing.T) {
	var buf syncBuffer
	l := vkLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Info("Created pod in provider")
	l.Error(forceDeleteRunning)
	l.WithField("key", "ns/a").WithError(errors.New("boom")).Error(errors.New("Error processing pod status update"))
	l.WithFields(map[string]any{"pod": "a"}).Warnf("not enqueuing %s", "a")
	out := buf.String()
	for _, want := range []string{`level=ERROR msg="Error processing pod status update" key=ns/a err=boom`, `level=WARN msg="not enqueuing a" pod=a`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"Created pod in provider", forceDeleteRunning} {
		if strings.Contains(out, not) {
			t.Errorf("%q logged above Debug:\n%s", not, out)
		}
	}
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
