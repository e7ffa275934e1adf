package poddata

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// TestModes checks the modes of a pod's files: private (the sidecar's
// user runs the containers) or Kubernetes' (containers run as anyone).
func TestModes(t *testing.T) {
	mode0400 := int32(0o400)
	data := &api.RetrievedPodData{
		Pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "8d0f4c3e-1b2a-4c5d-9e8f-0a1b2c3d4e5f"},
			Spec: corev1.PodSpec{Volumes: []corev1.Volume{
				{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
				{Name: "strict", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s", DefaultMode: &mode0400}}},
				{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				// Declared, never mounted, never sent: the pod runs, as in Kubernetes.
				{Name: "unused", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "not-sent"}}}},
			}, Containers: []corev1.Container{{Name: "main", VolumeMounts: []corev1.VolumeMount{
				{Name: "sec", MountPath: "/s"}, {Name: "strict", MountPath: "/t"}, {Name: "cm", MountPath: "/c"}, {Name: "scratch", MountPath: "/e"}}}}}},
		Containers: []api.RetrievedContainer{{Name: "main",
			Secrets:    []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Data: map[string][]byte{"k": []byte("v")}}},
			ConfigMaps: []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}}}}},
	}
	for _, tc := range []struct {
		name                                string
		containerModes                      bool
		secret, strict, configMap, emptyDir fs.FileMode
	}{
		{"private (SLURM)", false, 0o600, 0o400, 0o644, 0o755},
		{"as Kubernetes (Docker)", true, 0o644, 0o400, 0o644, 0o777},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vols, files, err := Volumes(data, Options{ExportPodData: true, ContainerModes: tc.containerModes})
			if err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(t.TempDir(), "data")
			d, err := OpenDir(root)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.Write("pod", files); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				vol, file string
				want      fs.FileMode
			}{{"sec", "k", tc.secret}, {"strict", "k", tc.strict}, {"cm", "k", tc.configMap}, {"scratch", "", tc.emptyDir}} {
				fi, err := os.Stat(filepath.Join(root, "pod", vols[c.vol].Dir, c.file))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != c.want {
					t.Errorf("%s/%s: mode %v, want %v", c.vol, c.file, got, c.want)
				}
			}
			if fi, err := os.Stat(filepath.Join(root, "pod")); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("the pod's directory: %v %v, want 0700", fi, err)
			}
		})
	}
}
