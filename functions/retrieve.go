package functions

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// SplitPodData turns a VK create request into what a sidecar receives:
// one entry per container (init containers first) holding the ConfigMaps,
// Secrets and projected-volume maps that container uses through its volume
// mounts or its environment, plus the pod's imagePullSecrets. A projected or downwardAPI volume's map is the
// one named after the volume.
func SplitPodData(req *api.PodCreateRequests) *api.RetrievedPodData {
	pod := &req.Pod
	volumes := make(map[string]*corev1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		volumes[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	cms := index(req.ConfigMaps, func(c corev1.ConfigMap) string { return c.Name })
	secrets := index(req.Secrets, func(s corev1.Secret) string { return s.Name })
	projected := index(req.ProjectedVolumeMaps, func(c corev1.ConfigMap) string { return c.Name })

	// Projected maps named after no volume are given to every container:
	// nothing the VK sent is dropped.
	var orphans []corev1.ConfigMap
	for _, cm := range req.ProjectedVolumeMaps {
		if _, ok := volumes[cm.Name]; !ok {
			orphans = append(orphans, cm)
		}
	}
	out := &api.RetrievedPodData{Pod: *pod}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range all {
		c := &all[i]
		rc := api.RetrievedContainer{Name: c.Name}
		seenCM, seenSec, seenProj := map[string]bool{}, map[string]bool{}, map[string]bool{}
		addCM := func(name string) {
			if cm, ok := cms[name]; ok && !seenCM[name] {
				seenCM[name] = true
				rc.ConfigMaps = append(rc.ConfigMaps, cm)
			}
		}
		addSecret := func(name string) {
			if s, ok := secrets[name]; ok && !seenSec[name] {
				seenSec[name] = true
				rc.Secrets = append(rc.Secrets, s)
			}
		}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				continue
			}
			switch {
			case v.ConfigMap != nil:
				addCM(v.ConfigMap.Name)
			case v.Secret != nil:
				addSecret(v.Secret.SecretName)
			case v.Projected != nil || v.DownwardAPI != nil:
				if cm, ok := projected[v.Name]; ok && !seenProj[v.Name] {
					seenProj[v.Name] = true
					rc.ProjectedVolumeMaps = append(rc.ProjectedVolumeMaps, cm)
				}
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				addCM(r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				addSecret(r.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				addCM(e.ConfigMapRef.Name)
			}
			if e.SecretRef != nil {
				addSecret(e.SecretRef.Name)
			}
		}
		// Registry credentials: every container's image may need them.
		for _, s := range pod.Spec.ImagePullSecrets {
			addSecret(s.Name)
		}
		rc.ProjectedVolumeMaps = append(rc.ProjectedVolumeMaps, orphans...)
		out.Containers = append(out.Containers, rc)
	}
	return out
}

func index[T any](items []T, key func(T) string) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		m[key(it)] = it
	}
	return m
}
