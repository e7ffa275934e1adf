package docker

import (
	"context"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// inspectConcurrency bounds the inspect and stats calls of one status
// request: each container's stats call follows its inspect.
const inspectConcurrency = 8

// Status answers for the known pods of the batch: one list call for all
// the sidecar's containers, then one inspect per container of the pods
// asked (exit codes, times, OOM kills and restarts are only there), and for
// each running app container its usage (usage.go: a stats call at most
// every usageEvery).
func (d *Sidecar) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
	all, err := d.pods(ctx, "")
	if err != nil {
		return nil, err
	}
	type job struct {
		pod, i int
		c      container.Summary
	}
	var jobs []job
	asked := make([][]container.Summary, len(pods))
	for i := range pods {
		asked[i] = all[string(pods[i].UID)]
		for j, c := range asked[i] {
			jobs = append(jobs, job{i, j, c})
		}
	}
	d.pruneUsage(all)
	inspected := make([][]*container.InspectResponse, len(pods))
	usage := make([][]*usageSample, len(pods))
	for i := range asked {
		inspected[i] = make([]*container.InspectResponse, len(asked[i]))
		usage[i] = make([]*usageSample, len(asked[i]))
	}
	var g errgroup.Group
	g.SetLimit(inspectConcurrency)
	for _, j := range jobs {
		g.Go(func() error {
			start := time.Now()
			res, err := d.api.ContainerInspect(ctx, j.c.ID, client.ContainerInspectOptions{})
			d.observe("inspect", start, err)
			if err != nil {
				return nil // a container gone meanwhile: left out
			}
			inspected[j.pod][j.i] = &res.Container
			st := res.Container.State
			if st == nil {
				return nil
			}
			if st.Status != container.StateRunning {
				d.dropUsage(j.c.ID)
			} else if j.c.Labels[LabelRole] == roleApp {
				usage[j.pod][j.i] = d.usageOf(ctx, j.c, st.StartedAt)
			}
			if (st.Status == container.StateExited || st.Status == container.StateDead) && started(st) {
				in := res.Container
				in.Config = withLabels(in.Config, j.c.Labels)
				d.recordEnd(ctx, in, lifecycleOf(j.c.Labels), "")
			}
			return nil
		})
	}
	_ = g.Wait() // every container answers for itself
	var out []api.PodStatus
	for i := range pods {
		if len(asked[i]) == 0 {
			continue
		}
		st := podStatus(asked[i], inspected[i], d.historyCopy, time.Now())
		st.Usage = podUsage(asked[i], usage[i])
		out = append(out, st)
	}
	return out, nil
}

// podStatus maps the pod's containers (cs, as inspected in at now), with
// what the sidecar knows of their pasts (hist).
func podStatus(cs []container.Summary, in []*container.InspectResponse, hist func(id string) history, now time.Time) api.PodStatus {
	st := api.PodStatus{PodUID: cs[0].Labels[LabelUID], PodNamespace: cs[0].Labels[LabelNamespace], PodName: cs[0].Labels[LabelName]}
	if h, ok := holder(cs); ok {
		st.JobID = h.ID[:12]
		if n := h.NetworkSettings; n != nil {
			st.PodIP = endpointIP(n.Networks)
		}
		// The list may date from before the holder joined its network
		// (the pod then looked Running without an IP): its inspect, made
		// after the list, has the last word.
		if k := slices.IndexFunc(cs, func(c container.Summary) bool { return c.ID == h.ID }); in[k] != nil && in[k].NetworkSettings != nil {
			if ip := endpointIP(in[k].NetworkSettings.Networks); ip != "" {
				st.PodIP = ip
			}
		}
	}
	initDone := true
	for i, c := range cs {
		if c.Labels[LabelRole] == rolePause {
			continue
		}
		cst := containerStatus(c, in[i], initDone, hist(c.ID), now)
		if c.Labels[LabelRole] == roleInit {
			initDone = initDone && cst.State.Terminated != nil && cst.State.Terminated.ExitCode == 0
			st.InitContainers = append(st.InitContainers, cst)
		} else {
			st.Containers = append(st.Containers, cst)
		}
	}
	return st
}

func parseTime(s string) metav1.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 { // Docker's zero time is 0001-01-01
		return metav1.Time{}
	}
	return metav1.NewTime(t)
}

// containerStatus maps Docker's state of one container, inspected at now,
// and what the sidecar saw of it (h): starts it retried, which count as
// restarts, and how its last run ended.
func containerStatus(c container.Summary, in *container.InspectResponse, initDone bool, h history, now time.Time) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Labels[LabelContainer], Image: c.Image, ImageID: c.ImageID, ContainerID: "docker://" + c.ID}
	if in == nil || in.State == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "Unknown", Message: "the container could not be inspected"}
		return cs
	}
	s := in.State
	restart := in.HostConfig != nil && restarts(in.HostConfig)
	cs.RestartCount = int32(min(in.RestartCount+h.retries, 1<<30)) //nolint:gosec // bounded above
	switch {
	case s.Status == container.StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: parseTime(s.StartedAt)}
		cs.Ready, cs.Started = true, ptr(true)
	case s.Status == container.StateRestarting:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "restarting after exit code " + strconv.Itoa(s.ExitCode)}
		cs.LastTerminationState.Terminated = terminated(s)
	case s.Error != "" && (s.Status == container.StateCreated || !started(s)):
		// Docker could not start it: its command is missing (127) or not
		// executable (126), or a mount failed (128). The sidecar retries
		// when the pod's restartPolicy restarts it.
		t := &corev1.ContainerStateTerminated{ExitCode: exitCode(s.ExitCode, 128), Reason: ReasonCannotRun, Message: s.Error}
		if restart {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting a container Docker could not start: " + s.Error}
			cs.LastTerminationState.Terminated = t
		} else {
			cs.State.Terminated = t
		}
	case (s.Status == container.StateExited || s.Status == container.StateDead) && oomUnsettled(in, now):
		// Its end is told once it is known whether it was an OOM kill.
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: parseTime(s.StartedAt)}
		cs.Started = ptr(true)
	case s.Status == container.StateExited || s.Status == container.StateDead:
		cs.State.Terminated = terminated(s)
		if oomMissed(in, h) {
			cs.State.Terminated.Reason = "OOMKilled"
			cs.State.Terminated.Message = "exit code 137 (SIGKILL) with a memory limit of " + resource.NewQuantity(in.HostConfig.Memory, resource.BinarySI).String() +
				", not stopped by the sidecar: taken for the kernel's OOM kill, which Docker did not report"
		}
	default: // created, paused, removing
		reason := "ContainerCreating"
		if !initDone && c.Labels[LabelRole] == roleApp {
			reason = "PodInitializing"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: s.Error}
	}
	if cs.LastTerminationState.Terminated == nil && cs.RestartCount > 0 && started(s) {
		// The run before this one, as the events told it.
		cs.LastTerminationState.Terminated = previousEnd(h.ends, parseTime(s.StartedAt))
		if t := cs.LastTerminationState.Terminated; t != nil {
			if msg, ok := messageOf(h.msgs, t.FinishedAt.Time, time.Second); ok && msg != "" {
				t.Message = msg
			}
		}
	}
	supervised(&cs, s, lifecycleOf(c.Labels), h)
	return cs
}

// supervised completes a container's status with what its supervisor
// found (supervise.go): whether its run started and is ready when hooks
// and probes say so, the termination message of its last run, and the
// restart the sidecar is about to make after it stopped the container.
func supervised(cs *corev1.ContainerStatus, s *container.State, l lifecycle, h history) {
	if cs.State.Running != nil && l.gated() {
		cur := h.run == s.StartedAt
		cs.Started, cs.Ready = ptr(cur && h.started), cur && h.ready
	}
	t := cs.State.Terminated
	if s.Status == container.StateRestarting {
		t = cs.LastTerminationState.Terminated
	}
	if t == nil || t.Reason == ReasonCannotRun {
		return
	}
	if msg, ok := messageOf(h.msgs, parseTime(s.FinishedAt).Time, 0); ok && msg != "" {
		t.Message = msg
	}
	if h.backoff != "" && cs.State.Terminated != nil {
		cs.State.Terminated, cs.LastTerminationState.Terminated = nil, t
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting the container after: " + h.backoff}
	}
}

// oomSettle is how long after a container's SIGKILL Docker may still learn
// that the kernel's OOM killer sent it: containerd sends the task's exit
// and its OOM apart, and Docker 20.10 sets OOMKilled when the OOM comes,
// even after the exit.
const oomSettle = 3 * time.Second

// oomUnsettled tells whether in, a container with a memory limit killed by
// SIGKILL (137) less than oomSettle before now, may yet turn out OOMKilled.
// Its end is then not reported, since an ended container's status is
// final: the kubelet never changes a terminated state's reason.
func oomUnsettled(in *container.InspectResponse, now time.Time) bool {
	s := in.State
	if s.OOMKilled || s.ExitCode != 128+9 || in.HostConfig == nil || in.HostConfig.Memory <= 0 {
		return false
	}
	end := parseTime(s.FinishedAt)
	return !end.IsZero() && now.Sub(end.Time) < oomSettle
}

// oomMissed tells whether in, a container with a memory limit that ended
// by SIGKILL (137) over oomSettle ago, with no OOM kill that Docker knows
// of, was OOM-killed all the same: the sidecar did not stop it (h), and
// nothing in the container can SIGKILL its PID 1. Docker 20.10 misses the
// OOM kills the kernel makes before containerd watches the container's
// memory cgroup, early in a run on a busy host.
func oomMissed(in *container.InspectResponse, h history) bool {
	s := in.State
	if s.OOMKilled || s.ExitCode != 128+9 || in.HostConfig == nil || in.HostConfig.Memory <= 0 {
		return false
	}
	return h.run != s.StartedAt || h.killed == ""
}

// ReasonCannotRun is the reason of a container that Docker could not
// start, as a kubelet on Docker (dockershim) reports it; its exit code is
// Docker's: 127 for a command not found, 126 for one not executable.
const ReasonCannotRun = "ContainerCannotRun"

// exitCode is code as an int32, or def when code is 0.
func exitCode(code, def int) int32 {
	if code == 0 {
		code = def
	}
	return int32(min(max(code, -1<<31), 1<<31-1)) //nolint:gosec // clamped
}

func terminated(s *container.State) *corev1.ContainerStateTerminated {
	reason := "Completed"
	switch {
	case s.OOMKilled:
		reason = "OOMKilled"
	case s.ExitCode != 0:
		reason = "Error"
	}
	return &corev1.ContainerStateTerminated{ExitCode: exitCode(s.ExitCode, 0), Reason: reason, Message: s.Error,
		StartedAt: parseTime(s.StartedAt), FinishedAt: parseTime(s.FinishedAt)}
}

func ptr[T any](v T) *T { return &v }

// endpointIP is the address of a container on its network (the last one
// listed that has an address), or "".
func endpointIP(nets map[string]*network.EndpointSettings) string {
	ip := ""
	for _, ep := range nets {
		if ep != nil && ep.IPAddress.IsValid() {
			ip = ep.IPAddress.String()
		}
	}
	return ip
}
