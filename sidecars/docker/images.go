package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
// when missing (IfNotPresent, the default here), never with Never (a
// missing image is then an error naming it).
func (d *Docker) pullImages(ctx context.Context, specs []spec, auths map[string]registry.AuthConfig) error {
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
			_, err := d.api.ImageInspect(ctx, s.image)
			if err == nil {
				continue
			}
			if s.policy == corev1.PullNever {
				return api.Invalid("image %q is not on the Docker host and its pull policy is Never", s.image)
			}
		}
		if err := d.pull(ctx, s.image, auths); err != nil {
			return err
		}
	}
	return nil
}

func (d *Docker) pull(ctx context.Context, image string, auths map[string]registry.AuthConfig) error {
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
		// An image that does not exist or whose credentials are refused is
		// the pod's problem (400, it fails); a registry or network hiccup
		// is not (503, retried).
		if pullRefused(err) {
			return api.Invalid("pull image %q: %w", image, err)
		}
		return api.Unavailable("pull image %q: %w", image, err)
	}
	d.log.Info("image pulled", "image", image)
	return nil
}

// pullRefused tells whether a pull failed for good: unknown image, refused
// or missing credentials.
func pullRefused(err error) bool {
	if cerrdefs.IsNotFound(err) || cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) || cerrdefs.IsInvalidArgument(err) {
		return true
	}
	msg := err.Error()
	for _, m := range []string{"no basic auth credentials", "unauthorized", "authentication required", "manifest unknown", "not found", "denied", "invalid reference"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}
