package vk

import (
	"context"
	"fmt"
	"log/slog"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// virtual-kubelet logs through its own interface, to nowhere unless given
// a logger: its pod controller's failed status writes and dropped
// notifications would go unseen. vkLogger hands them to our slog logger.
// Its Info (a line per pod created or updated) becomes our Debug; its
// warnings and errors stay what they are. (virtual-kubelet's log/slog
// adapter asserts that the first argument is a string, and its pod
// controller logs bare errors.)

// forceDeleteRunning is what the pod controller logs, as an error, when it
// deletes a pod whose status in the API server still shows a container
// running. It does so only after the provider's DeletePod returned, which
// ends the pod's job first, so it means the final status write has not
// landed yet, not that anything runs: a third of the pods of a
// 1,000-pod burst's deletion. It is logged at Debug.
const forceDeleteRunning = "Force deleting pod in running state"

// withVKLogger returns ctx carrying l as virtual-kubelet's logger.
func withVKLogger(ctx context.Context, l *slog.Logger) context.Context {
	return vklog.WithLogger(ctx, vkLogger{l})
}

type vkLogger struct{ l *slog.Logger }

var _ vklog.Logger = vkLogger{}

func (v vkLogger) Debug(args ...any)                 { v.l.Debug(fmt.Sprint(args...)) }
func (v vkLogger) Debugf(format string, args ...any) { v.l.Debug(fmt.Sprintf(format, args...)) }
func (v vkLogger) Info(args ...any)                  { v.l.Debug(fmt.Sprint(args...)) }
func (v vkLogger) Infof(format string, args ...any)  { v.l.Debug(fmt.Sprintf(format, args...)) }
func (v vkLogger) Warn(args ...any)                  { v.l.Warn(fmt.Sprint(args...)) }
func (v vkLogger) Warnf(format string, args ...any)  { v.l.Warn(fmt.Sprintf(format, args...)) }
func (v vkLogger) Error(args ...any) {
	msg := fmt.Sprint(args...)
	if msg == forceDeleteRunning {
		v.l.Debug(msg)
		return
	}
	v.l.Error(msg)
}
func (v vkLogger) Errorf(format string, args ...any) { v.l.Error(fmt.Sprintf(format, args...)) }

// Fatal logs as an error: the VK decides itself when to stop.
func (v vkLogger) Fatal(args ...any)                 { v.l.Error(fmt.Sprint(args...)) }
func (v vkLogger) Fatalf(format string, args ...any) { v.l.Error(fmt.Sprintf(format, args...)) }

func (v vkLogger) WithField(k string, val any) vklog.Logger { return vkLogger{v.l.With(k, val)} }

func (v vkLogger) WithFields(f vklog.Fields) vklog.Logger {
	args := make([]any, 0, 2*len(f))
	for k, val := range f {
		args = append(args, k, val)
	}
	return vkLogger{v.l.With(args...)}
}

func (v vkLogger) WithError(err error) vklog.Logger { return vkLogger{v.l.With("err", err)} }
