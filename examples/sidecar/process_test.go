package process

import (
	"testing"
	"time"

	"github.com/seed-3f807049/interlink/sidecars/sidecarstest"
)

// TestConformance runs the suite every sidecar passes: create, status,
// logs (tail, follow), delete, idempotent create, bad input, concurrency.
func TestConformance(t *testing.T) {
	sidecarstest.Run(t, New(), sidecarstest.Config{Timeout: 20 * time.Second, WantLog: "conformance-hello"})
}
