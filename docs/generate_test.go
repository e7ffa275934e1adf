package docs

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seed-3f807049/interlink/functions"
	"github.com/seed-3f807049/interlink/functions/installer"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/proxy"
	"github.com/seed-3f807049/interlink/sidecars/docker"
	"github.com/seed-3f807049/interlink/sidecars/sim"
	"github.com/seed-3f807049/interlink/sidecars/slurm"
	"github.com/seed-3f807049/interlink/vk"
	"github.com/seed-3f807049/interlink/vk/token"
)

var update = flag.Bool("update", false, "rewrite generated documents (make generate)")

// renderConfig renders docs/config.md from the binaries' Config structs.
func renderConfig() string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from the Config structs by "make generate"; do not edit. -->

Every binary reads its defaults, then a YAML file (` + "`--config PATH`" + `), then its environment
variables, and validates the result, reporting every problem at once. ` + "`--config-test`" + ` validates and
exits. Durations are written like ` + "`30s`" + ` or ` + "`2m`" + `. Keys the binary does not know are logged
and ignored, so one file can be shared with a plugin, as the original interLink does.

`)
	icfg, vcfg, pcfg := functions.DefaultConfig(), vk.DefaultConfig(), proxy.DefaultStandaloneConfig()
	tcfg, scfg, slcfg, dcfg := token.DefaultConfig(), sim.DefaultConfig(), slurm.DefaultConfig(), docker.DefaultConfig()
	answers := installer.DefaultAnswers()
	sections := []struct {
		binary, intro string
		cfg           any
	}{
		{"interlink", "The interLink API server (`functions/cmd/interlink`). " +
			"Config file: `--config` or `INTERLINKCONFIGPATH`. The original interLink's keys and variables keep working.", &icfg},
		{"interlink-vk", "The virtual kubelet (`vk/cmd/interlink-vk`). " +
			"Config file: `--config` or `VK_CONFIG_PATH`. The original's keys and variables keep working.", &vcfg},
		{"interlink-proxy", "The authenticating proxy on its own, in front of any upstream (`proxy/cmd/interlink-proxy`). " +
			"Config file: `--config` or `INTERLINK_PROXY_CONFIG`. Its `Auth` keys are those of interlink.", &pcfg},
		{"interlink-token-refresher", "Keeps the VK's token file fresh (`vk/cmd/interlink-token-refresher`). " +
			"Config file: `--config` or `INTERLINK_TOKEN_CONFIG`.", &tcfg},
		{"interlink-sim", "The simulated sidecar (`sidecars/sim/cmd/interlink-sim`), for scale tests only. " +
			"It authenticates no caller: run it on a test host, on a unix socket or loopback. " +
			"Config file: `--config` or `INTERLINK_SIM_CONFIG`.", &scfg},
		{"interlink-slurm", "The SLURM sidecar (`sidecars/slurm/cmd/interlink-slurm`). " +
			"Config file: `--config` or `SLURMCONFIGPATH`. The original SLURM plugin's keys and variables keep working; see docs/slurm.md. " +
			"It serves a unix socket by default; on TCP (`SidecarPort`) it requires a credential (`Auth`): docs/slurm.md#who-may-call-it.", &slcfg},
		{"interlink-docker", "The Docker sidecar (`sidecars/docker/cmd/interlink-docker`). " +
			"Config file: `--config` or `INTERLINK_DOCKER_CONFIG`. See docs/docker.md. " +
			"It serves a unix socket by default; on TCP (`SidecarPort`) it requires a credential (`Auth`): docs/docker.md#who-may-call-it.", &dcfg},
		{"interlink-installer", "The answers of the installer (`functions/cmd/interlink-installer`): `--answers FILE`, the flags of docs/installer.md, " +
			"or prompts on a terminal. Not a daemon: no environment variables. See docs/installer.md.", &answers},
	}
	for i, sec := range sections {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(config.Markdown(sec.binary, sec.intro, sec.cfg))
	}
	return b.String()
}

// TestConfigDocIsFresh fails when docs/config.md differs from what the
// Config structs generate. Run "make generate" to rewrite it.
func TestConfigDocIsFresh(t *testing.T) {
	want := renderConfig()
	if *update {
		if err := os.WriteFile("config.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("config.md")
	if err != nil {
		t.Fatalf("docs/config.md: %v (run make generate)", err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("docs/config.md is stale; run make generate (-generated +file):\n%s", diff)
	}
}
