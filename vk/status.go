package vk

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// podStatus computes a pod's Kubernetes status from its sidecar's report,
// keeping transition times of conditions that did not change.
func podStatus(pod *corev1.Pod, st *api.PodStatus, hostIP string, now metav1.Time) corev1.PodStatus {
	old := pod.Status
	out := corev1.PodStatus{
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		StartTime: old.StartTime,
		QOSClass:  old.QOSClass,
		PodIP:     old.PodIP,
		PodIPs:    old.PodIPs,
	}
	if out.StartTime == nil {
		out.StartTime = &now
	}
	if st.PodIP != "" {
		out.PodIP, out.PodIPs = st.PodIP, []corev1.PodIP{{IP: st.PodIP}}
	}
	// Containers kept out of interLink (the disable-offload annotations)
	// wait with a reason, and the phase follows the others only.
	skipInit, skip := notOffloaded(pod)
	out.InitContainerStatuses = containerStatuses(pod.Spec.InitContainers, st.InitContainers, st.JobID)
	out.ContainerStatuses = containerStatuses(pod.Spec.Containers, st.Containers, st.JobID)
	markNotOffloaded(out.InitContainerStatuses, skipInit, AnnotationDisableOffloadInitContainers)
	markNotOffloaded(out.ContainerStatuses, skip, AnnotationDisableOffloadContainers)

	initDone, initFailed := true, false
	kept := 0 // containers kept out of interLink
	for _, cs := range out.InitContainerStatuses {
		if skipInit[cs.Name] {
			kept++
			continue
		}
		t := cs.State.Terminated
		switch {
		case t == nil:
			initDone = false
		case t.ExitCode != 0:
			initDone, initFailed = false, true
		}
	}
	running, terminated, failed, ready, backingOff, n := 0, 0, 0, 0, 0, 0
	for _, cs := range out.ContainerStatuses {
		if skip[cs.Name] {
			kept++
			continue
		}
		n++
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			terminated++
			if cs.State.Terminated.ExitCode != 0 {
				failed++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			// Waiting to start again (CrashLoopBackOff): stopped and not
			// succeeded, as the kubelet counts it.
			terminated++
			failed++
			backingOff++
		}
		if cs.Ready {
			ready++
		}
	}
	never := pod.Spec.RestartPolicy == corev1.RestartPolicyNever
	switch {
	case initFailed && never:
		out.Phase, out.Reason, out.Message = corev1.PodFailed, "InitContainerFailed", "an init container exited with a non-zero code"
	case !initDone:
		out.Phase = corev1.PodPending
	case n > 0 && terminated == n && failed == 0 && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways:
		out.Phase = corev1.PodSucceeded
	case n > 0 && terminated == n && failed > 0 && (never || backingOff == 0):
		// Never: nothing restarts. Otherwise every container ended and
		// none waits to start again: the backend will not restart them
		// (the job ended: its time limit, a cancellation, a node failure).
		out.Phase = corev1.PodFailed
	case running > 0 || terminated > 0:
		out.Phase = corev1.PodRunning
	default:
		out.Phase = corev1.PodPending
	}
	// A container kept out never runs: the pod is never Ready (Services
	// must not send it traffic), whatever the others do.
	allReady := n > 0 && ready == n && kept == 0
	out.Conditions = []corev1.PodCondition{
		condition(old, corev1.PodScheduled, true, now),
		condition(old, corev1.PodInitialized, initDone, now),
		condition(old, corev1.ContainersReady, allReady, now),
		condition(old, corev1.PodReady, allReady, now),
	}
	return out
}

func condition(old corev1.PodStatus, t corev1.PodConditionType, ok bool, now metav1.Time) corev1.PodCondition {
	s := corev1.ConditionFalse
	if ok {
		s = corev1.ConditionTrue
	}
	c := corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
	for _, o := range old.Conditions {
		if o.Type == t && o.Status == s {
			c.LastTransitionTime = o.LastTransitionTime
		}
	}
	return c
}

// containerStatuses lists a status for each container of the spec, in spec
// order: the sidecar's, or waiting when the sidecar has none yet.
func containerStatuses(spec []corev1.Container, reported []corev1.ContainerStatus, jobID string) []corev1.ContainerStatus {
	if len(spec) == 0 {
		return nil
	}
	byName := make(map[string]*corev1.ContainerStatus, len(reported))
	for i := range reported {
		byName[reported[i].Name] = &reported[i]
	}
	out := make([]corev1.ContainerStatus, len(spec))
	for i, c := range spec {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
		if r, ok := byName[c.Name]; ok {
			cs.State, cs.LastTerminationState, cs.RestartCount = r.State, r.LastTerminationState, r.RestartCount
			// Started is the sidecar's when it runs startup probes or
			// postStart hooks; a sidecar that says nothing (an original
			// plugin) has started whatever runs. A container is ready only
			// once started: by its readiness probe, or without one at once.
			started := r.State.Running != nil && (r.Started == nil || *r.Started)
			cs.Started = &started
			cs.Ready = started && (r.Ready || c.ReadinessProbe == nil)
			if jobID != "" {
				cs.ContainerID = "interlink://" + jobID + "/" + c.Name
			}
		}
		if cs.State.Running == nil {
			cs.Ready = false
		}
		out[i] = cs
	}
	return out
}

// markNotOffloaded shows the containers in skip as waiting, not offloaded.
func markNotOffloaded(cs []corev1.ContainerStatus, skip map[string]bool, annotation string) {
	for i := range cs {
		if skip[cs[i].Name] {
			started := false
			cs[i].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: ReasonNotOffloaded,
				Message: fmt.Sprintf(notOffloadedMessage, annotation)}}
			cs[i].Ready, cs[i].Started, cs[i].ContainerID = false, &started, ""
		}
	}
}

// terminate marks every container of s that has not ended as terminated with
// reason, for a pod deleted on the remote side.
func terminate(s corev1.PodStatus, reason string, now metav1.Time) corev1.PodStatus {
	out := *s.DeepCopy()
	end := func(cs []corev1.ContainerStatus) {
		for i := range cs {
			if cs[i].State.Terminated != nil {
				continue
			}
			started := now
			if cs[i].State.Running != nil {
				started = cs[i].State.Running.StartedAt
			}
			cs[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: reason, StartedAt: started, FinishedAt: now}}
			cs[i].Ready = false
		}
	}
	end(out.InitContainerStatuses)
	end(out.ContainerStatuses)
	if out.Phase != corev1.PodSucceeded {
		out.Phase = corev1.PodFailed
	}
	for i := range out.Conditions {
		if out.Conditions[i].Type == corev1.PodReady || out.Conditions[i].Type == corev1.ContainersReady {
			out.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	return out
}

// failedStatus is the status of a pod that cannot run: Failed with reason,
// every container waiting with it.
func failedStatus(pod *corev1.Pod, hostIP, reason, msg string, now metav1.Time) corev1.PodStatus {
	out := *pod.Status.DeepCopy()
	out.Phase, out.Reason, out.Message = corev1.PodFailed, reason, msg
	if out.StartTime == nil {
		out.StartTime = &now
	}
	out.HostIP = hostIP
	out.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		out.ContainerStatuses = append(out.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}})
	}
	return out
}

// retryStatus is the status of a pod whose submission failed transiently
// (tries times so far) with err, while it waits for the next attempt.
func retryStatus(pod *corev1.Pod, err error, tries int) corev1.PodStatus {
	out := *pod.Status.DeepCopy()
	out.Phase = corev1.PodPending
	if api.ReasonOf(err) == api.ReasonImageNotFound {
		// As a kubelet shows a failed pull: the containers wait with
		// ErrImagePull, then ImagePullBackOff while the pull is retried.
		reason := "ErrImagePull"
		if tries > 1 {
			reason = "ImagePullBackOff"
		}
		out.Reason, out.Message = "", ""
		out.InitContainerStatuses = waitingStatuses(pod.Spec.InitContainers, reason, err.Error())
		out.ContainerStatuses = waitingStatuses(pod.Spec.Containers, reason, err.Error())
	} else {
		out.Reason, out.Message = "SubmissionRetry", "waiting for interLink: "+err.Error()
	}
	return out
}

// waitingStatuses are the statuses of containers waiting for reason.
func waitingStatuses(cs []corev1.Container, reason, msg string) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}})
	}
	return out
}

// jobLostStatus is the status of a pod whose sidecar no longer knows its
// job jobID: its containers terminated, the pod failed with reason JobLost.
func jobLostStatus(s corev1.PodStatus, jobID string, now metav1.Time) corev1.PodStatus {
	out := terminate(s, "JobLost", now)
	out.Reason, out.Message = "JobLost", fmt.Sprintf("the sidecar has no job %s for this pod", jobID)
	return out
}
