package docker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// secPod is a pod of one container, c0, changed by mut.
func secPod(mut func(p *corev1.Pod)) *api.RetrievedPodData {
	data := &api.RetrievedPodData{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c0", Image: "busybox"}}},
	}}
	data.Containers = []api.RetrievedContainer{{Name: "c0"}}
	if mut != nil {
		mut(&data.Pod)
	}
	return data
}

// csc returns the first container's securityContext, made when missing.
func csc(p *corev1.Pod) *corev1.SecurityContext {
	c := &p.Spec.Containers[0]
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	return c.SecurityContext
}

// psc returns the pod's securityContext, made when missing.
func psc(p *corev1.Pod) *corev1.PodSecurityContext {
	if p.Spec.SecurityContext == nil {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	return p.Spec.SecurityContext
}

func testDocker(t *testing.T, mut func(*Config)) *Sidecar {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataRootFolder = t.TempDir()
	if mut != nil {
		mut(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &Sidecar{cfg: cfg}
}

// mapped is what the securityContext sets of one container.
type mapped struct {
	User           string
	FromImage      *fromImage
	Privileged     bool
	CapAdd         []string
	CapDrop        []string
	SecurityOpt    []string
	ReadonlyRootfs bool
	GroupAdd       []string
	PidMode        string
	IpcMode        string
	GPUs           int
}

func mappedOf(s spec) mapped {
	m := mapped{User: s.create.User, FromImage: s.fromImage, Privileged: s.host.Privileged, CapAdd: s.host.CapAdd, CapDrop: s.host.CapDrop,
		SecurityOpt: s.host.SecurityOpt, ReadonlyRootfs: s.host.ReadonlyRootfs, GroupAdd: s.host.GroupAdd,
		PidMode: string(s.host.PidMode), IpcMode: string(s.host.IpcMode)}
	for _, r := range s.host.DeviceRequests {
		m.GPUs += r.Count
	}
	return m
}

func TestSecurityContextMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		pod  func(*corev1.Pod)
		want mapped
	}{
		{name: "NothingAskedNothingAdded", want: mapped{}},
		{name: "Restricted", pod: func(p *corev1.Pod) {
			sc := csc(p)
			sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = ptr(int64(1000)), ptr(int64(3000)), ptr(true)
			sc.AllowPrivilegeEscalation, sc.ReadOnlyRootFilesystem, sc.Privileged = ptr(false), ptr(true), ptr(false)
			sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
			sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
			sc.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
			sc.ProcMount = ptr(corev1.DefaultProcMount)
		}, want: mapped{User: "1000:3000", CapDrop: []string{"ALL"}, SecurityOpt: []string{optNoNewPrivileges}, ReadonlyRootfs: true}},
		{name: "ContainerOverridesPod", pod: func(p *corev1.Pod) {
			ps := psc(p)
			ps.RunAsUser, ps.RunAsGroup = ptr(int64(1)), ptr(int64(2))
			ps.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			ps.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
			sc := csc(p)
			sc.RunAsUser = ptr(int64(1000))
			sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
			sc.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
		}, want: mapped{User: "1000:2"}},
		{name: "PodLevelUser", pod: func(p *corev1.Pod) { psc(p).RunAsUser = ptr(int64(1000)) }, want: mapped{User: "1000"}},
		{name: "NonRootWithoutUserAsksTheImage", pod: func(p *corev1.Pod) { psc(p).RunAsNonRoot = ptr(true) },
			want: mapped{FromImage: &fromImage{nonRoot: true, field: "spec.securityContext.runAsNonRoot"}}},
		{name: "GroupWithoutUserAsksTheImage", pod: func(p *corev1.Pod) { csc(p).RunAsGroup = ptr(int64(5)) },
			want: mapped{FromImage: &fromImage{group: ptr(int64(5)), field: "spec.securityContext.runAsNonRoot"}}},
		{name: "NonRootFalseRoot", pod: func(p *corev1.Pod) { csc(p).RunAsUser, csc(p).RunAsNonRoot = ptr(int64(0)), ptr(false) },
			want: mapped{User: "0"}},
		{name: "GroupsAndFSGroup", pod: func(p *corev1.Pod) {
			psc(p).SupplementalGroups, psc(p).FSGroup = []int64{10, 11}, ptr(int64(2000))
			psc(p).SupplementalGroupsPolicy = ptr(corev1.SupplementalGroupsPolicyMerge)
		}, want: mapped{GroupAdd: []string{"10", "11", "2000"}}},
		{name: "DropSpellings", pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"net_raw", "CAP_SYS_ADMIN", "MKNOD"}}
		}, want: mapped{CapDrop: []string{"NET_RAW", "SYS_ADMIN", "MKNOD"}}},
		{name: "AllowedCapability", cfg: func(c *Config) { c.AllowedCapabilities = []string{"CAP_NET_ADMIN", "sys_ptrace"} }, pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "CAP_SYS_PTRACE"}, Drop: []corev1.Capability{"ALL"}}
		}, want: mapped{CapAdd: []string{"NET_ADMIN", "SYS_PTRACE"}, CapDrop: []string{"ALL"}}},
		{name: "AllCapabilitiesAllowed", cfg: func(c *Config) { c.AllowedCapabilities = []string{"ALL"} }, pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN", "ALL"}}
		}, want: mapped{CapAdd: []string{"SYS_ADMIN", "ALL"}}},
		{name: "PrivilegedAllowed", cfg: func(c *Config) { c.AllowPrivileged = true }, pod: func(p *corev1.Pod) { csc(p).Privileged = ptr(true) },
			want: mapped{Privileged: true}},
		{name: "UnconfinedSeccompAllowed", cfg: func(c *Config) { c.AllowUnconfinedSeccomp = true }, pod: func(p *corev1.Pod) {
			psc(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, want: mapped{SecurityOpt: []string{optSeccompUnconfined}}},
		{name: "HostNamespacesAllowed", cfg: func(c *Config) { c.AllowHostNamespaces = true }, pod: func(p *corev1.Pod) {
			p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC = true, true, true
		}, want: mapped{PidMode: "host", IpcMode: "host"}},
		{name: "SELinuxLevel", pod: func(p *corev1.Pod) { psc(p).SELinuxOptions = &corev1.SELinuxOptions{Level: "s0-s0:c0.c1023"} },
			want: mapped{SecurityOpt: []string{"label=level:s0-s0:c0.c1023"}}},
		{name: "GPUKept", pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{resourceNvidiaGPU: resource.MustParse("2"), corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
				Requests: corev1.ResourceList{resourceNvidiaGPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")}}
		}, want: mapped{GPUs: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDocker(t, tc.cfg)
			data := secPod(tc.pod)
			specs, _, err := d.podSpecs(data, "/data/ns-uid-1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, mappedOf(specs[0]), cmp.AllowUnexported(fromImage{})); diff != "" {
				t.Errorf("mapped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecurityContextRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		pod  func(*corev1.Pod)
		want []string // in the message, each
	}{
		{name: "Privileged", pod: func(p *corev1.Pod) { csc(p).Privileged = ptr(true) },
			want: []string{"container c0: securityContext.privileged: true is refused", "AllowPrivileged (INTERLINK_DOCKER_ALLOW_PRIVILEGED)"}},
		{name: "HostNetwork", pod: func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			want: []string{"spec.hostNetwork: true is refused", "AllowHostNamespaces (INTERLINK_DOCKER_ALLOW_HOST_NAMESPACES)"}},
		{name: "HostPID", pod: func(p *corev1.Pod) { p.Spec.HostPID = true }, want: []string{"spec.hostPID: true is refused", "AllowHostNamespaces"}},
		{name: "HostIPC", pod: func(p *corev1.Pod) { p.Spec.HostIPC = true }, want: []string{"spec.hostIPC: true is refused", "AllowHostNamespaces"}},
		{name: "CapabilityAdded", pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}
		}, want: []string{"securityContext.capabilities.add: NET_ADMIN is refused", "AllowedCapabilities (INTERLINK_DOCKER_ALLOWED_CAPABILITIES)"}},
		{name: "CapabilityNotInTheList", cfg: func(c *Config) { c.AllowedCapabilities = []string{"NET_ADMIN"} }, pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "cap_sys_admin"}}
		}, want: []string{"capabilities.add: SYS_ADMIN is refused"}},
		{name: "AllNotInTheList", cfg: func(c *Config) { c.AllowedCapabilities = []string{"NET_ADMIN"} }, pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"ALL"}}
		}, want: []string{"capabilities.add: ALL is refused"}},
		{name: "CapabilityName", pod: func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW --privileged"}}
		}, want: []string{`capabilities.drop: "NET_RAW --privileged" is not a capability name`}},
		{name: "SeccompUnconfined", pod: func(p *corev1.Pod) {
			csc(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, want: []string{"container c0: securityContext.seccompProfile.type: Unconfined is refused", "AllowUnconfinedSeccomp (INTERLINK_DOCKER_ALLOW_UNCONFINED_SECCOMP)"}},
		{name: "PodSeccompUnconfined", pod: func(p *corev1.Pod) {
			psc(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, want: []string{"spec.securityContext.seccompProfile.type: Unconfined is refused", "AllowUnconfinedSeccomp"}},
		{name: "SeccompLocalhost", cfg: func(c *Config) { c.AllowUnconfinedSeccomp = true }, pod: func(p *corev1.Pod) {
			csc(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("../../etc/none.json")}
		}, want: []string{"securityContext.seccompProfile.type: Localhost is refused by the Docker sidecar"}},
		{name: "SeccompUnknown", pod: func(p *corev1.Pod) { csc(p).SeccompProfile = &corev1.SeccompProfile{Type: "Off"} },
			want: []string{`seccompProfile.type: "Off" is not`}},
		{name: "AppArmorUnconfined", pod: func(p *corev1.Pod) {
			csc(p).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		}, want: []string{"securityContext.appArmorProfile.type: Unconfined is refused"}},
		{name: "PodAppArmorUnconfined", pod: func(p *corev1.Pod) {
			psc(p).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		}, want: []string{"spec.securityContext.appArmorProfile.type: Unconfined is refused"}},
		{name: "AppArmorLocalhost", pod: func(p *corev1.Pod) {
			csc(p).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr("unconfined")}
		}, want: []string{"appArmorProfile.type: Localhost is refused"}},
		{name: "ProcMountUnmasked", pod: func(p *corev1.Pod) { csc(p).ProcMount = ptr(corev1.UnmaskedProcMount) },
			want: []string{`securityContext.procMount: "Unmasked" is refused`}},
		{name: "ExtendedResource", pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"example.com/fpga": resource.MustParse("1")}
		}, want: []string{`resources.limits["example.com/fpga"] is refused`, "no device"}},
		{name: "HugePages", pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"hugepages-2Mi": resource.MustParse("2Mi")}
		}, want: []string{`resources.requests["hugepages-2Mi"] is refused`}},
		{name: "ResourceClaims", pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Claims = []corev1.ResourceClaim{{Name: "gpu"}}
			p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu"}}
		}, want: []string{"resources.claims is refused", "spec.resourceClaims is refused"}},
		{name: "PodResources", pod: func(p *corev1.Pod) {
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{"example.com/dev": resource.MustParse("1")}}
		}, want: []string{`spec.resources.limits["example.com/dev"] is refused`}},
		{name: "VolumeDevices", pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeDevices = []corev1.VolumeDevice{{Name: "disk", DevicePath: "/dev/xvda"}}
		}, want: []string{"volumeDevices is refused"}},
		{name: "NonRootButRoot", pod: func(p *corev1.Pod) { psc(p).RunAsNonRoot, csc(p).RunAsUser = ptr(true), ptr(int64(0)) },
			want: []string{"spec.securityContext.runAsNonRoot: true, and securityContext.runAsUser is 0 (root)"}},
		{name: "UserOutOfRange", pod: func(p *corev1.Pod) { csc(p).RunAsUser, psc(p).RunAsGroup = ptr(int64(-1)), ptr(int64(1)<<40) },
			want: []string{"securityContext.runAsUser: -1 is not a user ID", "spec.securityContext.runAsGroup: 1099511627776 is not a group ID"}},
		{name: "GroupsOutOfRange", pod: func(p *corev1.Pod) { psc(p).SupplementalGroups, psc(p).FSGroup = []int64{-5}, ptr(int64(-6)) },
			want: []string{"supplementalGroups: -5 is not a group ID", "fsGroup: -6 is not a group ID"}},
		{name: "UserNamespace", pod: func(p *corev1.Pod) { p.Spec.HostUsers = ptr(false) }, want: []string{"spec.hostUsers: false is refused"}},
		{name: "Sysctls", pod: func(p *corev1.Pod) { psc(p).Sysctls = []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}} },
			want: []string{"spec.securityContext.sysctls is refused"}},
		{name: "StrictGroups", pod: func(p *corev1.Pod) { psc(p).SupplementalGroupsPolicy = ptr(corev1.SupplementalGroupsPolicyStrict) },
			want: []string{`supplementalGroupsPolicy: "Strict" is refused`}},
		{name: "SELinuxType", pod: func(p *corev1.Pod) { csc(p).SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t"} },
			want: []string{"securityContext.seLinuxOptions user, role or type is refused"}},
		{name: "SELinuxLevel", pod: func(p *corev1.Pod) { psc(p).SELinuxOptions = &corev1.SELinuxOptions{Level: "s0,type:spc_t"} },
			want: []string{`spec.securityContext.seLinuxOptions.level: "s0,type:spc_t" is not an SELinux level`}},
		{name: "WindowsHostProcess", pod: func(p *corev1.Pod) {
			psc(p).WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}
		}, want: []string{"spec.securityContext.windowsOptions.hostProcess: true is refused"}},
		{name: "EveryProblemAtOnce", pod: func(p *corev1.Pod) {
			p.Spec.HostPID = true
			csc(p).Privileged = ptr(true)
			p.Spec.InitContainers = []corev1.Container{{Name: "i0", Image: "busybox", SecurityContext: &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}}}
		}, want: []string{"spec.hostPID", "container c0: securityContext.privileged", "container i0: securityContext.capabilities.add: SYS_ADMIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDocker(t, tc.cfg)
			_, _, err := d.podSpecs(secPod(tc.pod), "/data/ns-uid-1")
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
			if code := api.HTTPStatus(api.ReasonOf(err)); code != http.StatusBadRequest {
				t.Errorf("%v: status %d, want 400", err, code)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nwant it to say %q", err, w)
				}
			}
		})
	}
}

func TestImageUser(t *testing.T) {
	nonRoot := fromImage{nonRoot: true, field: "securityContext.runAsNonRoot"}
	for _, tc := range []struct {
		user    string
		want    fromImage
		out     string
		wantErr string
	}{
		{user: "", want: nonRoot, wantErr: `securityContext.runAsNonRoot: true, and the image runs as root (user "")`},
		{user: "root", want: nonRoot, wantErr: "runs as root"},
		{user: "0", want: nonRoot, wantErr: "runs as root"},
		{user: "00", want: nonRoot, wantErr: "runs as root"},
		{user: "0:1000", want: nonRoot, wantErr: "runs as root"},
		{user: "root:1000", want: nonRoot, wantErr: "runs as root"},
		{user: "nobody", want: nonRoot, wantErr: `non-numeric user ("nobody"): cannot verify user is non-root`},
		{user: "+1000", want: nonRoot, wantErr: "non-numeric user"},
		{user: "-1", want: nonRoot, wantErr: "non-numeric user"},
		{user: "1000", want: nonRoot, out: ""},
		{user: "1000:0", want: nonRoot, out: ""},
		{user: "", want: fromImage{group: ptr(int64(5))}, out: "0:5"},
		{user: "nobody:nogroup", want: fromImage{group: ptr(int64(5))}, out: "nobody:5"},
		{user: "1000:1000", want: fromImage{nonRoot: true, group: ptr(int64(5))}, out: "1000:5"},
		{user: "root", want: fromImage{nonRoot: true, group: ptr(int64(5))}, wantErr: "runs as root"},
	} {
		out, err := imageUser(tc.user, tc.want)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("imageUser(%q, %+v) = %q, %v; want an error saying %q", tc.user, tc.want, out, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || out != tc.out):
			t.Errorf("imageUser(%q, %+v) = %q, %v; want %q", tc.user, tc.want, out, err, tc.out)
		}
	}
}

// TestHostNamespaces checks where the pause container and the others go,
// with and without the host's namespaces.
func TestHostNamespaces(t *testing.T) {
	type where struct{ Network, IPC, Hostname string }
	d := testDocker(t, func(c *Config) { c.AllowHostNamespaces = true })
	for _, tc := range []struct {
		name                               string
		hostNetwork, hostIPC               bool
		wantPause, wantJoined, wantOnlyOne where
	}{
		{name: "Default", wantPause: where{"bridge", "shareable", "p"}, wantJoined: where{"container:ID", "container:ID", ""}, wantOnlyOne: where{"bridge", "", "p"}},
		{name: "HostNetwork", hostNetwork: true, wantPause: where{"host", "shareable", ""}, wantJoined: where{"container:ID", "container:ID", ""}, wantOnlyOne: where{"host", "", ""}},
		{name: "HostIPC", hostIPC: true, wantPause: where{"bridge", "host", "p"}, wantJoined: where{"container:ID", "host", ""}, wantOnlyOne: where{"bridge", "host", "p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := secPod(func(p *corev1.Pod) { p.Spec.HostNetwork, p.Spec.HostIPC = tc.hostNetwork, tc.hostIPC })
			cfg, host := d.pauseSpec(&data.Pod)
			if diff := cmp.Diff(tc.wantPause, where{string(host.NetworkMode), string(host.IpcMode), cfg.Hostname}); diff != "" {
				t.Errorf("pause (-want +got):\n%s", diff)
			}
			for _, c := range []struct {
				netns string
				want  where
			}{{"container:ID", tc.wantJoined}, {"", tc.wantOnlyOne}} {
				specs, _, err := d.podSpecs(data, "/data/ns-uid-1")
				if err != nil {
					t.Fatal(err)
				}
				s := specs[0]
				d.join(&data.Pod, &s, c.netns)
				if diff := cmp.Diff(c.want, where{string(s.host.NetworkMode), string(s.host.IpcMode), s.create.Hostname}); diff != "" {
					t.Errorf("container, netns %q (-want +got):\n%s", c.netns, diff)
				}
			}
		})
	}
}

// imageEngine is the little of the Docker Engine API a create needs to
// reach its image check: no containers, every image present with user.
// It counts the containers it is asked to create.
func imageEngine(t *testing.T, user string, creates *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.44")
		switch {
		case r.URL.Path == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			_, _ = w.Write([]byte("[]"))
		case strings.Contains(r.URL.Path, "/images/") && strings.HasSuffix(r.URL.Path, "/json"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"Id":"sha256:0123","Config":{"User":"` + user + `"}}`))
		case strings.HasSuffix(r.URL.Path, "/containers/create"):
			creates.Add(1)
			http.Error(w, `{"message":"not in this test"}`, http.StatusInternalServerError)
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCreateRefusesBeforeAnyContainer: a refused pod is a 400 and no
// container is created for it, whether the refusal comes from its spec or
// from its image's user.
func TestCreateRefusesBeforeAnyContainer(t *testing.T) {
	for _, tc := range []struct {
		name, imageUser string
		pod             func(*corev1.Pod)
		want            string
	}{
		{"Privileged", "1000", func(p *corev1.Pod) { csc(p).Privileged = ptr(true) }, "AllowPrivileged"},
		{"HostPID", "1000", func(p *corev1.Pod) { p.Spec.HostPID = true }, "AllowHostNamespaces"},
		{"CapabilityAdded", "1000", func(p *corev1.Pod) {
			csc(p).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}
		}, "AllowedCapabilities"},
		{"NonRootImageIsRoot", "", func(p *corev1.Pod) { psc(p).RunAsNonRoot = ptr(true) }, `container c0: spec.securityContext.runAsNonRoot: true, and the image runs as root (user "")`},
		{"NonRootImageUserName", "app", func(p *corev1.Pod) { psc(p).RunAsNonRoot = ptr(true) }, `non-numeric user ("app")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var creates atomic.Int32
			srv := imageEngine(t, tc.imageUser, &creates)
			d := onEngine(t, srv)
			_, err := d.Create(context.Background(), secPod(tc.pod))
			if api.ReasonOf(err) != api.ReasonInvalid || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: %v; want a 400 saying %q", err, tc.want)
			}
			if n := creates.Load(); n != 0 {
				t.Errorf("%d containers created for a refused pod", n)
			}
		})
	}
}

// The sidecar adds no capability and runs nothing privileged unless asked
// and allowed, whatever else the pod sets.
func TestNoCapabilityByDefault(t *testing.T) {
	d := testDocker(t, nil)
	data := secPod(func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "i0", Image: "busybox"}}
		csc(p).Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}
	})
	specs, _, err := d.podSpecs(data, "/data/ns-uid-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if s.host.Privileged || len(s.host.CapAdd) > 0 || s.host.PidMode != "" || s.host.IpcMode != "" || len(s.host.SecurityOpt) > 0 {
			t.Errorf("%s: privileged %v, added %v, pid %q, ipc %q, options %v", s.name, s.host.Privileged, s.host.CapAdd, s.host.PidMode, s.host.IpcMode, s.host.SecurityOpt)
		}
	}
	if got := specs[1].host.CapDrop; !cmp.Equal(got, []string{"NET_RAW"}) || specs[0].host.CapDrop != nil {
		t.Errorf("dropped: init %v, c0 %v; want only what c0 asked", specs[0].host.CapDrop, got)
	}
}

func TestConfigAllowedCapabilities(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AllowedCapabilities = []string{"NET_ADMIN", "cap_sys_ptrace", "ALL", "NET ADMIN", ""}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `"NET ADMIN" is not a capability name`) || !strings.Contains(err.Error(), `"" is not`) {
		t.Errorf("validate: %v; want the two bad names reported", err)
	}
	if strings.Contains(err.Error(), `"NET_ADMIN"`) || strings.Contains(err.Error(), "sys_ptrace") || strings.Contains(err.Error(), `"ALL"`) {
		t.Errorf("validate: %v; good names reported", err)
	}
}
