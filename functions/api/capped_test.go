package api

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestCappedBuffer: writes up to Max land; the one that would pass it
// writes nothing, fails with ErrCapped and sets Over.
func TestCappedBuffer(t *testing.T) {
	b := &CappedBuffer{Max: 8}
	if _, err := io.WriteString(b, "1234"); err != nil || b.Over {
		t.Fatalf("write within the cap: %v, over %v", err, b.Over)
	}
	if _, err := io.WriteString(b, "5678"); err != nil || b.Over || b.String() != "12345678" {
		t.Fatalf("write up to the cap: %v, over %v, %q", err, b.Over, b.String())
	}
	if n, err := io.WriteString(b, "9"); n != 0 || !errors.Is(err, ErrCapped) || !b.Over {
		t.Errorf("write past the cap: %d %v, over %v", n, err, b.Over)
	}
	if string(b.Bytes()) != "12345678" {
		t.Errorf("kept %q", b.Bytes())
	}
	big := &CappedBuffer{Max: 4}
	if _, err := io.Copy(big, strings.NewReader("too long")); !errors.Is(err, ErrCapped) || !big.Over || big.String() != "" {
		t.Errorf("copy past the cap: %v, over %v, kept %q", err, big.Over, big.String())
	}
}
