package docker

import (
	"slices"
	"testing"
)

// TestDockerEnv: each name once, where first defined, with its last value;
// values byte for byte.
func TestDockerEnv(t *testing.T) {
	got := dockerEnv([][2]string{{"A", "1"}, {"B", "$(A) 'q'\n"}, {"A", "2"}, {"EMPTY", ""}})
	if want := []string{"A=2", "B=$(A) 'q'\n", "EMPTY="}; !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
	if dockerEnv(nil) != nil {
		t.Error("no env became an empty list")
	}
}
