// Package logging builds the slog logger every interLink binary uses: JSON
// by default, text on request, with a level.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing to w in format "json" or "text" at level
// "debug", "info", "warn" or "error".
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
}

// Level maps the original interLink's logging switches to a level name.
func Level(verbose, errorsOnly bool) string {
	return LevelOr("info", verbose, errorsOnly)
}

// LevelOr is level unless one of the original's switches is on.
func LevelOr(level string, verbose, errorsOnly bool) string {
	switch {
	case verbose:
		return "debug"
	case errorsOnly:
		return "error"
	default:
		return level
	}
}
