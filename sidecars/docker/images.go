package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// pullAuths reads the registry credentials of the pod's imagePullSecrets
// (kubernetes.io/dockerconfigjson or the older dockercfg), by registry host.
func pullAuths(data *api.RetrievedPodData) (map[string]registry.AuthConfig, error) {
	names := map[string]bool{}
	for _, s := range data.Pod.Spec.ImagePullSecrets {
		names[s.Name] = true
	}
	out := map[string]registry.AuthConfig{}
	seen := map[string]bool{}
	for _, c := range data.Containers {
		for _, s := range c.Secrets {
			if !names[s.Name] || seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			var cfg struct {
				Auths map[string]dockerAuth `json:"auths"`
			}
			switch {
			case s.Type == corev1.SecretTypeDockerConfigJson || len(s.Data[corev1.DockerConfigJsonKey]) > 0:
				if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
					return nil, fmt.Errorf("imagePullSecret %s: %s: %w", s.Name, corev1.DockerConfigJsonKey, err)
				}
			case s.Type == corev1.SecretTypeDockercfg || len(s.Data[corev1.DockerConfigKey]) > 0:
				if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &cfg.Auths); err != nil {
					return nil, fmt.Errorf("imagePullSecret %s: %s: %w", s.Name, corev1.DockerConfigKey, err)
				}
			default:
				return nil, fmt.Errorf("imagePullSecret %s is of type %q, not %s", s.Name, s.Type, corev1.SecretTypeDockerConfigJson)
			}
			for server, a := range cfg.Auths {
				ac, err := a.config(server)
				if err != nil {
					return nil, fmt.Errorf("imagePullSecret %s: %w", s.Name, err)
				}
				out[registryHost(server)] = ac
			}
		}
	}
	return out, nil
}

// dockerAuth is one entry of a Docker config's "auths".
type dockerAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"` // base64 of user:password
}

func (a dockerAuth) config(server string) (registry.AuthConfig, error) {
	ac := registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: server}
	if a.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return ac, fmt.Errorf("the auth of %s is not base64", server)
		}
		user, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return ac, fmt.Errorf("the auth of %s is not user:password", server)
		}
		ac.Username, ac.Password = user, pass
	}
	return ac, nil
}

// registryHost normalizes a Docker config key ("https://index.docker.io/v1/",
// "127.0.0.1:5000", "registry.example.com/path") to a registry host.
func registryHost(server string) string {
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		server = u.Host
	}
	server, _, _ = strings.Cut(server, "/")
	if server == "index.docker.io" || server == "registry-1.docker.io" {
		return "docker.io"
	}
	return server
}

// pullImages pulls each distinct image as its pull policy says: Always, or
// when missing (IfNotPresent, the default here), never with Never. An
// image that is not on the Docker host and cannot be pulled (or that
// Always wants pulled and cannot be) is an api.ImageNotFound error naming
// the image and why: the VK then leaves the pod Pending, its containers
// waiting with ErrImagePull then ImagePullBackOff, and retries, as a
// kubelet does. Docker normalizes references ("busybox",
// "busybox:latest" and "docker.io/library/busybox:latest" are one image):
// they are passed to it as written.
func (d *Sidecar) pullImages(ctx context.Context, specs []spec, auths map[string]registry.AuthConfig) error {
	images := specs
	if len(specs) > 1 {
		images = append([]spec{{image: d.cfg.PauseImage, policy: corev1.PullIfNotPresent}}, specs...)
	}
	done := map[string]bool{}
	for _, s := range images {
		if done[s.image] {
			continue
		}
		done[s.image] = true
		if s.policy != corev1.PullAlways {
			start := time.Now()
			_, err := d.api.ImageInspect(ctx, s.image)
			d.observe("inspect", start, err)
			switch {
			case err == nil:
				continue
			case !cerrdefs.IsNotFound(err):
				return engineError(fmt.Sprintf("inspect image %q", s.image), err)
			case s.policy == corev1.PullNever:
				return api.ImageNotFound("image %q is not on the Docker host and its pull policy is Never", s.image)
			}
		}
		if err := d.pull(ctx, s.image, auths, s.policy == corev1.PullAlways); err != nil {
			return err
		}
	}
	return nil
}

// pull pulls image; always tells that the pull policy asked for it (the
// image may be on the host), for the message of a failed pull.
func (d *Sidecar) pull(ctx context.Context, image string, auths map[string]registry.AuthConfig, always bool) error {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return api.Invalid("image %q: %w", image, err)
	}
	opts := client.ImagePullOptions{}
	if a, ok := auths[reference.Domain(ref)]; ok {
		if opts.RegistryAuth, err = authconfig.Encode(a); err != nil {
			return fmt.Errorf("image %q: encode credentials: %w", image, err)
		}
	}
	// The pull runs on the sidecar's context, once per image and
	// credentials, so that a large image keeps coming when the create that
	// asked for it times out; the retried create waits for the same pull.
	ch := d.pulls.DoChan(image+"\x00"+opts.RegistryAuth, func() (any, error) {
		pctx, cancel := context.WithTimeout(d.ctx, d.cfg.PullTimeout.Duration)
		defer cancel()
		start := time.Now()
		resp, err := d.api.ImagePull(pctx, image, opts)
		if err == nil {
			err = resp.Wait(pctx)
			_ = resp.Close()
		}
		d.observe("pull", start, err)
		return nil, err
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return api.Unavailable("image %q is still being pulled (it goes on; retry the create)", image)
	}
	if err := res.Err; err != nil {
		if client.IsErrConnectionFailed(err) || errors.Is(err, context.Canceled) {
			// The Docker Engine, not the image, is missing.
			return api.Unavailable("pull image %q: %w", image, err)
		}
		// Whatever the registry said (unknown image, refused credentials,
		// unreachable), the image cannot be had: the pod waits for it.
		if always {
			return api.ImageNotFound("image %q could not be pulled (imagePullPolicy Always): %w", image, err)
		}
		return api.ImageNotFound("image %q is not on the Docker host and could not be pulled: %w", image, err)
	}
	d.log.Info("image pulled", "image", image)
	return nil
}
