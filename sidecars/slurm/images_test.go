package slurm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
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
	got, err := localImages{}.prepare(img, points(
		"/var/run/secrets/kubernetes.io/serviceaccount", "/up/x", "/abs/y", "/etc/app", "/a/../b", "/"))
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
	if _, err := (localImages{}).prepare(img, points("/loop/x")); err == nil || !strings.Contains(err.Error(), "too many symlinks") {
		t.Errorf("symlink loop: %v", err)
	}
	if _, err := (localImages{}).prepare(filepath.Join(base, "busybox;touch x"), points("/etc")); err == nil || !strings.Contains(err.Error(), "does not exist") {
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

func points(dirs ...string) []bindPoint {
	out := make([]bindPoint, len(dirs))
	for i, d := range dirs {
		out[i] = bindPoint{path: d}
	}
	return out
}

// TestFileBindPoint: a file bound into an image gets an empty file to bind
// onto, made through the image's symlinks; a directory there is an error.
func TestFileBindPoint(t *testing.T) {
	img := t.TempDir()
	if err := os.MkdirAll(filepath.Join(img, "opt", "app", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../opt/app", filepath.Join(img, "etc")); err != nil {
		t.Fatal(err)
	}
	got, err := localImages{}.prepare(img, []bindPoint{{path: "/etc/new/app.conf", file: true}, {path: "/etc/app.conf", file: true}})
	if err != nil || !slices.Equal(got, []string{"/opt/app/new/app.conf", "/opt/app/app.conf"}) {
		t.Fatalf("%v %v", got, err)
	}
	for _, f := range []string{"opt/app/new/app.conf", "opt/app/app.conf"} {
		if st, err := os.Lstat(filepath.Join(img, f)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := (localImages{}).prepare(img, []bindPoint{{path: "/etc/dir", file: true}}); err == nil || !strings.Contains(err.Error(), "has a directory") {
		t.Errorf("a file onto a directory: %v", err)
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

// chImage makes an image directory at dir with the files ch-run needs and,
// when config is not empty, ch/config.pulled.json.
func chImage(t *testing.T, dir, config string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "ch"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, chConfigPulled), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFindImage: a reference finds its image in ch-image storage or a
// directory of images however it is spelt, as Docker normalizes it; a
// missing image is ImageNotFound (the pod waits), a malformed or ambiguous
// one is an error naming it.
func TestFindImage(t *testing.T) {
	root := t.TempDir()
	chImage(t, filepath.Join(root, "img", "busybox+latest"), "")
	chImage(t, filepath.Join(root, "img", "interlink-test%debian+bookworm"), "")
	chImage(t, filepath.Join(root, "img", "ghcr.io%acme%app+v1"), "")
	chImage(t, filepath.Join(root, "alpine"), "")
	chImage(t, filepath.Join(root, "library", "python"), "")
	chImage(t, filepath.Join(root, "dup"), "")
	chImage(t, filepath.Join(root, "dup+latest"), "")
	for ref, want := range map[string]string{
		"busybox":                          "img/busybox+latest",
		"busybox:latest":                   "img/busybox+latest",
		"docker.io/library/busybox:latest": "img/busybox+latest",
		"library/busybox":                  "img/busybox+latest",
		"interlink-test/debian:bookworm":   "img/interlink-test%debian+bookworm",
		"ghcr.io/acme/app:v1":              "img/ghcr.io%acme%app+v1",
		"alpine:latest":                    "alpine",
		"docker.io/library/alpine":         "alpine",
		"library/python":                   "library/python",
	} {
		got, err := findImage(root, ref)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("%s: %s %v, want %s", ref, got, err, want)
		}
	}
	for ref, want := range map[string]string{
		"busybox:1.36":         "is not under the image root",
		"ghcr.io/acme/app":     "is not under the image root",
		"busybox;touch x":      "not a valid image reference",
		"$(touch x)":           "not a valid image reference",
		"Busybox":              "not a valid image reference",
		"dup":                  "names several images",
		"docker.io/dup:latest": "names several images",
	} {
		_, err := findImage(root, ref)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", ref, err, want)
		}
		if notFound := api.ReasonOf(err) == api.ReasonImageNotFound; notFound != (want == "is not under the image root") {
			t.Errorf("%s: reason %s", ref, api.ReasonOf(err))
		}
	}
}

// TestImageConfigApplies: on each runtime that runs the site's image
// directories, a container without command runs its image's ENTRYPOINT
// with its args or else the image's CMD (the args alone when the image has
// no ENTRYPOINT); the image's ENV comes before the pod's (whose values
// win) and its WORKDIR applies unless the pod sets one; an image with
// neither command nor config is refused.
func TestImageConfigApplies(t *testing.T) {
	for _, rt := range []string{RuntimeCharliecloud, RuntimeApptainer, RuntimeSingularity} {
		t.Run(rt, func(t *testing.T) { testImageConfigApplies(t, rt) })
	}
}

func testImageConfigApplies(t *testing.T, rt string) {
	root := t.TempDir()
	chImage(t, filepath.Join(root, "img", "deb+1"), `{"architecture":"amd64","os":"linux","config":{
		"Entrypoint":["/bin/echo","entrypoint"],"Cmd":["from-cmd"],
		"Env":["PATH=/usr/bin:/bin","IMAGE_VAR=from the image","SHARED=image"],"WorkingDir":"/srv/app"}}`)
	chImage(t, filepath.Join(root, "img", "meta+1"), "")
	if err := os.WriteFile(filepath.Join(root, "img", "meta+1", chMetadata), []byte(`{"cwd":"/data","env":{"B":"2","A":"1"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	chImage(t, filepath.Join(root, "img", "bare+1"), "")
	cfg := testConfig(t)
	cfg.Runtime, cfg.ImageRoot = rt, root
	build := func(c corev1.Container) (*container, error) {
		t.Helper()
		c.Name = "c"
		b := &builder{cfg: &cfg, pod: &corev1.Pod{}, dir: "/d", site: &site{images: localImages{}}, imageRoot: root}
		ct, _, err := b.container(&c, nil, newRuntime(rt, &cfg, root, cfg.ImagePrefix))
		return ct, err
	}
	for _, tc := range []struct {
		name          string
		c             corev1.Container
		command, args []string
		workDir       string
	}{
		{"neither", corev1.Container{Image: "deb:1"}, []string{"/bin/echo", "entrypoint"}, []string{"from-cmd"}, "/srv/app"},
		{"args", corev1.Container{Image: "deb:1", Args: []string{"x"}}, []string{"/bin/echo", "entrypoint"}, []string{"x"}, "/srv/app"},
		{"command", corev1.Container{Image: "deb:1", Command: []string{"/bin/true"}}, []string{"/bin/true"}, nil, "/srv/app"},
		{"both", corev1.Container{Image: "deb:1", Command: []string{"/bin/sh"}, Args: []string{"-c", "x"}, WorkingDir: "/w"}, []string{"/bin/sh"}, []string{"-c", "x"}, "/w"},
		{"metadata", corev1.Container{Image: "meta:1", Command: []string{"env"}}, []string{"env"}, nil, "/data"},
		// No ENTRYPOINT: the args are the command.
		{"args without entrypoint", corev1.Container{Image: "meta:1", Args: []string{"env", "-0"}}, []string{"env", "-0"}, nil, "/data"},
	} {
		ct, err := build(tc.c)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(ct.command, tc.command) || !slices.Equal(ct.args, tc.args) || ct.workDir != tc.workDir {
			t.Errorf("%s: command %q args %q dir %q, want %q %q %q", tc.name, ct.command, ct.args, ct.workDir, tc.command, tc.args, tc.workDir)
		}
	}
	ct, err := build(corev1.Container{Image: "deb:1", Command: []string{"env"}, Env: []corev1.EnvVar{{Name: "SHARED", Value: "pod"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"PATH", "/usr/bin:/bin"}, {"IMAGE_VAR", "from the image"}, {"SHARED", "image"}, {"SHARED", "pod"}}
	if d := cmp.Diff(want, ct.env); d != "" {
		t.Errorf("env, set in order (-want +got):\n%s", d)
	}
	ct, err = build(corev1.Container{Image: "meta:1", Command: []string{"env"}})
	if err != nil || !slices.Equal(ct.env, [][2]string{{"A", "1"}, {"B", "2"}}) {
		t.Errorf("metadata env: %v %v", ct.env, err)
	}
	if _, err := build(corev1.Container{Image: "bare:1"}); err == nil || !strings.Contains(err.Error(), "no ENTRYPOINT or CMD") {
		t.Errorf("no command anywhere: %v", err)
	}
	data := testPod()
	data.Pod.Spec.InitContainers = nil
	data.Pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "nope:2", Command: []string{"true"}}}
	if _, err := buildJob(&cfg, &site{images: localImages{}}, data, "/d"); api.ReasonOf(err) != api.ReasonImageNotFound {
		t.Errorf("missing image: %v (%s), want ImageNotFound", err, api.ReasonOf(err))
	}
}

// TestApptainerImageDirs: Apptainer runs an image directory of the site
// found by reference with exec through the helper, writable with the
// image's own /tmp, the image's ENV first in its env file, its WORKDIR as
// --pwd, binds onto the paths resolved inside the image (read-only ones
// with :ro); an image file under the image root and a URI are run as they
// are, with the image's own start when the pod gives no command.
func TestApptainerImageDirs(t *testing.T) {
	root := t.TempDir()
	deb := filepath.Join(root, "img", "interlink-test%debian+bookworm")
	chImage(t, deb, `{"architecture":"amd64","os":"linux","config":{
		"Entrypoint":["/bin/echo","entrypoint"],"Cmd":["from-cmd"],
		"Env":["PATH=/usr/bin:/bin","SHARED=image"],"WorkingDir":"/srv/app"}}`)
	if err := os.Symlink("../run", filepath.Join(deb, "var-run")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(deb, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(deb, "var-run"), filepath.Join(deb, "var", "run")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tools.sif"), []byte("SIF"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Runtime, cfg.ImageRoot, cfg.ApptainerPath = RuntimeApptainer, root, "/opt/apptainer/bin/apptainer"
	cfg.SingularityDefaultOptions = append(cfg.SingularityDefaultOptions, "--userns")
	data := testPod()
	data.Pod.Spec.InitContainers = nil
	main := &data.Pod.Spec.Containers[0]
	main.Image, main.Command, main.Args, main.WorkingDir = "interlink-test/debian:bookworm", nil, []string{"one arg"}, ""
	main.Env = []corev1.EnvVar{{Name: "SHARED", Value: "pod's"}}
	main.Resources = corev1.ResourceRequirements{}
	side := &data.Pod.Spec.Containers[1]
	side.Image, side.VolumeMounts = "tools.sif", nil
	data.Pod.Spec.Containers = append(data.Pod.Spec.Containers, corev1.Container{Name: "remote", Image: "docker://busybox:1.36"})
	data.Containers = append(data.Containers, api.RetrievedContainer{Name: "remote"})
	j, err := buildJob(&cfg, &site{images: localImages{}}, data, "/d")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`/opt/apptainer/bin/apptainer --quiet exec --containall --no-home --userns --writable-tmpfs --no-mount tmp --no-eval --env-file "$IL_DATA"/env/main.env` +
			` --bind "$IL_DATA"/volumes/config:/etc/app:ro --bind "$IL_DATA"/volumes/creds:/etc/creds:ro` +
			` --bind "$IL_DATA"/volumes/token:/run/secrets/tokens:ro --bind "$IL_DATA"/volumes/work:/work --bind "$IL_DATA"/.interlink/main:/.interlink:ro` +
			` --bind "$IL_DATA"/.interlink/main/msg:/.interlink/msg --pwd /srv/app ` + deb +
			` /.interlink/envexec -t '/dev/termination-log=/.interlink/msg/termination-log' /.interlink/env -- /bin/echo entrypoint 'one arg'`,
		`/opt/apptainer/bin/apptainer --quiet run --containall --no-home --userns --no-eval --env-file "$IL_DATA"/env/sidecar.env ` + filepath.Join(root, "tools.sif") + " watch",
		`/opt/apptainer/bin/apptainer --quiet run --containall --no-home --userns --no-eval --env-file "$IL_DATA"/env/remote.env docker://busybox:1.36` + "\n",
	} {
		if !strings.Contains(j.script, want) {
			t.Errorf("the script lacks\n%s\n---\n%s", want, j.script)
		}
	}
	for _, f := range j.files {
		if f.Path == "env/main.env" {
			if got, want := string(f.Data), "PATH=/usr/bin:/bin\nSHARED=image\nSHARED=\"pod's\"\n"; got != want {
				t.Errorf("env file %q, want %q", got, want)
			}
		}
	}
	for _, d := range []string{"srv/app", "run/secrets/tokens", "etc/app", "etc/creds", "work", ".interlink"} {
		if st, err := os.Stat(filepath.Join(deb, d)); err != nil || !st.IsDir() {
			t.Errorf("bind point %s was not made in the image: %v", d, err)
		}
	}
	// A missing image waits, as a failed pull.
	data.Pod.Spec.Containers[0].Image = "interlink-test/absent:1"
	if _, err := buildJob(&cfg, &site{images: localImages{}}, data, "/d"); api.ReasonOf(err) != api.ReasonImageNotFound {
		t.Errorf("missing image: %v (%s), want ImageNotFound", err, api.ReasonOf(err))
	}
}
