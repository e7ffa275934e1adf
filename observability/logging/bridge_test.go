package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestVKAdapterLevels: virtual-kubelet's force delete after the provider's
// DeletePod is Debug; its other errors and warnings, with their fields and
// bare error arguments, keep their level.
func TestVKAdapterLevels(t *testing.T) {
	var buf bytes.Buffer
	a := vkAdapter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	a.Error(forceDeleteRunning)
	a.WithField("key", "ns/a").WithError(errors.New("boom")).Error(errors.New("Error processing pod status update"))
	a.WithFields(map[string]any{"pod": "a"}).Warnf("not enqueuing %s", "a")
	out := buf.String()
	for _, want := range []string{`level=ERROR msg="Error processing pod status update" key=ns/a err=boom`, `level=WARN msg="not enqueuing a" pod=a`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, forceDeleteRunning) {
		t.Errorf("%q logged above Debug:\n%s", forceDeleteRunning, out)
	}
}
