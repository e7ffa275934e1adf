package slurm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// fakePodman writes a podman stand-in into dir: it logs its arguments and
// environment's CONTAINERS_CONF to "podman.calls"; "image exists" succeeds
// for the references listed in the file "have"; "pull" succeeds for those
// in "pullable" and otherwise fails as podman does without a registry.
func fakePodman(t *testing.T, dir string) string {
	t.Helper()
	script := strings.ReplaceAll(`#!/bin/sh
echo "CONTAINERS_CONF=$CONTAINERS_CONF $*" >>"$D/podman.calls"
ref=$(eval echo "\${$#}")
case "$1 $2" in
"image exists") grep -qxF -- "$ref" "$D/have" 2>/dev/null && exit 0; exit 1 ;;
"pull -q") grep -qxF -- "$ref" "$D/pullable" 2>/dev/null && { echo "$ref" >>"$D/have"; echo sha256:1; exit 0; }
	echo "Error: initializing source docker://$ref: pinging container registry: no such host" >&2; exit 125 ;;
"rm --force") exit 0 ;;
esac
exit 125
`, "$D", dir)
	p := filepath.Join(dir, "podman")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil { //nolint:gosec // a test program
		t.Fatal(err)
	}
	return p
}

func podmanTestPod() *api.RetrievedPodData {
	data := testPod()
	data.Pod.Spec.Containers[1].Image = "acme/tools:2"
	return data
}

func TestPodmanImagesAtCreate(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	cfg.Runtime, cfg.PodmanPath, cfg.PodmanLocalStorage = RuntimePodman, fakePodman(t, dir), true
	cfg.JobEnv = map[string]string{"CONTAINERS_CONF": "/site/containers.conf"}
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// busybox:1.36 is there, the two others are not: ImageNotFound, naming
	// each missing image as the pod gives it and as podman names it.
	write("have", "docker.io/library/busybox:1.36\n")
	_, err = s.Create(ctx, podmanTestPod())
	if api.ReasonOf(err) != api.ReasonImageNotFound {
		t.Fatalf("create: %v, want ImageNotFound", err)
	}
	for _, want := range []string{`"ghcr.io/acme/app:v1"`, `"acme/tools:2" (docker.io/acme/tools:2)`, "could not pull it", "no such host"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("create: %v, want it to say %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "busybox") {
		t.Errorf("create: %v names an image podman has", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "next")); err == nil {
		t.Fatal("a job was submitted for a pod whose images are missing")
	}

	// imagePullPolicy Never: not pulled.
	data := podmanTestPod()
	data.Pod.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	write("pullable", "ghcr.io/acme/app:v1\ndocker.io/acme/tools:2\n")
	if _, err := s.Create(ctx, data); api.ReasonOf(err) != api.ReasonImageNotFound || !strings.Contains(err.Error(), "imagePullPolicy is Never") {
		t.Fatalf("create: %v, want ImageNotFound for imagePullPolicy Never", err)
	}

	// Pullable: pulled, and the job is submitted.
	res, err := s.Create(ctx, podmanTestPod())
	if err != nil || res.PodJID == "" {
		t.Fatalf("create: %+v %v", res, err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "podman.calls"))
	for _, want := range []string{"CONTAINERS_CONF=/site/containers.conf image exists -- docker.io/library/busybox:1.36",
		"pull -q -- ghcr.io/acme/app:v1", "pull -q -- docker.io/acme/tools:2"} {
		if !strings.Contains(string(calls), want+"\n") {
			t.Errorf("podman calls:\n%s\nwant %q", calls, want)
		}
	}

	// Delete removes the containers a killed job may have left.
	if err := s.Delete(ctx, &podmanTestPod().Pod); err != nil {
		t.Fatal(err)
	}
	calls, _ = os.ReadFile(filepath.Join(dir, "podman.calls"))
	want := "rm --force --ignore --time=0 -- il-" + testUID + "-setup il-" + testUID + "-main il-" + testUID + "-sidecar\n"
	if !strings.HasSuffix(string(calls), want) {
		t.Errorf("podman calls:\n%s\nwant them to end with %q", calls, want)
	}
}

// TestPodmanImagesUnchecked: without PodmanLocalStorage the sidecar never
// runs podman; the job pulls.
func TestPodmanImagesUnchecked(t *testing.T) {
	cfg, dir := fakeSlurm(t)
	cfg.Runtime, cfg.PodmanPath = RuntimePodman, fakePodman(t, dir)
	s, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if _, err := s.Create(context.Background(), podmanTestPod()); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), &podmanTestPod().Pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "podman.calls")); err == nil {
		t.Error("the sidecar ran podman without PodmanLocalStorage")
	}
}

// TestPodmanImageRefs: references are normalized as Docker does; paths and
// transports are refused.
func TestPodmanImageRefs(t *testing.T) {
	for ref, want := range map[string]string{
		"busybox": "docker.io/library/busybox:latest", "busybox:latest": "docker.io/library/busybox:latest",
		"docker.io/library/busybox:latest": "docker.io/library/busybox:latest", "interlink-test/links:1": "docker.io/interlink-test/links:1",
		"localhost/x": "localhost/x:latest", "ghcr.io/a/b@sha256:" + strings.Repeat("a", 64): "ghcr.io/a/b@sha256:" + strings.Repeat("a", 64),
	} {
		if got, err := (podman{}).image(ref); err != nil || got != want {
			t.Errorf("image(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, ref := range []string{"/images/x", "docker-archive:/etc/shadow", "docker://busybox", "oci:/tmp/x", "Busybox", ""} {
		if got, err := (podman{}).image(ref); err == nil {
			t.Errorf("image(%q) = %q, want it refused", ref, got)
		}
	}
}
