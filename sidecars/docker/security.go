package docker

// A pod's securityContext, and its containers', mapped to Docker. What
// restricts a container is honored; what widens it (privileged, host
// namespaces, added capabilities, no seccomp filter) is refused unless the
// operator's config allows it; what the sidecar cannot honor (devices,
// unmasked /proc, a host profile file, user namespaces) is refused rather
// than ignored. Every field is the pod author's and is checked as such.

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Docker security options the sidecar sets.
const (
	optNoNewPrivileges   = "no-new-privileges:true"
	optSeccompUnconfined = "seccomp=unconfined"
)

// refused is the error of a field that widens what a container may do and
// that the operator's config does not allow: it names the field and the
// key (with its environment variable) that would allow it.
func refused(field, key string) error {
	env := ""
	if f, ok := reflect.TypeFor[Config]().FieldByName(key); ok {
		env = " (" + f.Tag.Get("env") + ")"
	}
	return fmt.Errorf("%s is refused: the Docker sidecar's operator allows it with %s%s", field, key, env)
}

// never is the error of a field that the Docker sidecar never honors.
func never(field, why string) error {
	return fmt.Errorf("%s is refused by the Docker sidecar: %s", field, why)
}

// capRE is a capability's name, without its CAP_ prefix.
var capRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// capName spells a capability as Kubernetes does (NET_RAW, ALL) from any
// of the spellings Docker accepts (cap_net_raw, CAP_NET_RAW, NET_RAW).
func capName(s string) (string, bool) {
	n := strings.TrimPrefix(strings.ToUpper(s), "CAP_")
	return n, capRE.MatchString(n)
}

// capAllowed tells whether AllowedCapabilities lets a pod add the
// capability name (as capName spells it).
func (d *Sidecar) capAllowed(name string) bool {
	for _, a := range d.cfg.AllowedCapabilities {
		if n, _ := capName(a); n == "ALL" || n == name {
			return true
		}
	}
	return false
}

// podSecurity checks the fields of the pod itself that no container's
// securityContext overrides.
func (d *Sidecar) podSecurity(p *corev1.Pod) []error {
	var errs []error
	for _, ns := range []struct {
		field string
		on    bool
	}{{"spec.hostNetwork", p.Spec.HostNetwork}, {"spec.hostPID", p.Spec.HostPID}, {"spec.hostIPC", p.Spec.HostIPC}} {
		if ns.on && !d.cfg.AllowHostNamespaces {
			errs = append(errs, refused(ns.field+": true", "AllowHostNamespaces"))
		}
	}
	if p.Spec.HostUsers != nil && !*p.Spec.HostUsers {
		errs = append(errs, never("spec.hostUsers: false", "it cannot give a container a user namespace of its own"))
	}
	if len(p.Spec.ResourceClaims) > 0 {
		errs = append(errs, never("spec.resourceClaims", "it gives pods no device"))
	}
	if r := p.Spec.Resources; r != nil {
		errs = append(errs, checkResources("spec.resources", r)...)
	}
	if psc := p.Spec.SecurityContext; psc != nil {
		if len(psc.Sysctls) > 0 {
			errs = append(errs, never("spec.securityContext.sysctls", "it sets no sysctl"))
		}
		if psc.SupplementalGroupsPolicy != nil && *psc.SupplementalGroupsPolicy != corev1.SupplementalGroupsPolicyMerge {
			errs = append(errs, never(fmt.Sprintf("spec.securityContext.supplementalGroupsPolicy: %q", *psc.SupplementalGroupsPolicy),
				"Docker always adds the groups of the image's /etc/group (Merge)"))
		}
		for _, g := range psc.SupplementalGroups {
			if !validID(g) {
				errs = append(errs, fmt.Errorf("spec.securityContext.supplementalGroups: %d is not a group ID", g))
			}
		}
		if g := psc.FSGroup; g != nil && !validID(*g) {
			errs = append(errs, fmt.Errorf("spec.securityContext.fsGroup: %d is not a group ID", *g))
		}
	}
	return errs
}

// mappedResources are the resources the sidecar maps (or, for
// ephemeral-storage, accepts); any other is a device or a kind of memory
// it does not give.
var mappedResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, resourceNvidiaGPU}

func checkResources(field string, r *corev1.ResourceRequirements) []error {
	var errs []error
	for _, l := range []struct {
		name string
		list corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		var names []string
		for n := range l.list {
			if !slices.Contains(mappedResources, n) {
				names = append(names, string(n))
			}
		}
		slices.Sort(names)
		for _, n := range names {
			errs = append(errs, never(fmt.Sprintf("%s.%s[%q]", field, l.name, n),
				"it gives pods no device; it maps cpu, memory and nvidia.com/gpu only"))
		}
	}
	if len(r.Claims) > 0 {
		errs = append(errs, never(field+".claims", "it gives pods no device"))
	}
	return errs
}

// validID tells whether id is a user or group ID Docker and Linux accept.
func validID(id int64) bool { return id >= 0 && id <= math.MaxInt32 }

// fromImage is what a container's user takes from its image, once pulled:
// with runAsNonRoot and no runAsUser, the image's user must be shown
// non-root; with runAsGroup and no runAsUser, the image's user runs with
// that group.
type fromImage struct {
	nonRoot bool
	group   *int64
	// field names runAsNonRoot where it was set (pod or container).
	field string
}

// pick returns the container's setting when it has one, else the pod's,
// and the field's name for messages.
func pick[T any](c, p *T, field string) (*T, string) {
	if c != nil {
		return c, "securityContext." + field
	}
	return p, "spec.securityContext." + field
}

// containerSecurity maps the container's securityContext, merged with the
// pod's, onto s; it reports every field it refuses.
func (d *Sidecar) containerSecurity(p *corev1.Pod, c *corev1.Container, s *spec) []error {
	psc := p.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	var errs []error

	// Namespaces of the Docker host (podSecurity refuses them unless allowed).
	if p.Spec.HostPID {
		s.host.PidMode = "host"
	}
	if p.Spec.HostIPC {
		s.host.IpcMode = container.IPCModeHost
	}

	// User and groups.
	user, userField := pick(csc.RunAsUser, psc.RunAsUser, "runAsUser")
	group, groupField := pick(csc.RunAsGroup, psc.RunAsGroup, "runAsGroup")
	nonRootp, nonRootField := pick(csc.RunAsNonRoot, psc.RunAsNonRoot, "runAsNonRoot")
	nonRoot := nonRootp != nil && *nonRootp
	idsOK := true
	if user != nil && !validID(*user) {
		errs, idsOK = append(errs, fmt.Errorf("%s: %d is not a user ID", userField, *user)), false
	}
	if group != nil && !validID(*group) {
		errs, idsOK = append(errs, fmt.Errorf("%s: %d is not a group ID", groupField, *group)), false
	}
	switch {
	case !idsOK:
	case user != nil:
		s.create.User = strconv.FormatInt(*user, 10)
		if group != nil {
			s.create.User += ":" + strconv.FormatInt(*group, 10)
		}
		if nonRoot && *user == 0 {
			errs = append(errs, fmt.Errorf("%s: true, and %s is 0 (root)", nonRootField, userField))
		}
	case nonRoot || group != nil:
		s.fromImage = &fromImage{nonRoot: nonRoot, group: group, field: nonRootField}
	}
	for _, g := range psc.SupplementalGroups {
		if validID(g) { // podSecurity reports the others
			s.host.GroupAdd = append(s.host.GroupAdd, strconv.FormatInt(g, 10))
		}
	}
	if g := psc.FSGroup; g != nil && validID(*g) {
		// As the kubelet does; the pod's volumes are not chowned to it.
		s.host.GroupAdd = append(s.host.GroupAdd, strconv.FormatInt(*g, 10))
	}

	// Privileges and capabilities.
	if csc.Privileged != nil && *csc.Privileged {
		if d.cfg.AllowPrivileged {
			s.host.Privileged = true
		} else {
			errs = append(errs, refused("securityContext.privileged: true", "AllowPrivileged"))
		}
	}
	if a := csc.AllowPrivilegeEscalation; a != nil && !*a {
		s.host.SecurityOpt = append(s.host.SecurityOpt, optNoNewPrivileges)
	}
	if caps := csc.Capabilities; caps != nil {
		for _, c := range caps.Add {
			switch n, ok := capName(string(c)); {
			case !ok:
				errs = append(errs, fmt.Errorf("securityContext.capabilities.add: %q is not a capability name", c))
			case !d.capAllowed(n):
				errs = append(errs, refused(fmt.Sprintf("securityContext.capabilities.add: %s", n), "AllowedCapabilities"))
			default:
				s.host.CapAdd = append(s.host.CapAdd, n)
			}
		}
		for _, c := range caps.Drop {
			if n, ok := capName(string(c)); ok {
				s.host.CapDrop = append(s.host.CapDrop, n)
			} else {
				errs = append(errs, fmt.Errorf("securityContext.capabilities.drop: %q is not a capability name", c))
			}
		}
	}
	if r := csc.ReadOnlyRootFilesystem; r != nil && *r {
		s.host.ReadonlyRootfs = true
	}
	if pm := csc.ProcMount; pm != nil && *pm != corev1.DefaultProcMount {
		errs = append(errs, never(fmt.Sprintf("securityContext.procMount: %q", *pm), "/proc stays masked (Default)"))
	}

	// Confinement: seccomp, AppArmor, SELinux.
	switch sp, field := pick(csc.SeccompProfile, psc.SeccompProfile, "seccompProfile"); {
	case sp == nil || sp.Type == corev1.SeccompProfileTypeRuntimeDefault:
		// Docker's default profile
	case sp.Type == corev1.SeccompProfileTypeUnconfined:
		if d.cfg.AllowUnconfinedSeccomp {
			s.host.SecurityOpt = append(s.host.SecurityOpt, optSeccompUnconfined)
		} else {
			errs = append(errs, refused(field+".type: Unconfined", "AllowUnconfinedSeccomp"))
		}
	case sp.Type == corev1.SeccompProfileTypeLocalhost:
		errs = append(errs, never(field+".type: Localhost", "a pod does not choose a profile file on the Docker host"))
	default:
		errs = append(errs, fmt.Errorf("%s.type: %q is not RuntimeDefault, Unconfined or Localhost", field, sp.Type))
	}
	switch ap, field := pick(csc.AppArmorProfile, psc.AppArmorProfile, "appArmorProfile"); {
	case ap == nil || ap.Type == corev1.AppArmorProfileTypeRuntimeDefault:
		// Docker's default profile, where the host has AppArmor
	case ap.Type == corev1.AppArmorProfileTypeUnconfined:
		errs = append(errs, never(field+".type: Unconfined", "containers keep Docker's AppArmor profile"))
	case ap.Type == corev1.AppArmorProfileTypeLocalhost:
		errs = append(errs, never(field+".type: Localhost", "a pod does not choose a profile loaded on the Docker host"))
	default:
		errs = append(errs, fmt.Errorf("%s.type: %q is not RuntimeDefault, Unconfined or Localhost", field, ap.Type))
	}
	if se, field := pick(csc.SELinuxOptions, psc.SELinuxOptions, "seLinuxOptions"); se != nil {
		if se.User != "" || se.Role != "" || se.Type != "" {
			errs = append(errs, never(field+" user, role or type", "a pod chooses only its MCS level"))
		}
		switch {
		case se.Level == "":
		case len(se.Level) > 256 || !selinuxLevelRE.MatchString(se.Level):
			errs = append(errs, fmt.Errorf("%s.level: %q is not an SELinux level such as s0:c1,c2", field, se.Level))
		default:
			s.host.SecurityOpt = append(s.host.SecurityOpt, "label=level:"+se.Level)
		}
	}
	if w, field := pick(csc.WindowsOptions, psc.WindowsOptions, "windowsOptions"); w != nil && w.HostProcess != nil && *w.HostProcess {
		errs = append(errs, never(field+".hostProcess: true", "it runs Linux containers"))
	}

	// Devices.
	errs = append(errs, checkResources("resources", &c.Resources)...)
	if len(c.VolumeDevices) > 0 {
		errs = append(errs, never("volumeDevices", "it gives pods no block device"))
	}
	return errs
}

// selinuxLevelRE is an MLS/MCS level: s0, s0:c1,c2, s0-s0:c0.c1023.
var selinuxLevelRE = regexp.MustCompile(`^s[0-9]{1,4}(-s[0-9]{1,4})?(:c[0-9]{1,4}([.,]c[0-9]{1,4})*)?$`)

// numericRE is a user or group ID as an image's Config.User writes it.
var numericRE = regexp.MustCompile(`^[0-9]{1,10}$`)

// imageUser returns the Docker user of a container whose securityContext
// needs its image's user (want), given that image's Config.User; it
// refuses, as the kubelet does, an image whose user is root or, with
// runAsNonRoot, a name that does not show it is not root. An empty result
// keeps the image's user.
func imageUser(configUser string, want fromImage) (string, error) {
	name, _, _ := strings.Cut(configUser, ":")
	if want.nonRoot {
		switch {
		case name == "" || name == "root":
			return "", fmt.Errorf("%s: true, and the image runs as root (user %q); set runAsUser", want.field, configUser)
		case !numericRE.MatchString(name):
			return "", fmt.Errorf("%s: true, and the image has non-numeric user (%q): cannot verify user is non-root; set runAsUser", want.field, name)
		}
		if uid, err := strconv.ParseInt(name, 10, 64); err != nil || uid == 0 {
			return "", fmt.Errorf("%s: true, and the image runs as root (user %q); set runAsUser", want.field, configUser)
		}
	}
	if want.group == nil {
		return "", nil
	}
	if name == "" {
		name = "0" // Docker's default
	}
	return name + ":" + strconv.FormatInt(*want.group, 10), nil
}

// imageUsers sets the user of the containers whose securityContext needs
// their image's (pulled by then), refusing those imageUser refuses.
func (d *Sidecar) imageUsers(ctx context.Context, p *corev1.Pod, specs []spec) error {
	users := map[string]string{}
	var errs []error
	for i := range specs {
		s := &specs[i]
		if s.fromImage == nil {
			continue
		}
		u, ok := users[s.image]
		if !ok {
			res, err := d.api.ImageInspect(ctx, s.image)
			if err != nil {
				return engineError(fmt.Sprintf("pod %s/%s: inspect image %q", p.Namespace, p.Name, s.image), err)
			}
			if res.Config != nil {
				u = res.Config.User
			}
			users[s.image] = u
		}
		user, err := imageUser(u, *s.fromImage)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", s.name, err))
			continue
		}
		s.create.User = user
	}
	if len(errs) > 0 {
		return api.Invalid("pod %s/%s: %w", p.Namespace, p.Name, api.JoinErrors(errs))
	}
	return nil
}

// networkMode is the network of the pod's namespace: the host's with
// hostNetwork (allowed by then), else NetworkMode.
func (d *Sidecar) networkMode(p *corev1.Pod) container.NetworkMode {
	if p.Spec.HostNetwork {
		return network.NetworkHost
	}
	return container.NetworkMode(d.cfg.NetworkMode)
}

// join puts a container into its pod's namespaces: those of the pause
// container ("container:ID", netns), or, for a pod that needs no pause
// container, the pod's network. A container on the host's IPC namespace
// (hostIPC) stays there.
func (d *Sidecar) join(p *corev1.Pod, s *spec, netns string) {
	if netns != "" {
		s.host.NetworkMode = container.NetworkMode(netns)
		if s.host.IpcMode == "" {
			s.host.IpcMode = container.IpcMode(netns)
		}
		return
	}
	s.host.NetworkMode = d.networkMode(p)
	if !p.Spec.HostNetwork {
		s.create.Hostname = hostname(p)
	}
}
