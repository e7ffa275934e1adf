package docker

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// inspectConcurrency bounds the inspect calls of one status request.
const inspectConcurrency = 8

// Status answers for the known pods of the batch: one list call for all
// the sidecar's containers, then one inspect per container of the pods
// asked (exit codes, times, OOM kills and restarts are only there).
func (d *Docker) Status(ctx context.Context, pods []corev1.Pod) ([]api.PodStatus, error) {
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
	inspected := make([][]*container.InspectResponse, len(pods))
	for i := range asked {
		inspected[i] = make([]*container.InspectResponse, len(asked[i]))
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, inspectConcurrency)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			res, err := d.api.ContainerInspect(ctx, j.c.ID, client.ContainerInspectOptions{})
			d.observe("inspect", start, err)
			if err == nil {
				inspected[j.pod][j.i] = &res.Container
			}
		}()
	}
	wg.Wait()
	var out []api.PodStatus
	for i := range pods {
		if len(asked[i]) == 0 {
			continue
		}
		out = append(out, podStatus(asked[i], inspected[i]))
	}
	return out, nil
}

func podStatus(cs []container.Summary, in []*container.InspectResponse) api.PodStatus {
	st := api.PodStatus{PodUID: cs[0].Labels[LabelUID], PodNamespace: cs[0].Labels[LabelNamespace], PodName: cs[0].Labels[LabelName]}
	if h, ok := holder(cs); ok {
		st.JobID = h.ID[:12]
		if n := h.NetworkSettings; n != nil {
			for _, ep := range n.Networks {
				if ep != nil && ep.IPAddress.IsValid() {
					st.PodIP = ep.IPAddress.String()
				}
			}
		}
	}
	initDone := true
	for i, c := range cs {
		if c.Labels[LabelRole] == rolePause {
			continue
		}
		cst := containerStatus(c, in[i], initDone)
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

// containerStatus maps Docker's state of one container.
func containerStatus(c container.Summary, in *container.InspectResponse, initDone bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Labels[LabelContainer], Image: c.Image, ImageID: c.ImageID, ContainerID: "docker://" + c.ID}
	if in == nil || in.State == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "Unknown", Message: "the container could not be inspected"}
		return cs
	}
	s := in.State
	cs.RestartCount = int32(min(in.RestartCount, 1<<30)) //nolint:gosec // bounded above
	switch s.Status {
	case container.StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: parseTime(s.StartedAt)}
		cs.Ready, cs.Started = true, ptr(true)
	case container.StateRestarting:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "restarting after exit code " + strconv.Itoa(s.ExitCode)}
		cs.LastTerminationState.Terminated = terminated(s)
	case container.StateExited, container.StateDead:
		if t := parseTime(s.StartedAt); t.IsZero() {
			// Never started: Docker failed to start it (bad command, say).
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: s.Error}
			break
		}
		cs.State.Terminated = terminated(s)
	default: // created, paused, removing
		reason := "ContainerCreating"
		if !initDone && c.Labels[LabelRole] == roleApp {
			reason = "PodInitializing"
		}
		if s.Error != "" {
			reason = "CreateContainerError"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: s.Error}
	}
	return cs
}

func terminated(s *container.State) *corev1.ContainerStateTerminated {
	reason := "Completed"
	switch {
	case s.OOMKilled:
		reason = "OOMKilled"
	case s.ExitCode != 0:
		reason = "Error"
	}
	return &corev1.ContainerStateTerminated{ExitCode: int32(min(max(s.ExitCode, -1<<31), 1<<31-1)), Reason: reason, Message: s.Error, //nolint:gosec // clamped
		StartedAt: parseTime(s.StartedAt), FinishedAt: parseTime(s.FinishedAt), ContainerID: ""}
}

func ptr[T any](v T) *T { return &v }
