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

// RequireContainers checks that pod has at least one container: a pod
// without any cannot be run.
func RequireContainers(pod *corev1.Pod) error {
	if len(pod.Spec.Containers) == 0 {
		return Invalid("pod %s/%s has no containers", pod.Namespace, pod.Name)
	}
	return nil
}

// ValidateStatusBatch checks the n pods of a /status batch: each must have
// a metadata.uid. meta returns the i-th pod's namespace, name and UID, or
// the error that kept them from being read. Every problem is reported in one
// Invalid error.
func ValidateStatusBatch(n int, meta func(i int) (namespace, name, uid string, err error)) error {
	var errs []error
	for i := range n {
		ns, name, uid, err := meta(i)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %d: %w", i, err))
		} else if uid == "" {
			errs = append(errs, fmt.Errorf("pod %d (%s/%s) has no metadata.uid", i, ns, name))
		}
	}
	if len(errs) > 0 {
		return Invalid("invalid status request: %w", JoinErrors(errs))
	}
	return nil
}

// ValidateLogRequest checks a log request as the original interLink does:
// DNS-label namespace and container name, a UUID pod UID, and no
// contradictory options.
func ValidateLogRequest(l *LogRequest) error {
	errs := validateContainerRef(l.Namespace, l.ContainerName, l.PodUID, "Namespace", "ContainerName", "PodUID")
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
	errs := validateContainerRef(e.Namespace, e.ContainerName, e.PodUID, "namespace", "containerName", "podUID")
	if len(e.Command) == 0 {
		errs = append(errs, errors.New("command is empty"))
	}
	if len(errs) > 0 {
		return Invalid("invalid exec request: %w", JoinErrors(errs))
	}
	return nil
}

// validateContainerRef checks the namespace, container name and pod UID that
// name a container, reporting each under its field name.
func validateContainerRef(ns, container, uid, nsField, containerField, uidField string) []error {
	var errs []error
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("%s %q: %s", nsField, ns, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Label(container); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("%s %q: %s", containerField, container, strings.Join(msgs, "; ")))
	}
	if !isUUID(uid) {
		errs = append(errs, fmt.Errorf("%s %q is not a UUID", uidField, uid))
	}
	return errs
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
