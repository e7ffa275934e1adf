package slurm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPrepareImage: bind points are resolved as the container sees them
// (the image's own symlinks, absolute ones from the image's root) and made
// inside the image, never outside; a missing image is an error before
// anything is written.
func TestPrepareImage(t *testing.T) {
	base := t.TempDir()
	img := filepath.Join(base, "img")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{img + "/run", img + "/etc", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"var": "usr/var", "usr/var/run": "/run", "up": "../../..", "abs": outside, "loop": "loop"} {
		p := filepath.Join(img, link)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := localImages{}.prepare(img, []string{
		"/var/run/secrets/kubernetes.io/serviceaccount", "/up/x", "/abs/y", "/etc/app", "/a/../b", "/"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/run/secrets/kubernetes.io/serviceaccount", "/x", outside + "/y", "/etc/app", "/b", "/"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("resolved (-want +got):\n%s", d)
	}
	for _, p := range []string{"run/secrets/kubernetes.io/serviceaccount", "x", strings.TrimPrefix(outside, "/") + "/y", "b"} {
		if st, err := os.Stat(filepath.Join(img, p)); err != nil || !st.IsDir() {
			t.Errorf("%s was not made inside the image: %v", p, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("a bind point was made outside the image: %v", entries)
	}
	if _, err := (localImages{}).prepare(img, []string{"/loop/x"}); err == nil || !strings.Contains(err.Error(), "too many symlinks") {
		t.Errorf("symlink loop: %v", err)
	}
	if _, err := (localImages{}).prepare(filepath.Join(base, "busybox;touch x"), []string{"/etc"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "busybox;touch x")); !os.IsNotExist(err) {
		t.Errorf("a missing image was created: %v", err)
	}
	if err := os.WriteFile(filepath.Join(base, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (localImages{}).prepare(filepath.Join(base, "file"), nil); err == nil {
		t.Error("a file taken as an image directory")
	}
}

// TestRefusedImageIsNotWritten: an image path outside the image roots is
// refused before any bind point is made in it.
func TestRefusedImageIsNotWritten(t *testing.T) {
	host := t.TempDir() // stands for the host's /
	cfg := testConfig(t)
	cfg.Runtime, cfg.ImageRoot = RuntimeCharliecloud, t.TempDir()
	data := testPod()
	data.Pod.Spec.Containers[0].Image = host
	if _, err := buildJob(&cfg, &site{images: localImages{}}, data, "/d"); err == nil || !strings.Contains(err.Error(), "outside ImageRoot") {
		t.Fatalf("%v, want the image refused", err)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Errorf("a refused image was written to: %v", entries)
	}
}
