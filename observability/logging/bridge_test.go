package logging

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestVKAdapterLevels: virtual-kubelet's force delete after the provider's
// DeletePod and its retried conflicts are Debug; its other errors and warnings, with their fields and
// bare error arguments, keep their level.
func TestVKAdapterLevels(t *testing.T) {
	var buf bytes.Buffer
	a := vkAdapter{l: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	a.Error(forceDeleteRunning)
	a.WithField("key", "ns/a").WithError(errors.New("boom")).Error(errors.New("Error processing pod status update"))
	a.WithFields(map[string]any{"pod": "a"}).Warnf("not enqueuing %s", "a")
	// A conflict, wrapped as the pod controller wraps it: retried, so Debug.
	conflict := fmt.Errorf("error while updating pod status in kubernetes: %w", apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p-1", errors.New("the object has been modified")))
	a.WithField("key", "ns/p-1").WithError(conflict).Error("Error processing pod status update (conflict)")
	a.WithError(conflict).WithField("key", "ns/p-1").Errorf("%s", "Error processing pod status update (conflict)")
	out := buf.String()
	for _, want := range []string{`level=ERROR msg="Error processing pod status update" key=ns/a err=boom`, `level=WARN msg="not enqueuing a" pod=a`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "(conflict)") {
		t.Errorf("a conflict logged above Debug:\n%s", out)
	}
	if strings.Contains(out, forceDeleteRunning) {
		t.Errorf("%q logged above Debug:\n%s", forceDeleteRunning, out)
	}
}
