package probe

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
)

// Caps on a termination message, as the kubelet's.
const (
	// MaxMessageBytes caps what is read of terminationMessagePath.
	MaxMessageBytes = 4 << 10
	// MaxLogMessageBytes and MaxLogMessageLines cap the log tail taken
	// with FallbackToLogsOnError.
	MaxLogMessageBytes = 2 << 10
	MaxLogMessageLines = 80
)

// DefaultMessagePath is terminationMessagePath when the pod sets none.
const DefaultMessagePath = "/dev/termination-log"

// TerminationMessage is a terminated container's state.terminated.message:
// what it wrote to its terminationMessagePath (file, read with at most
// MaxMessageBytes), or with FallbackToLogsOnError, when that is empty and
// the container failed, the tail of its log (logTail returns up to
// MaxLogMessageBytes of the log's end; nil for none).
func TerminationMessage(c *corev1.Container, file []byte, exitCode int32, logTail func() []byte) string {
	if len(file) > MaxMessageBytes {
		file = file[:MaxMessageBytes]
	}
	if len(file) > 0 || exitCode == 0 || c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError || logTail == nil {
		return string(file)
	}
	return string(LogTail(logTail()))
}

// LogTail keeps the last MaxLogMessageLines lines of log, at most
// MaxLogMessageBytes.
func LogTail(log []byte) []byte {
	if len(log) > MaxLogMessageBytes {
		log = log[len(log)-MaxLogMessageBytes:]
	}
	trimmed := bytes.TrimSuffix(log, []byte("\n"))
	n := 0
	for i := len(trimmed) - 1; i >= 0; i-- {
		if trimmed[i] == '\n' {
			n++
			if n == MaxLogMessageLines {
				return log[i+1:]
			}
		}
	}
	return log
}
