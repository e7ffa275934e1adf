package api

import (
	"bytes"
	"errors"
)

// ErrCapped is the error of a write that would take a CappedBuffer past
// its cap.
var ErrCapped = errors.New("output larger than its cap")

// CappedBuffer collects output (a rendered script, a command's standard
// output) up to Max bytes: a write that would take it past Max writes
// nothing, fails with ErrCapped, and sets Over. It is the writing side of
// the io.LimitReader(r, max+1) reads used elsewhere.
type CappedBuffer struct {
	// Max is the most bytes the buffer holds.
	Max int64
	// Over tells whether a write was refused.
	Over bool
	buf  bytes.Buffer
}

func (c *CappedBuffer) Write(p []byte) (int, error) {
	if int64(c.buf.Len())+int64(len(p)) > c.Max {
		c.Over = true
		return 0, ErrCapped
	}
	return c.buf.Write(p)
}

// Bytes returns what was written (valid until the next write).
func (c *CappedBuffer) Bytes() []byte { return c.buf.Bytes() }

// String returns what was written.
func (c *CappedBuffer) String() string { return c.buf.String() }
