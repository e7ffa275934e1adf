//go:build e2e

package observability_test

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/prometheus/common/expfmt"

	"github.com/seed-3f807049/interlink/functions"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
	"github.com/seed-3f807049/interlink/observability/metrics"
	"github.com/seed-3f807049/interlink/proxy"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		e2eenv.Prerequisite(t, "promtool (run .ci/prometheus.sh install)")
	}
	return p
}

// TestAlertRules: the rules load, and every rule's promtool tests (one case
// firing, one not) pass.
func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts/interlink.rules.yaml"},
		{"test", "rules", "alerts/interlink.rules_test.yaml"},
	} {
		if out, err := exec.Command(pt, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestScrapesPassPromtool: the registries of interlink (API and proxy
// metrics) pass promtool check metrics (names, units, help).
func TestScrapesPassPromtool(t *testing.T) {
	pt := promtool(t)
	reg := metrics.New("interlink")
	functions.NewMetrics(reg, []string{"slurm", "docker"})
	proxy.NewMetrics(reg)
	gathered, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range gathered {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
