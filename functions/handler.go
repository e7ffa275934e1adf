package functions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
	"github.com/seed-3f807049/interlink/sidecars"
)

// Sidecar is what the handlers need of a sidecar; sidecars.Client is one.
type Sidecar interface {
	sidecars.Plugin
	sidecars.Pinger
}

// idempotent is implemented by sidecars that know whether their peer's create
// is idempotent by pod UID.
type idempotent interface {
	IdempotentCreate() bool
}

// HandlerConfig configures New.
type HandlerConfig struct {
	// Sidecars by name; at least one.
	Sidecars map[string]Sidecar
	// Default is the sidecar of pods without the interlink.io/sidecar annotation.
	Default string
	// MaxBodyBytes caps request bodies (413 past it).
	MaxBodyBytes int64
	// StatusBatchSize splits a sidecar's share of a status call into batches
	// of at most this many pods; 0 sends it whole.
	StatusBatchSize int
	// Logger; nil means slog.Default.
	Logger *slog.Logger
	// Metrics; nil counts nothing.
	Metrics *Metrics
	// StreamLimits bound each stream (exec -it, attach, port-forward).
	StreamLimits api.Limits
	// JobScript fills the jobScript of a create (JobScripter.Fill); nil is
	// the zero JobScripter's, which renders nothing and refuses creates
	// that name a jobscriptURL.
	JobScript func(ctx context.Context, session string, req *api.PodCreateRequests, data *api.RetrievedPodData) error
}

// Handler serves the interLink API.
type Handler struct {
	cfg   HandlerConfig
	names []string // sorted sidecar names
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns the interLink API handler.
func New(cfg HandlerConfig) (*Handler, error) {
	var errs []error
	if len(cfg.Sidecars) == 0 {
		errs = append(errs, errors.New("no sidecar configured"))
	}
	if _, ok := cfg.Sidecars[cfg.Default]; !ok && len(cfg.Sidecars) > 0 {
		errs = append(errs, fmt.Errorf("default sidecar %q is not one of the configured sidecars", cfg.Default))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.JobScript == nil {
		cfg.JobScript = (&JobScripter{}).Fill
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.Default()
	}
	for n := range cfg.Sidecars {
		h.names = append(h.names, n)
	}
	slices.Sort(h.names)
	h.route(api.PathCreate, h.create, http.MethodPost, http.MethodPut)
	h.route(api.PathDelete, h.delete, http.MethodDelete, http.MethodPost)
	h.route(api.PathStatus, h.status, http.MethodGet, http.MethodPost)
	h.route(api.PathLogs, h.logs, http.MethodGet, http.MethodPost)
	h.route(api.PathPing, h.ping, http.MethodPost, http.MethodGet)
	h.route(api.PathUpdateCache, h.updateCache, http.MethodPost, http.MethodPut)
	h.route(api.PathExec, h.exec, http.MethodPost)
	h.route(api.PathStream, h.stream, http.MethodGet)
	h.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, r, api.NotFound("no such path %q", r.URL.Path))
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
	if h.allOurs() {
		w.Header().Set(api.HeaderTrimmedStatus, "1")
	}
	h.mux.ServeHTTP(w, r)
}

// allOurs tells whether every sidecar has shown it is one of ours (so
// trimmed pods may reach them on /status): an original plugin gets full
// pods.
func (h *Handler) allOurs() bool {
	for _, sc := range h.cfg.Sidecars {
		if i, ok := sc.(idempotent); !ok || !i.IdempotentCreate() {
			return false
		}
	}
	return true
}

func (h *Handler) route(path string, fn func(http.ResponseWriter, *http.Request) error, methods ...string) {
	logErr := func(r *http.Request, err error) {
		lvl := slog.LevelWarn
		if api.ReasonOf(err) == api.ReasonInternal {
			lvl = slog.LevelError
		}
		h.log.LogAttrs(r.Context(), lvl, "request failed", slog.String("path", path),
			slog.String("reason", string(api.ReasonOf(err))), slog.String("session", r.Header.Get(api.HeaderSession)), slog.Any("err", err))
	}
	h.mux.HandleFunc(path, h.cfg.Metrics.instrument(path, api.Route(path, fn, logErr, methods...)))
}

// sidecarOf returns the name of the sidecar that runs pod.
func (h *Handler) sidecarOf(pod *corev1.Pod) (string, error) {
	return h.sidecarFor(pod.Namespace, pod.Name, pod.Annotations)
}

func (h *Handler) sidecarFor(namespace, name string, annotations map[string]string) (string, error) {
	sc := annotations[api.AnnotationSidecar]
	if sc == "" {
		return h.cfg.Default, nil
	}
	if _, ok := h.cfg.Sidecars[sc]; !ok {
		return "", api.Invalid("pod %s/%s: annotation %s=%q names no configured sidecar (configured: %s)",
			namespace, name, api.AnnotationSidecar, sc, strings.Join(h.names, ", "))
	}
	return sc, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var req api.PodCreateRequests
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	pod := &req.Pod
	if err := api.ValidatePod(pod); err != nil {
		return err
	}
	if err := api.RequireContainers(pod); err != nil {
		return err
	}
	name, err := h.sidecarOf(pod)
	if err != nil {
		return err
	}
	sc := h.cfg.Sidecars[name]
	// An original plugin may create twice: ask first whether it has the pod.
	if i, ok := sc.(idempotent); !ok || !i.IdempotentCreate() {
		st, err := sc.Status(r.Context(), []corev1.Pod{*pod})
		if err == nil {
			for _, s := range st {
				if s.PodUID == string(pod.UID) && s.Error == nil {
					return api.WriteJSON(w, api.CreateResult{PodUID: s.PodUID, PodJID: s.JobID})
				}
			}
		}
	}
	data := SplitPodData(&req)
	if err := h.cfg.JobScript(r.Context(), r.Header.Get(api.HeaderSession), &req, data); err != nil {
		return err
	}
	noteSidecar(r.Context(), name)
	res, err := sc.Create(r.Context(), data)
	if err != nil {
		h.cfg.Metrics.sidecarError(name, err)
		return fmt.Errorf("create pod %s/%s on sidecar %s: %w", pod.Namespace, pod.Name, name, err)
	}
	h.log.InfoContext(r.Context(), "pod created", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID, "sidecar", name, "job_id", res.PodJID)
	return api.WriteJSON(w, res)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) error {
	pod, err := api.ReadPod(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	name, err := h.sidecarOf(pod)
	if err != nil {
		return err
	}
	noteSidecar(r.Context(), name)
	if err := h.cfg.Sidecars[name].Delete(r.Context(), pod); err != nil {
		if !api.IsNotFound(err) {
			h.cfg.Metrics.sidecarError(name, err)
		}
		return fmt.Errorf("delete pod %s/%s on sidecar %s: %w", pod.Namespace, pod.Name, name, err)
	}
	h.log.InfoContext(r.Context(), "pod deleted", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID, "sidecar", name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = fmt.Fprintf(w, "pod %s/%s deleted\n", pod.Namespace, pod.Name) //nolint:gosec // G705: text/plain, and ValidatePod allows only DNS names
	return err
}

func (h *Handler) updateCache(w http.ResponseWriter, r *http.Request) error {
	if _, err := api.ReadPod(w, r, h.cfg.MaxBodyBytes); err != nil {
		return err
	}
	// interLink keeps no cache: nothing to update.
	_, err := io.WriteString(w, "ok\n")
	return err
}

func (h *Handler) logs(w http.ResponseWriter, r *http.Request) error {
	req, err := api.ReadLogRequest(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	named, err := h.sidecarFromHeader(r)
	if err != nil {
		return err
	}
	order := []string{named}
	if named == "" {
		order = append([]string{h.cfg.Default}, slices.DeleteFunc(slices.Clone(h.names), func(n string) bool { return n == h.cfg.Default })...)
	}
	// Without a sidecar named, ask the default, then the others while they
	// do not know the pod. The sidecar call is bound to the request: it is
	// canceled when the client goes away.
	var rc io.ReadCloser
	for _, name := range order {
		rc, err = h.cfg.Sidecars[name].Logs(r.Context(), req)
		if err == nil || !api.IsNotFound(err) {
			noteSidecar(r.Context(), name)
			if err != nil {
				h.cfg.Metrics.sidecarError(name, err)
			}
			break
		}
	}
	if err != nil {
		return fmt.Errorf("logs of %s/%s container %s: %w", req.Namespace, req.PodName, req.ContainerName, err)
	}
	sidecars.ServeLogs(w, r, rc, req, h.log)
	return nil
}

// exec runs a command through the pod's sidecar (named by HeaderSidecar, or
// the default) and streams its output and exit code back.
func (h *Handler) exec(w http.ResponseWriter, r *http.Request) error {
	req, err := api.ReadExecRequest(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	name, err := h.routedSidecar(r)
	if err != nil {
		return err
	}
	ex, ok := h.cfg.Sidecars[name].(sidecars.Execer)
	if !ok {
		return api.NewError(api.ReasonNotImplemented, "sidecar %s does not offer exec", name)
	}
	return sidecars.ServeExec(w, r, ex, req, h.log.With("sidecar", name))
}

// routedSidecar is the sidecar of a request that carries no pod (exec, a
// stream): the one HeaderSidecar names, or the default. It is noted for the
// request's metrics.
func (h *Handler) routedSidecar(r *http.Request) (string, error) {
	name, err := h.sidecarFromHeader(r)
	if err != nil {
		return "", err
	}
	if name == "" {
		name = h.cfg.Default
	}
	noteSidecar(r.Context(), name)
	return name, nil
}

// sidecarFromHeader returns the sidecar named by HeaderSidecar ("" when
// none is named); an unknown name is Invalid.
func (h *Handler) sidecarFromHeader(r *http.Request) (string, error) {
	name := r.Header.Get(api.HeaderSidecar)
	if _, ok := h.cfg.Sidecars[name]; name != "" && !ok {
		return "", api.Invalid("header %s=%q names no configured sidecar (configured: %s)", api.HeaderSidecar, name, strings.Join(h.names, ", "))
	}
	return name, nil
}
