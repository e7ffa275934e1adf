package slurm

import (
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/seed-3f807049/interlink/functions/api"
)

var update = flag.Bool("update", false, "rewrite the golden job scripts in testdata/")

const testUID = "0f5e8a52-4b1f-4c3e-9d2a-6f1e2d3c4b5a"

// testPod is a pod with an init container, two containers, a ConfigMap, a
// Secret, a projected volume, an emptyDir, env and resources.
func testPod() *api.RetrievedPodData {
	mode := int32(0o640)
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", UID: testUID, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{
				Name: "setup", Image: "busybox:1.36", Command: []string{"/bin/sh", "-c", "echo init > /work/ready"},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
			}},
			Containers: []corev1.Container{{
				Name: "main", Image: "ghcr.io/acme/app:v1", Command: []string{"/app"}, Args: []string{"--serve", "it's ok"},
				WorkingDir: "/srv",
				Env:        []corev1.EnvVar{{Name: "GREETING", Value: "hello world"}, {Name: "EMPTY"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
					Limits:   corev1.ResourceList{resourceNvidiaGPU: resource.MustParse("1")},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "config", MountPath: "/etc/app"},
					{Name: "creds", MountPath: "/etc/creds", ReadOnly: true},
					{Name: "token", MountPath: "/var/run/secrets/tokens"},
					{Name: "work", MountPath: "/work"},
				},
			}, {
				Name: "sidecar", Image: "/images/tools.sif", Args: []string{"watch"},
				Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work", SubPath: "logs"}},
			}},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: "app-creds", DefaultMode: &mode}}},
				{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	data := []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"app.yaml": "port: 8080\n", "nested/dir.conf": "x=1"}}}
	return &api.RetrievedPodData{Pod: p, Containers: []api.RetrievedContainer{
		{Name: "setup"},
		{Name: "main", ConfigMaps: data,
			Secrets:             []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "app-creds"}, Data: map[string][]byte{"password": []byte("s3cr3t")}}},
			ProjectedVolumeMaps: []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "token"}, Data: map[string]string{"token": "eyJ.token"}}}},
		{Name: "sidecar"},
	}}
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataRootFolder = "/data/interlink/jobs"
	cfg.EnvExecPath = "/opt/interlink/bin/interlink-envexec"
	cfg.ProberPath = "/opt/interlink/bin/interlink-prober"
	cfg.NsenterPath = "/usr/bin/nsenter"
	cfg.AllowedImageRoots = []string{"/images"} // the test pod's /images/tools.sif
	cfg.StatePath = filepath.Join(t.TempDir(), "state.db")
	return cfg
}

// render is what a golden file holds: sbatch's arguments, the script and
// the files written beside it.
func render(t *testing.T, cfg Config, data *api.RetrievedPodData) string {
	t.Helper()
	j, err := buildJob(&cfg, nil, data, "/data/interlink/jobs/team-a-"+testUID)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("# sbatch " + strings.Join(j.args, " ") + "\n")
	for _, f := range j.files {
		if f.Dir {
			b.WriteString("# dir  " + f.Path + "\n")
		} else {
			b.WriteString("# file " + f.Path + " " + f.Mode.String() + " " + strings.NewReplacer("\n", `\n`, "\x00", `\0`).Replace(string(f.Data)) + "\n")
		}
	}
	if j.spec != nil {
		b.WriteString("# file probes.json " + string(j.spec) + "\n")
	}
	b.WriteString(j.script)
	return b.String()
}

func TestGoldenScripts(t *testing.T) {
	asEUID(t, 0) // sbatch --uid (the original-slurm-config case)
	tests := []struct {
		name   string
		config func(*Config)
		pod    func(*api.RetrievedPodData)
	}{
		{"singularity", nil, nil},
		{"apptainer", func(c *Config) {
			c.Runtime, c.AllowedHostPaths, c.AllowedMPIFlags = RuntimeApptainer, []string{"/cvmfs"}, []string{"-np=", "--bind-to="}
		}, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationSingularityOptions] = "--writable-tmpfs --cleanenv"
			d.Pod.Annotations[AnnotationSingularityMounts] = "--bind /cvmfs:/cvmfs:ro"
			d.Pod.Annotations[AnnotationMPIFlags] = "-np 4 --bind-to core"
		}},
		{"enroot", func(c *Config) { c.Runtime = RuntimeEnroot }, nil},
		{"charliecloud", func(c *Config) { c.Runtime = RuntimeCharliecloud; c.ImageRoot = "/images" }, nil},
		// podman runs images by reference (normalized, as Docker does): the
		// sidecar container's is one; without a command, the job reads
		// the image's ENTRYPOINT and CMD.
		{"podman", func(c *Config) { c.Runtime = RuntimePodman },
			func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[1].Image = "acme/tools" }},
		// Containers start again; init containers until they succeed.
		{"restart-always", func(c *Config) { c.Runtime = RuntimePodman },
			func(d *api.RetrievedPodData) {
				d.Pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
				d.Pod.Spec.Containers[1].Image = "acme/tools"
			}},
		{"tsocks", func(c *Config) {
			c.Tsocks, c.TsocksPath, c.TsocksLoginNode = true, "/usr/lib/x86_64-linux-gnu/libtsocks.so", "user@login01"
		}, nil},
		{"embedded-data", func(c *Config) { c.SharedFS = false; c.CommandPrefix = "module load apptainer" }, nil},
		{"flavor-and-annotations", func(c *Config) {
			c.Partition, c.Account = "batch", "hpc-team"
			c.Flavors = []Flavor{{Name: "small", CPU: "1", Memory: "2Gi"}, {Name: "gpu", GPU: true, Partition: "gpu", Flags: []string{"--constraint=a100"}}}
			c.DefaultFlavor = "small"
			c.GPUFlag = "gpus"
			c.AllowPreExec = true
			c.AllowedSbatchFlags = append(c.AllowedSbatchFlags, "--mail-type=")
		}, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationPartition] = "long"
			d.Pod.Annotations[AnnotationQOS] = "high"
			d.Pod.Annotations[AnnotationFlags] = "--nodes=1 --exclusive --mail-type='END,FAIL'"
			d.Pod.Annotations[AnnotationPreExec] = "export OMP_NUM_THREADS=4"
			d.Pod.Spec.ActiveDeadlineSeconds = ptr(int64(5430))
		}},
		// The original SLURM plugin's keys and annotations: a flavors map,
		// ContainerRuntime, BashPath, DefaultUID within AllowedUIDs, the
		// enroot annotations and an image-root URI prefix.
		// Probes and hooks: the prober's spec beside the script, the
		// prober started before the init containers, the stop trap.
		{"probes-charliecloud", func(c *Config) { c.Runtime = RuntimeCharliecloud; c.ImageRoot = "/images" }, withProbes},
		{"probes-podman", func(c *Config) { c.Runtime = RuntimePodman },
			func(d *api.RetrievedPodData) { withProbes(d); d.Pod.Spec.Containers[1].Image = "acme/tools" }},
		// SharedFS off: the spec is embedded; Apptainer's helper holds the
		// env of a container with probes.
		{"probes-embedded", func(c *Config) { c.Runtime = RuntimeApptainer; c.SharedFS = false }, withProbes},
		{"original-slurm-config", func(c *Config) {
			c.ContainerRuntime, c.BashPath = RuntimeEnroot, "/usr/local/bin/bash"
			c.EnrootDefaultOptions = []string{"--rw", "--conf=/etc/enroot/site.conf"}
			c.AllowedUIDs, c.DefaultUID = []string{"1000-1999"}, UID(1001)
			c.AllowedEnrootOptions, c.AllowedHostPaths = []string{"--root"}, []string{"/cvmfs"}
			c.AllowedImageRoots = append(c.AllowedImageRoots, "oras://registry.example/")
			c.DefaultFlavor = "default"
			if err := c.Flavors.UnmarshalJSON([]byte(`{"default": {"CPUDefault": 4, "MemoryDefault": "16G", "SlurmFlags": ["--partition=cpu"]},
				"gpu-nvidia": {"CPUDefault": 8, "MemoryDefault": "64G", "UID": 1500, "SlurmFlags": ["--gres=gpu:1", "--partition=gpu", "--time 04:00:00"]}}`)); err != nil {
				panic(err)
			}
		}, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationFlavorOriginal] = "gpu-nvidia"
			d.Pod.Annotations[AnnotationEnrootOptions] = "--root"
			d.Pod.Annotations[AnnotationEnrootMounts] = "--mount /cvmfs:/cvmfs:ro"
			d.Pod.Annotations[AnnotationImageRoot] = "oras://registry.example/"
		}},
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
			if tt.pod != nil {
				tt.pod(data)
			}
			got := render(t, cfg, data)
			if tt.name == "original-slurm-config" {
				// The job's uid, beside its script.
				got = "# uid " + strconv.FormatInt(mustJob(t, cfg, data).uid, 10) + "\n" + got
			}
			golden := filepath.Join("testdata", "golden", tt.name+".sh")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./sidecars/slurm -run TestGoldenScripts -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("job differs from %s (-want +got):\n%s", golden, diff)
			}
			bashSyntax(t, got)
		})
	}
}

// mustJob builds the pod's job.
func mustJob(t *testing.T, cfg Config, data *api.RetrievedPodData) *job {
	t.Helper()
	j, err := buildJob(&cfg, nil, data, "/data/interlink/jobs/team-a-"+testUID)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// bashSyntax checks a script with bash -n, when bash is here.
func bashSyntax(t *testing.T, script string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to check job scripts: %v", err)
	}
	cmd := exec.Command(bash, "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
}

func TestResources(t *testing.T) {
	tests := []struct {
		name string
		pod  func(*corev1.Pod)
		want []string
		not  []string
	}{
		{"none", func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			for i := range p.Spec.Containers {
				p.Spec.Containers[i].Resources = corev1.ResourceRequirements{}
			}
		}, nil, []string{"--cpus-per-task", "--mem", "--gres"}},
		{"sum and round up", nil, []string{"--cpus-per-task=2", "--mem=1024M", "--gres=gpu:1"}, nil},
		{"init container larger", func(p *corev1.Pod) {
			p.Spec.InitContainers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("100M")}
		}, []string{"--cpus-per-task=4", "--mem=1024M"}, nil},
		{"amd gpus", func(p *corev1.Pod) {
			p.Spec.Containers[1].Resources.Limits = corev1.ResourceList{resourceAMDGPU: resource.MustParse("2")}
		}, []string{"--gres=gpu:3"}, nil},
		{"deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr(int64(61)) }, []string{"--time=1:01"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			data := testPod()
			if tt.pod != nil {
				tt.pod(&data.Pod)
			}
			j, err := buildJob(&cfg, nil, data, "/d")
			if err != nil {
				t.Fatal(err)
			}
			args := strings.Join(j.args, " ")
			for _, w := range tt.want {
				if !strings.Contains(args, w) {
					t.Errorf("sbatch %s: want %s", args, w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(args, w) {
					t.Errorf("sbatch %s: want no %s", args, w)
				}
			}
		})
	}
}

// TestRefusedPods: every bad pod is refused with an Invalid error naming
// the problem, before anything is written.
func TestRefusedPods(t *testing.T) {
	tests := []struct {
		name   string
		config func(*Config)
		pod    func(*api.RetrievedPodData)
		want   string
	}{
		{"configmap key escapes", nil, func(d *api.RetrievedPodData) {
			d.Containers[1].ConfigMaps[0].Data["../../x"] = "evil"
		}, `leaves the volume`},
		{"absolute item path", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Volumes[0].ConfigMap.Items = []corev1.KeyToPath{{Key: "app.yaml", Path: "/etc/passwd"}}
		}, `leaves the volume`},
		{"secret key escapes", nil, func(d *api.RetrievedPodData) {
			d.Containers[1].Secrets[0].Data["../../../.ssh/authorized_keys"] = []byte("k")
		}, `leaves the volume`},
		{"projected path escapes", nil, func(d *api.RetrievedPodData) {
			d.Containers[1].ProjectedVolumeMaps[0].Data["../token"] = "t"
		}, `leaves the volume`},
		{"subPath escapes", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[1].VolumeMounts[0].SubPath = "../../.."
		}, `subPath "../../.." leaves its volume`},
		{"relative mount path", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].VolumeMounts[0].MountPath = "etc"
		}, `is not absolute`},
		{"mount path with a colon", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].VolumeMounts[0].MountPath = "/a:/b"
		}, `must not contain`},
		{"missing configmap", nil, func(d *api.RetrievedPodData) { d.Containers[1].ConfigMaps = nil }, `configmap "app-config" was not sent`},
		{"host path not allowed", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Volumes = append(d.Pod.Spec.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}})
		}, `hostPath "/etc" is not under AllowedHostPaths`},
		{"pre-exec off", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationPreExec] = "rm -rf ~" }, `AllowPreExec is off`},
		{"flags with a substitution", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--nodes=$(id)" }, AnnotationFlags},
		{"flags with a variable", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--nodes=$HOME" }, `would be expanded`},
		{"flag not an option", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "rm -rf /" }, `"rm" is not an allowed option`},
		{"reserved flag", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--output=/etc/x" }, `option --output is not allowed (AllowedSbatchFlags`},
		{"reserved short flag", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "-o/etc/x" }, `AllowedSbatchFlags`},
		{"abbreviated reserved flag", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--out=/home/u/.bashrc" }, `option --out is not allowed`},
		{"bundled reserved flag", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "-Qo/path" }, `AllowedSbatchFlags`},
		{"version flag", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "-V" }, `option -V is not allowed (AllowedSbatchFlags`},
		{"abbreviated test-only", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--te" }, `option --te is not allowed`},
		{"a script path after a flag", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--exclusive /home/u/evil.sh" }, `"/home/u/evil.sh" is not an allowed option`},
		{"an option as a value", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--time --wrap=id" }, `is not a value`},
		{"clusters", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlags] = "--clusters=other" }, `AllowedSbatchFlags`},
		{"mpi flags refused by default", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n 2" }, `AllowedMPIFlags in the sidecar's config is empty`},
		{"mpi flags naming a program", func(c *Config) { c.AllowedMPIFlags = []string{"-n="} },
			func(d *api.RetrievedPodData) {
				d.Pod.Annotations[AnnotationMPIFlags] = "-n 1 /bin/sh -c 'touch /tmp/x' --"
			}, `"/bin/sh" is not an allowed option`},
		{"mpi MPMD separator", func(c *Config) { c.AllowedMPIFlags = []string{"-n="} },
			func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n 1 : -n 1 /bin/id" }, `is not an allowed option`},
		{"mpi value that is an option", func(c *Config) { c.AllowedMPIFlags = []string{"-n="} },
			func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n -launcher-exec" }, `is not a value`},
		{"mpiexec missing", func(c *Config) { c.AllowedMPIFlags = []string{"-n="} },
			func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n 2" }, `MpiexecPath`},
		{"singularity option not allowed", nil, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationSingularityOptions] = "--no-home=false --home /"
		}, `AllowedSingularityOptions`},
		{"singularity bind of the host", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationSingularityMounts] = "--bind /etc:/x" }, `bind source "/etc" is not under AllowedHostPaths`},
		{"singularity bind with options", func(c *Config) { c.AllowedHostPaths = []string{"/scratch"} },
			func(d *api.RetrievedPodData) {
				d.Pod.Annotations[AnnotationSingularityMounts] = "--bind /scratch:/s:suid"
			}, `want SRC[:DST[:ro|rw]]`},
		{"singularity bind that is not a bind", func(c *Config) { c.AllowedHostPaths = []string{"/scratch"} },
			func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationSingularityMounts] = "--overlay /scratch" }, `only --bind`},
		{"image root not allowed", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationImageRoot] = "/home/other/images" }, `AllowedImageRoots`},
		{"host root as the image", func(c *Config) { c.Runtime, c.ImageRoot = RuntimeCharliecloud, "/images" },
			func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[0].Image = "/" }, `outside ImageRoot and AllowedImageRoots`},
		{"a host file as the image", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[0].Image = "/etc/passwd" }, `outside ImageRoot`},
		{"an escaping path as the image", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[0].Image = "/images/../etc" }, `outside ImageRoot`},
		{"runtime not allowed", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationRuntime] = RuntimePodman }, `runtime "podman" is not allowed (AllowedRuntimes`},
		{"runtime not installed", func(c *Config) { c.AllowedRuntimes = []string{RuntimePodman} },
			func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationRuntime] = RuntimePodman }, `PodmanPath`},
		{"image as an option", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[0].Image = "--privileged" }, `starts with '-'`},
		{"bad partition", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationPartition] = "x; rm -rf /" }, `not a valid Slurm name`},
		{"unknown runtime", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationRuntime] = "docker" }, `AllowedRuntimes`},
		{"unknown flavor", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationFlavor] = "huge" }, `no flavor "huge"`},
		{"image escapes the image root", func(c *Config) { c.Runtime, c.ImageRoot = RuntimeCharliecloud, "/images" },
			func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[0].Image = "../../etc" }, `escapes the image root`},
		{"NUL in an argument", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.Containers[0].Args = []string{"a\x00b"} }, `cannot quote`},
		{"bad env name", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].Env = append(d.Pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "A=B; id", Value: "x"})
		}, `env name`},
		{"unknown restart policy", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.RestartPolicy = "Sometimes" }, `restartPolicy "Sometimes" is not`},
		{"negative deadline", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.ActiveDeadlineSeconds = ptr(int64(-1)) }, `not positive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.config != nil {
				tt.config(&cfg)
			}
			data := testPod()
			tt.pod(data)
			missing := map[string]error{"MpiexecPath": errors.New("not found"), "PodmanPath": errors.New("not found")}
			_, err := buildJob(&cfg, &site{missing: missing}, data, "/d")
			if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an Invalid error containing %q", err, tt.want)
			}
		})
	}
}

func TestSecretModes(t *testing.T) {
	cfg := testConfig(t)
	data := testPod()
	world := int32(0o777)
	data.Pod.Spec.Volumes[1].Secret.DefaultMode = &world
	j, err := buildJob(&cfg, nil, data, "/d")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range j.files {
		switch {
		case strings.HasPrefix(f.Path, "volumes/creds/"), strings.HasPrefix(f.Path, "volumes/token/"), strings.HasPrefix(f.Path, "env/"):
			if !f.Dir && f.Mode&0o077 != 0 {
				t.Errorf("%s has mode %v: secrets must not be readable by others", f.Path, f.Mode)
			}
		case f.Path == "volumes/config/app.yaml" && f.Mode != 0o644:
			t.Errorf("configmap file mode %v, want 0644", f.Mode)
		}
	}
}

// withProbes gives the test pod's main container every probe and hook, a
// termination message path and policy, and the pod a grace period.
func withProbes(d *api.RetrievedPodData) {
	d.Pod.Spec.TerminationGracePeriodSeconds = ptr(int64(20))
	c := &d.Pod.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}, PeriodSeconds: 1}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "test -e /tmp/alive; echo $(id)"}}},
		FailureThreshold: 2}
	c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"touch", "/tmp/alive"}}},
		PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo bye > /work/bye"}}}}
	c.TerminationMessagePath, c.TerminationMessagePolicy = "/tmp/termination-log", corev1.TerminationMessageFallbackToLogsOnError
}

// TestScriptRefusalsReachTheUser pins what a user gets for the refusals of
// what goes into the job script (pre-exec, MPI flags, restart policy, the
// site's template) and which refusal wins when a pod has several: the HTTP
// status and the whole message.
func TestScriptRefusalsReachTheUser(t *testing.T) {
	big := jobTemplateFile(t, `{{range .Containers}}{{printf "%0900000d" 0}}{{end}}`)
	mpiN := func(c *Config) { c.AllowedMPIFlags = []string{"-n="} }
	tests := []struct {
		name   string
		config func(*Config)
		pod    func(*api.RetrievedPodData)
		want   string
	}{
		{"pre-exec off", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationPreExec] = "rm -rf ~" }, "pod team-a/web: annotation slurm-job.vk.io/pre-exec is refused: AllowPreExec is off in the sidecar's config"},
		{"mpi flags refused by default", nil, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n 2" }, "pod team-a/web: annotation slurm-job.vk.io/mpi-flags: refused: AllowedMPIFlags in the sidecar's config is empty"},
		{"mpi flags naming a program", mpiN, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n 1 /bin/sh" }, `pod team-a/web: annotation slurm-job.vk.io/mpi-flags: "/bin/sh" is not an allowed option: only options listed in AllowedMPIFlags are accepted, and no program, path or argument (AllowedMPIFlags in the sidecar's config)`},
		{"mpi flags with a substitution", mpiN, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n $(id)" }, `pod team-a/web: annotation slurm-job.vk.io/mpi-flags: "-n $(id)": "$(id)" would be expanded by a shell; only plain and quoted words are accepted (only options listed in AllowedMPIFlags in the sidecar's config, each with a plain value, are accepted)`},
		{"mpiexec missing", mpiN, func(d *api.RetrievedPodData) { d.Pod.Annotations[AnnotationMPIFlags] = "-n 2" }, "pod team-a/web: annotation slurm-job.vk.io/mpi-flags: mpiexec cannot run at this site: not found (MpiexecPath in the sidecar's config)"},
		{"unknown restart policy", nil, func(d *api.RetrievedPodData) { d.Pod.Spec.RestartPolicy = "Sometimes" }, `pod team-a/web: restartPolicy "Sometimes" is not Always, OnFailure or Never`},
		{"NUL for the template", func(c *Config) { c.JobScriptTemplate = big }, func(d *api.RetrievedPodData) { d.Pod.Labels = map[string]string{"l": "a\x00b"} }, "pod team-a/web: a NUL byte cannot reach the job's shell (JobScriptTemplate): label l"},
		{"template output too large", func(c *Config) { c.JobScriptTemplate = big }, func(*api.RetrievedPodData) {}, "pod team-a/web: JobScriptTemplate TMPL: its output is larger than 1048576 bytes"},
		{"NUL in an argument", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.Containers[0].Args = []string{"a\x00b"}
			d.Pod.Spec.Containers[1].Args = []string{"c\x00"}
		}, "pod team-a/web: cannot quote \"a\\x00b\": cannot quote character at byte 1: shell strings cannot contain null bytes\n" +
			"cannot quote \"c\\x00\": cannot quote character at byte 1: shell strings cannot contain null bytes"},
		// Which refusal wins.
		{"a bad image before pre-exec", nil, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationPreExec] = "id"
			d.Pod.Spec.Containers[0].Image = "--privileged"
		}, `pod team-a/web: container main: image "--privileged" is empty or starts with '-'`},
		{"template before pre-exec", func(c *Config) { c.JobScriptTemplate = big }, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationPreExec] = "id"
		}, "pod team-a/web: JobScriptTemplate TMPL: its output is larger than 1048576 bytes"},
		{"pre-exec before mpi flags", nil, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationPreExec] = "id"
			d.Pod.Annotations[AnnotationMPIFlags] = "-n 2"
		}, "pod team-a/web: annotation slurm-job.vk.io/pre-exec is refused: AllowPreExec is off in the sidecar's config"},
		{"mpi flags before restart policy", nil, func(d *api.RetrievedPodData) {
			d.Pod.Annotations[AnnotationMPIFlags] = "-n 2"
			d.Pod.Spec.RestartPolicy = "Sometimes"
		}, "pod team-a/web: annotation slurm-job.vk.io/mpi-flags: refused: AllowedMPIFlags in the sidecar's config is empty"},
		{"restart policy before a NUL in an argument", nil, func(d *api.RetrievedPodData) {
			d.Pod.Spec.RestartPolicy = "Sometimes"
			d.Pod.Spec.Containers[0].Args = []string{"a\x00b"}
		}, `pod team-a/web: restartPolicy "Sometimes" is not Always, OnFailure or Never`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.config != nil {
				tt.config(&cfg)
			}
			st := &site{missing: map[string]error{"MpiexecPath": errors.New("not found")}}
			if cfg.JobScriptTemplate != "" {
				tmpl, err := loadJobTemplate(cfg.JobScriptTemplate)
				if err != nil {
					t.Fatal(err)
				}
				st.jobTemplate = tmpl
			}
			data := testPod()
			tt.pod(data)
			_, err := buildJob(&cfg, st, data, "/d")
			if err == nil {
				t.Fatal("the pod was accepted")
			}
			rec := httptest.NewRecorder()
			api.WriteError(rec, nil, err)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("status %d, want %d", rec.Code, http.StatusBadRequest)
			}
			want := strings.ReplaceAll(tt.want, "TMPL", cfg.JobScriptTemplate)
			if got := strings.TrimSuffix(rec.Body.String(), "\n"); got != want {
				t.Errorf("message\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestPrelude: prelude.sh goes into every job script without its
// shellcheck directives, and il_run stops starting containers again once
// the pod's stopping file is there.
func TestPrelude(t *testing.T) {
	if strings.Contains(prelude, "shellcheck") {
		t.Errorf("the prelude holds a shellcheck directive:\n%s", prelude)
	}
	stopping := "$IL_DIR/" + containersDir + "/" + stoppingFile + " "
	if n := strings.Count(prelude, stopping); n != 2 {
		t.Errorf("il_run names %q %d times, want 2 (before and after its back-off)", stopping, n)
	}
}
