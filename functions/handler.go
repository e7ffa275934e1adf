package functions

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

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
		cfg.MaxBodyBytes = sidecars.DefaultMaxBodyBytes
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
	allow := strings.Join(methods, ", ")
	h.mux.HandleFunc(path, h.cfg.Metrics.instrument(path, func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			w.Header().Set("Allow", allow)
			api.WriteError(w, r, api.NewError(api.ReasonMethodNotAllowed, "method %s not allowed on %s", r.Method, path))
			return
		}
		if err := fn(w, r); err != nil {
			lvl := slog.LevelWarn
			if api.ReasonOf(err) == api.ReasonInternal {
				lvl = slog.LevelError
			}
			h.log.LogAttrs(r.Context(), lvl, "request failed", slog.String("path", path),
				slog.String("reason", string(api.ReasonOf(err))), slog.String("session", r.Header.Get(api.HeaderSession)), slog.Any("err", err))
			api.WriteError(w, r, err)
		}
	}))
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
	if len(pod.Spec.Containers) == 0 {
		return api.Invalid("pod %s/%s has no containers", pod.Namespace, pod.Name)
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
					return writeJSON(w, api.CreateStruct{PodUID: s.PodUID, PodJID: s.JobID})
				}
			}
		}
	}
	data := RetrievePodData(&req)
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
	return writeJSON(w, res)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) error {
	var pod corev1.Pod
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &pod); err != nil {
		return err
	}
	if err := api.ValidatePod(&pod); err != nil {
		return err
	}
	name, err := h.sidecarOf(&pod)
	if err != nil {
		return err
	}
	noteSidecar(r.Context(), name)
	if err := h.cfg.Sidecars[name].Delete(r.Context(), &pod); err != nil {
		if !api.IsNotFound(err) {
			h.cfg.Metrics.sidecarError(name, err)
		}
		return fmt.Errorf("delete pod %s/%s on sidecar %s: %w", pod.Namespace, pod.Name, name, err)
	}
	h.log.InfoContext(r.Context(), "pod deleted", "pod", pod.Name, "namespace", pod.Namespace, "uid", pod.UID, "sidecar", name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = fmt.Fprintf(w, "pod %s/%s deleted\n", pod.Namespace, pod.Name)
	return err
}

func (h *Handler) updateCache(w http.ResponseWriter, r *http.Request) error {
	var pod corev1.Pod
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &pod); err != nil {
		return err
	}
	if err := api.ValidatePod(&pod); err != nil {
		return err
	}
	// interLink keeps no cache: nothing to update.
	_, err := io.WriteString(w, "ok\n")
	return err
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) error {
	var pods []json.RawMessage
	if err := api.ReadJSON(w, r, h.cfg.MaxBodyBytes, &pods); err != nil {
		return err
	}
	res, err := h.Status(r.Context(), pods)
	if err != nil {
		return err
	}
	// Only peers that declared our API version get per-pod errors; an
	// original VK simply does not see the pods whose sidecar failed.
	if r.Header.Get(api.HeaderAPIVersion) != "" {
		for i := range res.Failed {
			raw, err := json.Marshal(&res.Failed[i])
			if err != nil {
				return fmt.Errorf("encode status error: %w", err)
			}
			res.Statuses = append(res.Statuses, raw)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	_ = bw.WriteByte('[')
	for i, st := range res.Statuses {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(st)
	}
	_, _ = bw.WriteString("]\n")
	return bw.Flush()
}

// podRef is one pod of a status batch: the little metadata interLink reads to
// route it. The pod's JSON itself is forwarded to its sidecar unchanged.
type podRef struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		UID         string            `json:"uid"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// StatusResult is the merged reply of a fanned-out status call.
type StatusResult struct {
	// Statuses of the pods the sidecars know, each a PodStatus as the
	// sidecar encoded it.
	Statuses []json.RawMessage
	// Failed holds one entry with Error set for each pod whose status could
	// not be read (unknown sidecar, or the sidecar failed).
	Failed []api.PodStatus
}

// rawStatuser is implemented by sidecars (sidecars.Client) that take and
// return pods and statuses as JSON, so interLink need not decode and
// re-encode them.
type rawStatuser interface {
	StatusRaw(ctx context.Context, pods []json.RawMessage) ([]json.RawMessage, error)
}

// Status groups pods (each a v1.Pod in JSON) by sidecar, asks each sidecar
// concurrently (in batches of StatusBatchSize when set) and merges the
// replies. Pods are forwarded as they came: only their metadata is decoded.
// A pod without metadata.uid is an Invalid error for the whole batch.
func (h *Handler) Status(ctx context.Context, pods []json.RawMessage) (StatusResult, error) {
	refs := make([]podRef, len(pods))
	var errs []error
	for i, raw := range pods {
		if err := json.Unmarshal(raw, &refs[i]); err != nil {
			errs = append(errs, fmt.Errorf("pod %d: %w", i, err))
		} else if refs[i].Metadata.UID == "" {
			errs = append(errs, fmt.Errorf("pod %d (%s/%s) has no metadata.uid", i, refs[i].Metadata.Namespace, refs[i].Metadata.Name))
		}
	}
	if len(errs) > 0 {
		return StatusResult{}, api.Invalid("invalid status request: %w", api.JoinErrors(errs))
	}
	type group struct {
		raw  []json.RawMessage
		refs []*podRef
	}
	groups := map[string]*group{}
	var res StatusResult
	for i, raw := range pods {
		ref := &refs[i]
		name, err := h.sidecarFor(ref.Metadata.Namespace, ref.Metadata.Name, ref.Metadata.Annotations)
		if err != nil {
			res.Failed = append(res.Failed, failedRef(ref, err))
			continue
		}
		g := groups[name]
		if g == nil {
			g = &group{}
			groups[name] = g
		}
		g.raw = append(g.raw, raw)
		g.refs = append(g.refs, ref)
	}
	type part struct {
		st  []json.RawMessage
		bad []api.PodStatus
	}
	var calls []func() part
	for name, g := range groups {
		size := h.cfg.StatusBatchSize
		if size <= 0 {
			size = len(g.raw)
		}
		for lo := 0; lo < len(g.raw); lo += size {
			hi := min(lo+size, len(g.raw))
			noteSidecar(ctx, name)
			calls = append(calls, func() part {
				h.cfg.Metrics.batch(name, hi-lo)
				st, err := h.statusOf(ctx, h.cfg.Sidecars[name], g.raw[lo:hi])
				if err == nil {
					return part{st: st}
				}
				h.cfg.Metrics.sidecarError(name, err)
				err = fmt.Errorf("status of %d pods on sidecar %s: %w", hi-lo, name, err)
				h.log.WarnContext(ctx, "sidecar status failed; its pods keep their last status", "sidecar", name, "err", err)
				p := part{bad: make([]api.PodStatus, 0, hi-lo)}
				for _, ref := range g.refs[lo:hi] {
					p.bad = append(p.bad, failedRef(ref, err))
				}
				return p
			})
		}
	}
	parts := make([]part, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() { parts[i] = call() })
	}
	wg.Wait()
	for _, p := range parts {
		res.Statuses = append(res.Statuses, p.st...)
		res.Failed = append(res.Failed, p.bad...)
	}
	return res, nil
}

// statusOf asks one sidecar, as JSON when it can, else through Plugin.Status.
func (h *Handler) statusOf(ctx context.Context, sc Sidecar, pods []json.RawMessage) ([]json.RawMessage, error) {
	if raw, ok := sc.(rawStatuser); ok {
		return raw.StatusRaw(ctx, pods)
	}
	typed := make([]corev1.Pod, len(pods))
	for i, p := range pods {
		if err := json.Unmarshal(p, &typed[i]); err != nil {
			return nil, api.Invalid("pod %d: %w", i, err)
		}
	}
	st, err := sc.Status(ctx, typed)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(st))
	for i := range st {
		if out[i], err = json.Marshal(&st[i]); err != nil {
			return nil, fmt.Errorf("encode status: %w", err)
		}
	}
	return out, nil
}

func failedRef(ref *podRef, err error) api.PodStatus {
	st := api.StatusOf(err)
	m := &ref.Metadata
	return api.PodStatus{PodName: m.Name, PodUID: m.UID, PodNamespace: m.Namespace, Error: &st}
}

func (h *Handler) logs(w http.ResponseWriter, r *http.Request) error {
	req, err := sidecars.ReadLogRequest(w, r, h.cfg.MaxBodyBytes)
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
	req, err := sidecars.ReadExecRequest(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	name, err := h.sidecarFromHeader(r)
	if err != nil {
		return err
	}
	if name == "" {
		name = h.cfg.Default
	}
	noteSidecar(r.Context(), name)
	ex, ok := h.cfg.Sidecars[name].(sidecars.Execer)
	if !ok {
		return api.NewError(api.ReasonNotImplemented, "sidecar %s does not offer exec", name)
	}
	return sidecars.ServeExec(w, r, ex, req, h.log.With("sidecar", name))
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

// ping asks every sidecar concurrently and aggregates: resources summed,
// taints merged, each sidecar's health listed. It fails (503) only when no
// sidecar answers.
func (h *Handler) ping(w http.ResponseWriter, r *http.Request) error {
	type reply struct {
		res api.PingResponse
		err error
	}
	replies := make([]reply, len(h.names))
	var wg sync.WaitGroup
	for i, name := range h.names {
		wg.Go(func() {
			res, err := h.cfg.Sidecars[name].Ping(r.Context())
			replies[i] = reply{res, err}
		})
	}
	wg.Wait()
	var sum resources
	agg := api.PingResponse{}
	up := 0
	for i, name := range h.names {
		rp := replies[i]
		health := api.SidecarHealth{Name: name, Up: rp.err == nil}
		h.cfg.Metrics.up(name, rp.err == nil)
		h.cfg.Metrics.sidecarError(name, rp.err)
		if rp.err != nil {
			health.Error = rp.err.Error()
			h.log.WarnContext(r.Context(), "sidecar ping failed", "sidecar", name, "err", rp.err)
		} else {
			up++
			if err := rp.res.Problem; err != nil {
				h.log.WarnContext(r.Context(), "sidecar's ping reply is not a ping response; its resources are not read", "sidecar", name, "err", err)
			}
			if err := sum.add(rp.res.Resources); err != nil {
				h.log.WarnContext(r.Context(), "sidecar reported bad resources; ignored", "sidecar", name, "err", err)
			}
			if rp.res.Taints != nil {
				if agg.Taints == nil {
					agg.Taints = &[]api.Taint{}
				}
				*agg.Taints = append(*agg.Taints, *rp.res.Taints...)
			}
		}
		agg.Sidecars = append(agg.Sidecars, health)
	}
	agg.Resources = sum.result()
	switch up {
	case len(h.names):
		agg.Status = api.PingOK
	case 0:
		agg.Status = api.PingDown
	default:
		agg.Status = api.PingDegraded
	}
	w.Header().Set("Content-Type", "application/json")
	if up == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return json.NewEncoder(w).Encode(agg)
}

// resources sums sidecars' capacities.
type resources struct {
	cpu, mem, pods resource.Quantity
	any            bool
	acc            map[string]int
	accOrder       []string
}

func (s *resources) add(r *api.Resources) error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, f := range []struct {
		v   string
		dst *resource.Quantity
	}{{r.CPU, &s.cpu}, {r.Memory, &s.mem}, {r.Pods, &s.pods}} {
		if f.v == "" {
			continue
		}
		q, err := resource.ParseQuantity(f.v)
		if err != nil {
			errs = append(errs, fmt.Errorf("quantity %q: %w", f.v, err))
			continue
		}
		f.dst.Add(q)
		s.any = true
	}
	for _, a := range r.Accelerators {
		if s.acc == nil {
			s.acc = map[string]int{}
		}
		if _, ok := s.acc[a.ResourceType]; !ok {
			s.accOrder = append(s.accOrder, a.ResourceType)
		}
		s.acc[a.ResourceType] += int(a.Available)
		s.any = true
	}
	return errors.Join(errs...)
}

func (s *resources) result() *api.Resources {
	if !s.any {
		return nil
	}
	out := &api.Resources{}
	if !s.cpu.IsZero() {
		out.CPU = s.cpu.String()
	}
	if !s.mem.IsZero() {
		out.Memory = s.mem.String()
	}
	if !s.pods.IsZero() {
		out.Pods = s.pods.String()
	}
	for _, t := range s.accOrder {
		out.Accelerators = append(out.Accelerators, api.Accelerator{ResourceType: t, Available: api.Count(s.acc[t])})
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
