package sidecars

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	corev1 "k8s.io/api/core/v1"

	"github.com/seed-3f807049/interlink/functions/api"
)

// DefaultMaxBodyBytes caps request bodies (a /status batch of 10,000 full pods
// is about 40 MiB).
const DefaultMaxBodyBytes = api.DefaultMaxBodyBytes

// HandlerConfig configures NewHandler. The zero value is usable.
type HandlerConfig struct {
	// MaxBodyBytes caps request bodies; past it the reply is 413.
	MaxBodyBytes int64
	// Logger receives one line per failed request; nil means slog.Default.
	Logger *slog.Logger
}

type handler struct {
	p    Plugin
	cfg  HandlerConfig
	log  *slog.Logger
	mux  *http.ServeMux
	ping Pinger
}

// NewHandler serves p over the interLink -> sidecar protocol: /create,
// /delete, /status (an empty list is a ping) and /getLogs, accepting the
// methods the original interLink sends (GET with a body) and POST.
func NewHandler(p Plugin, cfg HandlerConfig) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &handler{p: p, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.ping, _ = p.(Pinger)
	h.route(api.PathCreate, h.create, http.MethodPost, http.MethodPut)
	h.route(api.PathDelete, h.delete, http.MethodPost, http.MethodDelete)
	h.route(api.PathStatus, h.status, http.MethodGet, http.MethodPost)
	h.route(api.PathLogs, h.logs, http.MethodGet, http.MethodPost)
	h.route(api.PathExec, h.exec, http.MethodPost)
	h.route(api.PathStream, h.stream, http.MethodGet)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, r, api.NotFound("no such path %q", r.URL.Path))
	})
	// Each request is a span, child of the caller's traceparent.
	return otelhttp.NewHandler(h, "sidecar", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	}))
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderAPIVersion, api.APIVersion)
	h.mux.ServeHTTP(w, r)
}

// route serves fn on path for the allowed methods (api.Route), logging
// each failed request.
func (h *handler) route(path string, fn func(http.ResponseWriter, *http.Request) error, allowed ...string) {
	h.mux.HandleFunc(path, api.Route(path, fn, h.logErr, allowed...))
}

func (h *handler) logErr(r *http.Request, err error) {
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "request failed",
		slog.String("path", r.URL.Path), slog.String("reason", string(api.ReasonOf(err))), slog.Any("err", err))
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) error {
	var data api.RetrievedPodData
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &data); err != nil {
		return err
	}
	if err := api.ValidatePod(&data.Pod); err != nil {
		return err
	}
	res, err := h.p.Create(r.Context(), &data)
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", data.Pod.Namespace, data.Pod.Name, err)
	}
	return api.WriteJSON(w, res)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) error {
	pod, err := api.ReadPod(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	if err := h.p.Delete(r.Context(), pod); err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = fmt.Fprintf(w, "pod %s/%s deleted\n", pod.Namespace, pod.Name) //nolint:gosec // G705: text/plain, and ValidatePod allows only DNS names
	return err
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) error {
	var pods []corev1.Pod
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &pods); err != nil {
		return err
	}
	if len(pods) == 0 {
		resp := api.PingResponse{Status: api.PingOK}
		if h.ping != nil {
			var err error
			if resp, err = h.ping.Ping(r.Context()); err != nil {
				return api.Unavailable("ping: %w", err)
			}
		}
		return api.WriteJSON(w, resp)
	}
	if err := api.ValidateStatusBatch(len(pods), func(i int) (string, string, string, error) {
		return pods[i].Namespace, pods[i].Name, string(pods[i].UID), nil
	}); err != nil {
		return err
	}
	st, err := h.p.Status(r.Context(), pods)
	if err != nil {
		return fmt.Errorf("status of %d pods: %w", len(pods), err)
	}
	if st == nil {
		st = []api.PodStatus{}
	}
	return api.WriteJSON(w, st)
}

func (h *handler) logs(w http.ResponseWriter, r *http.Request) error {
	req, err := api.ReadLogRequest(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	rc, err := h.p.Logs(r.Context(), req)
	if err != nil {
		return fmt.Errorf("logs of %s/%s/%s: %w", req.Namespace, req.PodName, req.ContainerName, err)
	}
	ServeLogs(w, r, rc, req, h.log)
	return nil
}

func (h *handler) exec(w http.ResponseWriter, r *http.Request) error {
	req, err := api.ReadExecRequest(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	ex, ok := h.p.(Execer)
	if !ok {
		return api.NewError(api.ReasonNotImplemented, "this sidecar does not offer exec")
	}
	return ServeExec(w, r, ex, req, h.log)
}

func (h *handler) stream(w http.ResponseWriter, r *http.Request) error {
	st, ok := h.p.(Streamer)
	if !ok {
		return api.NewError(api.ReasonNotImplemented, "this sidecar does not offer exec -it, attach or port-forward")
	}
	return ServeStream(w, r, st, h.log)
}

// ServeLogs streams rc (then closes it) as the text/plain reply, flushed as
// it comes. Once streaming, an error can no longer change the status: it is
// logged.
func ServeLogs(w http.ResponseWriter, r *http.Request, rc io.ReadCloser, req *api.LogRequest, log *slog.Logger) {
	defer func() { _ = rc.Close() }()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if err := StreamLogs(w, rc); err != nil && r.Context().Err() == nil {
		log.WarnContext(r.Context(), "log stream ended with an error", "pod", req.PodName, "namespace", req.Namespace, "err", err)
	}
}

// ServeExec runs req with ex, streaming its output and exit code as the
// reply (api.WriteExec). A failure is logged, even once output was sent.
func ServeExec(w http.ResponseWriter, r *http.Request, ex Execer, req *api.ExecRequest, log *slog.Logger) error {
	return api.WriteExec(w, func(out io.Writer) (int, error) {
		code, err := ex.Exec(r.Context(), req, out)
		if err != nil {
			log.WarnContext(r.Context(), "exec failed", "pod", req.PodName, "namespace", req.Namespace, "err", err)
			return 0, fmt.Errorf("exec in %s/%s container %s: %w", req.Namespace, req.PodName, req.ContainerName, err)
		}
		return code, nil
	})
}

// StreamLogs copies rc to w, flushing after every write so that followed
// logs reach the client as they are produced.
func StreamLogs(w http.ResponseWriter, rc io.Reader) error {
	rcl := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rcl.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
