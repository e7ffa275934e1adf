package vk

import (
	"context"
	"fmt"
	"os"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Where a delivered kubeconfig appears in every container.
const (
	kubeconfigVolume = "interlink-kubeconfig"
	kubeconfigDir    = "/var/run/interlink"
	kubeconfigKey    = "kubeconfig"
)

// kubeconfigSource builds the kubeconfig delivered to pods: one for a
// service account (a token bound to the pod from the TokenRequest API), or
// a given file as is.
type kubeconfigSource struct {
	client         kubernetes.Interface
	rest           *rest.Config
	serviceAccount string
	namespace      string
	customPath     string
	ttlSeconds     int64
}

func (k *kubeconfigSource) enabled() bool {
	return k != nil && (k.serviceAccount != "" || k.customPath != "")
}

// build returns the kubeconfig for pods.
func (k *kubeconfigSource) build(ctx context.Context) (string, error) {
	if k.customPath != "" {
		b, err := os.ReadFile(k.customPath)
		if err != nil {
			return "", fmt.Errorf("read CUSTOMKUBECONF: %w", err)
		}
		return string(b), nil
	}
	exp := k.ttlSeconds
	tr, err := k.client.CoreV1().ServiceAccounts(k.namespace).CreateToken(ctx, k.serviceAccount, &authenticationv1.TokenRequest{
		// Not bound to the pod: the API server binds tokens only to pods
		// that run as that service account. It expires after its TTL.
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", k.namespace, k.serviceAccount, err)
	}
	ca := k.rest.CAData
	if len(ca) == 0 && k.rest.CAFile != "" {
		if ca, err = os.ReadFile(k.rest.CAFile); err != nil {
			return "", fmt.Errorf("read cluster CA: %w", err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: k.rest.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos[k.serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: k.serviceAccount, Namespace: k.namespace}
	cfg.CurrentContext = "default"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return string(b), nil
}

// addKubeconfig gives every container of the pod sent to interLink the
// kubeconfig: a projected volume (its data in a projected map, as the
// protocol carries projected volumes), mounted read-only, and KUBECONFIG.
// The pod in Kubernetes is not changed.
func addKubeconfig(pod *corev1.Pod, content string, maps *[]corev1.ConfigMap) {
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: kubeconfigVolume,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}})
	add := func(cs []corev1.Container) {
		for i := range cs {
			cs[i].VolumeMounts = append(cs[i].VolumeMounts, corev1.VolumeMount{Name: kubeconfigVolume, MountPath: kubeconfigDir, ReadOnly: true})
			cs[i].Env = append(cs[i].Env, corev1.EnvVar{Name: "KUBECONFIG", Value: kubeconfigDir + "/" + kubeconfigKey})
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	*maps = append(*maps, corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: kubeconfigVolume, Namespace: pod.Namespace},
		Data: map[string]string{kubeconfigKey: content}})
}
