package vk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// errMissingData is returned when a pod's ConfigMap or Secret is still
// missing after the wait: the pod fails with this reason.
type errMissingData struct{ missing []string }

func (e *errMissingData) Error() string {
	return "missing " + strings.Join(e.missing, ", ")
}

// dataSource reads what a pod's volumes need.
type dataSource struct {
	client     kubernetes.Interface
	configMaps corev1listers.ConfigMapLister
	secrets    corev1listers.SecretLister
	wait       time.Duration
	kubeconfig *kubeconfigSource
	// pods reads the informer's pods, whose env is as written (nil in
	// unit tests: the pod given is).
	pods corev1listers.PodLister
	// kubeAPIHost and kubeAPIPort, when both set, are the Kubernetes API as
	// the remote side reaches it (KubernetesApiAddr, KubernetesApiPort).
	kubeAPIHost, kubeAPIPort string
	// kubeRootCA replaces kube-root-ca.crt in projected volumes.
	kubeRootCA string
	// noProjected leaves projected and downwardAPI volumes out.
	noProjected bool
	// jobScriptURL goes into every create request.
	jobScriptURL string
}

// ref is one ConfigMap or Secret a pod uses.
type ref struct {
	name     string
	optional bool
}

// refs lists the ConfigMaps and Secrets a pod's volumes and env use, and
// its imagePullSecrets (optional, as the kubelet treats a missing one).
func refs(pod *corev1.Pod) (cms, secrets []ref) {
	opt := func(b *bool) bool { return b != nil && *b }
	for _, s := range pod.Spec.ImagePullSecrets {
		secrets = append(secrets, ref{s.Name, true})
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			cms = append(cms, ref{v.ConfigMap.Name, opt(v.ConfigMap.Optional)})
		case v.Secret != nil:
			secrets = append(secrets, ref{v.Secret.SecretName, opt(v.Secret.Optional)})
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					cms = append(cms, ref{s.ConfigMap.Name, opt(s.ConfigMap.Optional)})
				}
				if s.Secret != nil {
					secrets = append(secrets, ref{s.Secret.Name, opt(s.Secret.Optional)})
				}
			}
		}
	}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				cms = append(cms, ref{e.ConfigMapRef.Name, opt(e.ConfigMapRef.Optional)})
			}
			if e.SecretRef != nil {
				secrets = append(secrets, ref{e.SecretRef.Name, opt(e.SecretRef.Optional)})
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				cms = append(cms, ref{r.Name, opt(r.Optional)})
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				secrets = append(secrets, ref{r.Name, opt(r.Optional)})
			}
		}
	}
	return dedupe(cms), dedupe(secrets)
}

func dedupe(rs []ref) []ref {
	seen := map[string]int{}
	var out []ref
	for _, r := range rs {
		if i, ok := seen[r.name]; ok {
			out[i].optional = out[i].optional && r.optional
			continue
		}
		seen[r.name] = len(out)
		out = append(out, r)
	}
	return out
}

// request gathers the create request of pod: its ConfigMaps and Secrets
// (waiting up to d.wait for missing ones; optional ones are skipped) and one
// map per projected or downwardAPI volume.
func (d *dataSource) request(ctx context.Context, pod *corev1.Pod) (*api.PodCreateRequests, error) {
	written := d.written(pod)
	pod = offloaded(pod)
	if d.noProjected {
		pod = withoutProjected(pod)
	}
	cmRefs, secRefs := refs(pod)
	req := &api.PodCreateRequests{Pod: *pod.DeepCopy(), JobScriptURL: d.jobScriptURL}
	if d.kubeAPIHost != "" && d.kubeAPIPort != "" {
		addKubernetesEnv(&req.Pod, d.kubeAPIHost, d.kubeAPIPort, written)
	}
	deadline := time.Now().Add(d.wait)
	for {
		req.ConfigMaps, req.Secrets = nil, nil
		var missing []string
		for _, r := range cmRefs {
			cm, err := d.configMap(ctx, pod.Namespace, r.name)
			switch {
			case err == nil:
				req.ConfigMaps = append(req.ConfigMaps, *cm)
			case apierrors.IsNotFound(err) && r.optional:
			case apierrors.IsNotFound(err):
				missing = append(missing, "configmap "+r.name)
			default:
				return nil, fmt.Errorf("get configmap %s: %w", r.name, err)
			}
		}
		for _, r := range secRefs {
			s, err := d.secret(ctx, pod.Namespace, r.name)
			switch {
			case err == nil:
				req.Secrets = append(req.Secrets, *s)
			case apierrors.IsNotFound(err) && r.optional:
			case apierrors.IsNotFound(err):
				missing = append(missing, "secret "+r.name)
			default:
				return nil, fmt.Errorf("get secret %s: %w", r.name, err)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, &errMissingData{missing: missing}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil && v.DownwardAPI == nil {
			continue
		}
		files, err := d.projected(ctx, pod, &v, req)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		req.ProjectedVolumeMaps = append(req.ProjectedVolumeMaps, corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: v.Name, Namespace: pod.Namespace}, Data: files})
	}
	if d.kubeconfig.enabled() {
		kc, err := d.kubeconfig.build(ctx)
		if err != nil {
			return nil, err
		}
		addKubeconfig(&req.Pod, kc, &req.ProjectedVolumeMaps)
	}
	return req, nil
}

// kubeRootCAConfigMap is the ConfigMap holding the cluster's CA in every
// namespace, projected into service-account volumes.
const kubeRootCAConfigMap = "kube-root-ca.crt"

// written returns, per container name, the env names its spec sets as
// written (the pod given has its env resolved, service variables added).
func (d *dataSource) written(pod *corev1.Pod) map[string]map[string]bool {
	spec := pod
	if d.pods != nil {
		if p, err := d.pods.Pods(pod.Namespace).Get(pod.Name); err == nil && p.UID == pod.UID {
			spec = p
		}
	}
	out := map[string]map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, spec.Spec.InitContainers...), spec.Spec.Containers...) {
		names := map[string]bool{}
		for _, e := range c.Env {
			names[e.Name] = true
		}
		out[c.Name] = names
	}
	return out
}

// addKubernetesEnv points every container's Kubernetes service variables
// at host:port (KubernetesApiAddr, KubernetesApiPort), as the original VK
// does; a variable the container's spec sets itself is kept.
func addKubernetesEnv(pod *corev1.Pod, host, port string, written map[string]map[string]bool) {
	hostPort := net.JoinHostPort(host, port)
	vars := []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: host},
		{Name: "KUBERNETES_SERVICE_PORT", Value: port},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: port},
		{Name: "KUBERNETES_PORT", Value: "tcp://" + hostPort},
		{Name: "KUBERNETES_PORT_443_TCP", Value: "tcp://" + hostPort},
		{Name: "KUBERNETES_PORT_443_TCP_ADDR", Value: host},
		{Name: "KUBERNETES_PORT_443_TCP_PORT", Value: port},
		{Name: "KUBERNETES_PORT_443_TCP_PROTO", Value: "tcp"},
	}
	set := func(cs []corev1.Container) {
		for i := range cs {
			c := &cs[i]
			env := slices.Clone(c.Env)
			for _, v := range vars {
				if written[c.Name][v.Name] {
					continue
				}
				if j := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == v.Name }); j >= 0 {
					env[j] = v // a service variable of the cluster, resolved for us
					continue
				}
				env = append(env, v)
			}
			c.Env = env
		}
	}
	set(pod.Spec.InitContainers)
	set(pod.Spec.Containers)
}

// withoutProjected returns pod without its projected and downwardAPI
// volumes and their mounts (DisableProjectedVolumes).
func withoutProjected(pod *corev1.Pod) *corev1.Pod {
	drop := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil || v.DownwardAPI != nil {
			drop[v.Name] = true
		}
	}
	if len(drop) == 0 {
		return pod
	}
	out := pod.DeepCopy()
	out.Spec.Volumes = slices.DeleteFunc(out.Spec.Volumes, func(v corev1.Volume) bool { return drop[v.Name] })
	strip := func(cs []corev1.Container) {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return drop[m.Name] })
		}
	}
	strip(out.Spec.InitContainers)
	strip(out.Spec.Containers)
	return out
}

// configMap reads from the informer cache, then from the API server (the
// cache may lag behind a ConfigMap created just before the pod).
func (d *dataSource) configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if cm, err := d.configMaps.ConfigMaps(ns).Get(name); err == nil {
		return cm, nil
	}
	return d.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (d *dataSource) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	if s, err := d.secrets.Secrets(ns).Get(name); err == nil {
		return s, nil
	}
	return d.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// projected builds the files of a projected or downwardAPI volume, keyed by
// their path in the volume.
func (d *dataSource) projected(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, req *api.PodCreateRequests) (map[string]string, error) {
	files := map[string]string{}
	if v.DownwardAPI != nil {
		return files, downward(pod, v.DownwardAPI.Items, files)
	}
	for _, s := range v.Projected.Sources {
		switch {
		case s.ServiceAccountToken != nil:
			tok, err := d.token(ctx, pod, s.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			files[s.ServiceAccountToken.Path] = tok
		case s.ConfigMap != nil && s.ConfigMap.Name == kubeRootCAConfigMap && d.kubeRootCA != "":
			// The cluster's CA as the remote side sees it
			// (KubernetesApiCaCrt), under each item's path.
			if len(s.ConfigMap.Items) == 0 {
				files["ca.crt"] = d.kubeRootCA
			}
			for _, it := range s.ConfigMap.Items {
				files[it.Path] = d.kubeRootCA
			}
		case s.ConfigMap != nil:
			i := slices.IndexFunc(req.ConfigMaps, func(c corev1.ConfigMap) bool { return c.Name == s.ConfigMap.Name })
			if i < 0 {
				continue // optional and missing
			}
			data := map[string]string{}
			for k, val := range req.ConfigMaps[i].Data {
				data[k] = val
			}
			for k, val := range req.ConfigMaps[i].BinaryData {
				data[k] = string(val)
			}
			if err := items(data, s.ConfigMap.Items, files); err != nil {
				return nil, fmt.Errorf("configmap %s: %w", s.ConfigMap.Name, err)
			}
		case s.Secret != nil:
			i := slices.IndexFunc(req.Secrets, func(c corev1.Secret) bool { return c.Name == s.Secret.Name })
			if i < 0 {
				continue
			}
			data := map[string]string{}
			for k, val := range req.Secrets[i].Data {
				data[k] = string(val)
			}
			if err := items(data, s.Secret.Items, files); err != nil {
				return nil, fmt.Errorf("secret %s: %w", s.Secret.Name, err)
			}
		case s.DownwardAPI != nil:
			if err := downward(pod, s.DownwardAPI.Items, files); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

// items copies data into files, all keys or only the listed ones.
func items(data map[string]string, list []corev1.KeyToPath, files map[string]string) error {
	if len(list) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return nil
	}
	var errs []error
	for _, it := range list {
		v, ok := data[it.Key]
		if !ok {
			errs = append(errs, fmt.Errorf("key %q not found", it.Key))
			continue
		}
		files[it.Path] = v
	}
	return errors.Join(errs...)
}

// token asks the TokenRequest API for a service-account token bound to pod.
func (d *dataSource) token(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if p.ExpirationSeconds != nil {
		exp = *p.ExpirationSeconds
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if p.Audience != "" {
		tr.Spec.Audiences = []string{p.Audience}
	}
	res, err := d.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s: %w", sa, err)
	}
	return res.Status.Token, nil
}

// downward resolves downward API items.
func downward(pod *corev1.Pod, list []corev1.DownwardAPIVolumeFile, files map[string]string) error {
	var errs []error
	for _, it := range list {
		switch {
		case it.FieldRef != nil:
			v, err := fieldValue(pod, it.FieldRef.FieldPath)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			files[it.Path] = v
		case it.ResourceFieldRef != nil:
			v, err := resourceValue(pod, it.ResourceFieldRef)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			files[it.Path] = v
		}
	}
	return errors.Join(errs...)
}

func fieldValue(pod *corev1.Pod, path string) (string, error) {
	// As the kubelet writes them: sorted key="value" lines, quoted as Go
	// quotes, without a newline after the last.
	kv := func(m map[string]string) string {
		lines := make([]string, 0, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			lines = append(lines, k+"="+strconv.Quote(m[k]))
		}
		return strings.Join(lines, "\n")
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return kv(pod.Labels), nil
	case "metadata.annotations":
		return kv(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

func resourceValue(pod *corev1.Pod, r *corev1.ResourceFieldSelector) (string, error) {
	i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == r.ContainerName })
	if i < 0 && r.ContainerName == "" && len(pod.Spec.Containers) > 0 {
		i = 0
	}
	if i < 0 {
		return "", fmt.Errorf("resourceFieldRef: no container %q", r.ContainerName)
	}
	kind, name, ok := strings.Cut(r.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", r.Resource)
	}
	res := pod.Spec.Containers[i].Resources
	list := res.Limits
	if kind == "requests" {
		list = res.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "0", nil
	}
	divisor := r.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	// Round up, as the kubelet does.
	v := (q.MilliValue() + divisor.MilliValue() - 1) / divisor.MilliValue()
	return fmt.Sprint(v), nil
}
