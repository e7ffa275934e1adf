package sim

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/sidecars/sidecarstest"
)

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.PendingDelay = config.D(50 * time.Millisecond)
	cfg.RunDuration = config.D(500 * time.Millisecond)
	cfg.LogInterval = config.D(100 * time.Millisecond)
	return cfg
}

func TestConformance(t *testing.T) {
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	sidecarstest.Run(t, s, sidecarstest.Config{
		Timeout: 10 * time.Second,
		WantLog: "started",
		Prepare: func(p *corev1.Pod, failing bool) {
			if failing {
				p.Annotations[AnnotationOutcome] = OutcomeFailed
			}
		},
	})
}
