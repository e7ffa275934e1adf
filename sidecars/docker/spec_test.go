package docker

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars/poddata"
)

// TestCommandArgs: command is Docker's Entrypoint (which drops the image's
// CMD), args its Cmd; unset stays nil, so the image's hold; env and
// workingDir are passed as the pod has them (the VK expanded env values);
// command and args get their $(VAR) references expanded with that env.
func TestCommandArgs(t *testing.T) {
	type got struct {
		Entrypoint, Cmd, Env []string
		WorkingDir           string
	}
	for _, tc := range []struct {
		name string
		c    func(*corev1.Container)
		want got
	}{
		{"Neither", nil, got{}},
		{"OnlyArgs", func(c *corev1.Container) { c.Args = []string{"x", "y"} }, got{Cmd: []string{"x", "y"}}},
		{"OnlyCommand", func(c *corev1.Container) { c.Command = []string{"/bin/echo"} }, got{Entrypoint: []string{"/bin/echo"}}},
		{"Both", func(c *corev1.Container) { c.Command, c.Args = []string{"sh", "-c"}, []string{"echo hi"} },
			got{Entrypoint: []string{"sh", "-c"}, Cmd: []string{"echo hi"}}},
		{"EnvAndWorkingDir", func(c *corev1.Container) {
			c.Env, c.WorkingDir = []corev1.EnvVar{{Name: "A", Value: "a b"}, {Name: "E"}}, "/work/dir"
		}, got{Env: []string{"A=a b", "E="}, WorkingDir: "/work/dir"}},
		{"Expanded", func(c *corev1.Container) {
			c.Env = []corev1.EnvVar{{Name: "X", Value: "x"}, {Name: "Y", Value: "$(X)$$(X)"}}
			c.Command, c.Args = []string{"$(X)", "$(Y)"}, []string{"$(X)", "$$(X)", "$(HOME)"}
		}, got{Entrypoint: []string{"x", "$(X)$$(X)"}, Cmd: []string{"x", "$(X)", "$(HOME)"}, Env: []string{"X=x", "Y=$(X)$$(X)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDocker(t, nil)
			specs, _, err := d.podSpecs(secPod(func(p *corev1.Pod) {
				if tc.c != nil {
					tc.c(&p.Spec.Containers[0])
				}
			}), "/data/ns-uid-1")
			if err != nil {
				t.Fatal(err)
			}
			cfg := specs[0].create
			if diff := cmp.Diff(tc.want, got{cfg.Entrypoint, cfg.Cmd, cfg.Env, cfg.WorkingDir}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestRestartPolicies: app containers restart as the pod says; init
// containers are run again after a failure unless it says Never.
func TestRestartPolicies(t *testing.T) {
	for policy, want := range map[corev1.RestartPolicy][2]container.RestartPolicyMode{
		"":                            {container.RestartPolicyOnFailure, container.RestartPolicyAlways},
		corev1.RestartPolicyAlways:    {container.RestartPolicyOnFailure, container.RestartPolicyAlways},
		corev1.RestartPolicyOnFailure: {container.RestartPolicyOnFailure, container.RestartPolicyOnFailure},
		corev1.RestartPolicyNever:     {"", ""},
	} {
		d := testDocker(t, nil)
		specs, _, err := d.podSpecs(secPod(func(p *corev1.Pod) {
			p.Spec.RestartPolicy = policy
			p.Spec.InitContainers = []corev1.Container{{Name: "i0", Image: "busybox"}}
		}), "/data/ns-uid-1")
		if err != nil {
			t.Fatal(err)
		}
		if got := [2]container.RestartPolicyMode{specs[0].host.RestartPolicy.Name, specs[1].host.RestartPolicy.Name}; got != want {
			t.Errorf("restartPolicy %q: init %q, app %q; want %q", policy, got[0], got[1], want)
		}
	}
}

func TestSpecRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  func(*corev1.Pod)
		want string
	}{
		{"SidecarContainer", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "side", Image: "busybox", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways)}}
		}, `container side: restartPolicy "Always" (a sidecar container) is not supported`},
		{"SubPathOfHostPath", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/data"}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "h", MountPath: "/h", SubPath: "x"}}
		}, "subPath on a hostPath volume is refused"},
		// The VK resolves env before a pod reaches a sidecar.
		{"UnresolvedEnvFrom", func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}
		}, `container c0: envFrom is not resolved`},
		{"UnresolvedValueFrom", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "N", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		}, `container c0: env N: valueFrom is not resolved`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDocker(t, func(c *Config) { c.AllowedHostPaths = []string{"/srv"} })
			_, _, err := d.podSpecs(secPod(tc.pod), "/data/ns-uid-1")
			if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want Invalid saying %q", err, tc.want)
			}
		})
	}
}

// TestSubPathsPinned: each directory on the path of an emptyDir subPath is
// made (0777) and bound onto itself in every container that sees it
// through a mount of the volume above it, read-only where that mount is.
func TestSubPathsPinned(t *testing.T) {
	d := testDocker(t, nil)
	data := secPod(func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{
			{Name: "ed", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "other", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
		}
		p.Spec.Containers = []corev1.Container{
			{Name: "whole", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/all"}, {Name: "other", MountPath: "/o"}}},
			{Name: "ro", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/ro", ReadOnly: true}}},
			{Name: "parent", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/p", SubPath: "a/"}}},
			{Name: "deep", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/d", SubPath: "a/b/../b"}}},
			{Name: "shadow", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/s"}, {Name: "cfg", MountPath: "/s/a"}}},
			{Name: "dot", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "ed", MountPath: "/dot", SubPath: "."}}},
		}
	})
	data.Containers = []api.RetrievedContainer{{Name: "whole", ConfigMaps: []corev1.ConfigMap{{}}}}
	data.Containers[0].ConfigMaps[0].Name = "cm"
	specs, files, err := d.podSpecs(data, "/data/ns-uid-1")
	if err != nil {
		t.Fatal(err)
	}
	bind := func(src, target string, ro bool) mount.Mount {
		return mount.Mount{Type: mount.TypeBind, Source: "/data/ns-uid-1/volumes/" + src, Target: target, ReadOnly: ro}
	}
	want := map[string][]mount.Mount{
		"whole":  {bind("ed", "/all", false), bind("other", "/o", false), bind("ed/a", "/all/a", false), bind("ed/a/b", "/all/a/b", false)},
		"ro":     {bind("ed", "/ro", true), bind("ed/a", "/ro/a", true), bind("ed/a/b", "/ro/a/b", true)},
		"parent": {bind("ed/a", "/p", false), bind("ed/a/b", "/p/b", false)},
		"deep":   {bind("ed/a/b", "/d", false)},
		"shadow": {bind("ed", "/s", false), bind("cfg", "/s/a", true)},
		"dot":    {bind("ed", "/dot", false), bind("ed/a", "/dot/a", false), bind("ed/a/b", "/dot/a/b", false)},
	}
	for _, s := range specs {
		if diff := cmp.Diff(want[s.name], s.host.Mounts); diff != "" {
			t.Errorf("%s: mounts (-want +got):\n%s", s.name, diff)
		}
	}
	var dirs []poddata.File
	for _, f := range files {
		if f.Dir && strings.HasPrefix(f.Path, "volumes/ed/") {
			dirs = append(dirs, f)
		}
	}
	if diff := cmp.Diff([]poddata.File{{Path: "volumes/ed/a", Dir: true, Mode: 0o777}, {Path: "volumes/ed/a/b", Dir: true, Mode: 0o777}}, dirs); diff != "" {
		t.Errorf("subPath directories (-want +got):\n%s", diff)
	}
}

// TestResources: limits as the kubelet sets them; no swap beyond the
// memory limit, so that going over it is an OOM kill.
func TestResources(t *testing.T) {
	d := testDocker(t, nil)
	specs, _, err := d.podSpecs(secPod(func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	}), "/data/ns-uid-1")
	if err != nil {
		t.Fatal(err)
	}
	if h := specs[0].host; h.NanoCPUs != 500_000_000 || h.Memory != 64<<20 || h.MemorySwap != 64<<20 {
		t.Errorf("NanoCPUs %d, Memory %d, MemorySwap %d", h.NanoCPUs, h.Memory, h.MemorySwap)
	}
}
