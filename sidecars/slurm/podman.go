package slurm

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/seed-3f807049/interlink/functions/api"
)

// What the sidecar itself asks podman, when its host sees the podman
// storage the jobs use (PodmanLocalStorage): whether a pod's images are
// there (pulling a missing one), and, at delete, to remove the containers
// a killed job left behind. It runs podman with the jobs' environment
// (JobEnv), so that both use the same podman config and storage.

// podmanImage is a container's image as the pod gives it (ref) and as the
// job names it to podman (image, normalized).
type podmanImage struct {
	container, ref, image string
	// pull: a missing image may be pulled (imagePullPolicy is not Never).
	pull bool
}

// podmanImages lists the images of a podman pod's containers.
func podmanImages(pod *corev1.Pod, inits, mains []*container) []podmanImage {
	var out []podmanImage
	add := func(spec []corev1.Container, cs []*container) {
		for i, c := range cs {
			out = append(out, podmanImage{container: c.name, ref: spec[i].Image, image: c.image, pull: spec[i].ImagePullPolicy != corev1.PullNever})
		}
	}
	add(pod.Spec.InitContainers, inits)
	add(pod.Spec.Containers, mains)
	return out
}

// checkPodmanImages makes sure podman has every image of the pod, pulling
// the missing ones it may. An image podman neither has nor can pull is
// api.ImageNotFound: the VK shows the pod as a kubelet shows a failed pull
// (ErrImagePull, ImagePullBackOff) and creates it again later. podman
// failing otherwise is Unavailable.
func (s *Sidecar) checkPodmanImages(ctx context.Context, pod *corev1.Pod, images []podmanImage) error {
	var errs []error
	done := map[string]error{}
	for _, im := range images {
		err, ok := done[im.image]
		if !ok {
			err = s.podmanImage(ctx, im)
			done[im.image] = err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", im.container, err))
		}
	}
	err := errors.Join(errs...)
	switch {
	case err == nil:
		return nil
	case onlyReason(err, api.ReasonImageNotFound):
		return api.NewError(api.ReasonImageNotFound, "pod %s/%s: %w", pod.Namespace, pod.Name, err)
	default:
		return api.Unavailable("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
}

// podmanImage checks one image: podman image exists, then podman pull.
func (s *Sidecar) podmanImage(ctx context.Context, im podmanImage) error {
	_, err := s.cmd.run(ctx, s.cfg.PodmanPath, "image", "exists", "--", im.image)
	var ce *cmdError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ce) || ce.code != 1: // 1: no such image; 125: podman failed
		return fmt.Errorf("podman image exists %s: %w", im.image, err)
	case !im.pull:
		return api.ImageNotFound("image %q (%s) is not in podman's storage, and imagePullPolicy is Never", im.ref, im.image)
	}
	if _, err := s.cmd.run(ctx, s.cfg.PodmanPath, "pull", "-q", "--", im.image); err != nil {
		if errors.As(err, &ce) {
			return api.ImageNotFound("image %q (%s) is not in podman's storage, and podman could not pull it: %s", im.ref, im.image, ce.stderr)
		}
		return fmt.Errorf("podman pull %s: %w", im.image, err)
	}
	return nil
}

// containerID names a container on the cluster: il-<pod uid>-<name>.
func containerID(uid types.UID, name string) string { return "il-" + string(uid) + "-" + name }

// podmanPod tells whether the pod's containers run with podman.
func (s *Sidecar) podmanPod(p *corev1.Pod) bool {
	rt := s.cfg.Runtime
	if r, ok := p.Annotations[AnnotationRuntime]; ok {
		rt = r
	}
	return rt == RuntimePodman
}

// removePodmanContainers removes the pod's containers from podman's
// storage: a job killed at once (over its memory limit, SIGKILL) leaves
// them there, with their mounts, since no podman process lived to remove
// them. A failure is logged: the pod is gone either way.
func (s *Sidecar) removePodmanContainers(ctx context.Context, p *corev1.Pod) {
	args := []string{s.cfg.PodmanPath, "rm", "--force", "--ignore", "--time=0", "--"}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			args = append(args, containerID(p.UID, c.Name))
		}
	}
	// podman 4.3 fails to remove a container whose processes were killed
	// with its conmon ("could not be stopped: container state improper"),
	// but records it as stopped then: a second try removes it.
	_, err := s.cmd.run(ctx, args...)
	if err != nil {
		_, err = s.cmd.run(ctx, args...)
	}
	if err != nil {
		s.log.Warn("could not remove the pod's podman containers", "pod", p.Name, "namespace", p.Namespace, "uid", p.UID, "err", err)
	}
}
