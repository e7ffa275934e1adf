package api

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ValidatePod checks what every hop needs of a pod: a UID, a name and a
// namespace that are valid Kubernetes names.
func ValidatePod(pod *corev1.Pod) error {
	var errs []error
	if pod.UID == "" {
		errs = append(errs, errors.New("metadata.uid is empty"))
	}
	if pod.Name == "" {
		errs = append(errs, errors.New("metadata.name is empty"))
	} else if msgs := validation.IsDNS1123Subdomain(pod.Name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("metadata.name %q: %s", pod.Name, strings.Join(msgs, "; ")))
	}
	if pod.Namespace == "" {
		errs = append(errs, errors.New("metadata.namespace is empty"))
	} else if msgs := validation.IsDNS1123Label(pod.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("metadata.namespace %q: %s", pod.Namespace, strings.Join(msgs, "; ")))
	}
	if len(errs) > 0 {
		return Invalid("invalid pod %s/%s: %w", pod.Namespace, pod.Name, JoinErrors(errs))
	}
	return nil
}

// ValidateLogRequest checks a log request as the original interLink does:
// DNS-label namespace and container name, a UUID pod UID, and no
// contradictory options.
func ValidateLogRequest(l *LogStruct) error {
	var errs []error
	if msgs := validation.IsDNS1123Label(l.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("Namespace %q: %s", l.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Label(l.ContainerName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("ContainerName %q: %s", l.ContainerName, strings.Join(msgs, "; ")))
	}
	if !isUUID(l.PodUID) {
		errs = append(errs, fmt.Errorf("PodUID %q is not a UUID", l.PodUID))
	}
	o := l.Opts
	if o.Tail < 0 || o.LimitBytes < 0 || o.SinceSeconds < 0 {
		errs = append(errs, errors.New("Tail, Bytes and SinceSeconds must not be negative"))
	}
	if o.Tail > 0 && o.LimitBytes > 0 {
		errs = append(errs, errors.New("Tail and Bytes are mutually exclusive"))
	}
	if o.SinceSeconds > 0 && !o.SinceTime.IsZero() {
		errs = append(errs, errors.New("SinceSeconds and SinceTime are mutually exclusive"))
	}
	if len(errs) > 0 {
		return Invalid("invalid log request: %w", JoinErrors(errs))
	}
	return nil
}

// ValidateExecRequest checks an exec request like a log request, and that it
// has a command.
func ValidateExecRequest(e *ExecRequest) error {
	var errs []error
	if msgs := validation.IsDNS1123Label(e.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", e.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Label(e.ContainerName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("containerName %q: %s", e.ContainerName, strings.Join(msgs, "; ")))
	}
	if !isUUID(e.PodUID) {
		errs = append(errs, fmt.Errorf("podUID %q is not a UUID", e.PodUID))
	}
	if len(e.Command) == 0 {
		errs = append(errs, errors.New("command is empty"))
	}
	if len(errs) > 0 {
		return Invalid("invalid exec request: %w", JoinErrors(errs))
	}
	return nil
}

// isUUID accepts only the canonical 36-character form Kubernetes uses.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// JoinErrors joins errs on one line ("a; b"), as an HTTP error message reads
// best. It returns nil for no errors.
func JoinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return &joined{errs: errs, msg: strings.Join(msgs, "; ")}
}

type joined struct {
	errs []error
	msg  string
}

func (j *joined) Error() string   { return j.msg }
func (j *joined) Unwrap() []error { return j.errs }
