package logging

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
)

// Bridge sends the logs of client-go (klog) and of the virtual-kubelet
// library to l, so a binary writes one stream in one format.
func Bridge(l *slog.Logger) {
	klog.SetSlogLogger(l.With("component", "client-go"))
	vklog.L = vkAdapter{l: l.With("component", "virtual-kubelet")}
}

// vkAdapter implements virtual-kubelet's log.Logger on slog. Unlike the
// library's own adapter, it accepts any argument type (the library logs
// errors as the first argument).
type vkAdapter struct {
	l *slog.Logger
	// conflict: the error attached is the API server's 409 for a stale
	// resource version. The pod controller logs each as an error, then
	// retries it with the current version (and the VK's resync writes a
	// status the controller gave up on, with a warning of its own): 89
	// ERROR lines in a run of 10,000 pods on 10 nodes, none a failure.
	// They are logged at Debug.
	conflict bool
}

var _ vklog.Logger = vkAdapter{}

func (a vkAdapter) log(level slog.Level, msg string) {
	a.l.Log(context.Background(), level, msg)
}

func (a vkAdapter) Debug(args ...any) { a.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (a vkAdapter) Debugf(format string, args ...any) {
	a.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (a vkAdapter) Info(args ...any) { a.log(slog.LevelInfo, fmt.Sprint(args...)) }
func (a vkAdapter) Infof(format string, args ...any) {
	a.log(slog.LevelInfo, fmt.Sprintf(format, args...))
}
func (a vkAdapter) Warn(args ...any) { a.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (a vkAdapter) Warnf(format string, args ...any) {
	a.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (a vkAdapter) Error(args ...any) {
	msg := fmt.Sprint(args...)
	if msg == forceDeleteRunning || a.conflict {
		a.log(slog.LevelDebug, msg)
		return
	}
	a.log(slog.LevelError, msg)
}

// forceDeleteRunning is what virtual-kubelet's pod controller logs, as an
// error, when it deletes a pod whose status in the API server still shows
// a container running. It does so only after the provider's DeletePod
// returned (ours ends the pod's job first), so it means the final status
// write has not landed yet, not that anything runs: about a third of the
// pods of a 1,000-pod burst's deletion. It is logged at Debug.
const forceDeleteRunning = "Force deleting pod in running state"

func (a vkAdapter) Errorf(format string, args ...any) {
	level := slog.LevelError
	if a.conflict {
		level = slog.LevelDebug
	}
	a.log(level, fmt.Sprintf(format, args...))
}

// Fatal logs at error level and exits, as the library expects.
func (a vkAdapter) Fatal(args ...any) {
	a.log(slog.LevelError, fmt.Sprint(args...))
	os.Exit(1)
}

// Fatalf logs at error level and exits, as the library expects.
func (a vkAdapter) Fatalf(format string, args ...any) {
	a.log(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}

func (a vkAdapter) WithField(k string, v any) vklog.Logger {
	return vkAdapter{a.l.With(k, v), a.conflict}
}

func (a vkAdapter) WithFields(f vklog.Fields) vklog.Logger {
	args := make([]any, 0, 2*len(f))
	for k, v := range f {
		args = append(args, k, v)
	}
	return vkAdapter{a.l.With(args...), a.conflict}
}

func (a vkAdapter) WithError(err error) vklog.Logger {
	return vkAdapter{a.l.With("err", err), a.conflict || apierrors.IsConflict(err)}
}
