package vk

import (
	"context"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"

	"github.com/seed-3f807049/interlink/functions/api"
)

// Streams: kubectl exec -it, attach and port-forward, from the kubelet API
// (which has authenticated and authorized them, nodes/proxy) through
// interLink to the pod's sidecar, over the VK's own connection to
// interLink. At most StreamMaxConcurrent are open at once on the node.

// streamer is implemented by interLink clients (functions/client) that
// open streams.
type streamer interface {
	Stream(ctx context.Context, sidecar string, req *api.StreamRequest) (*api.StreamConn, error)
}

// streamMetrics count the node's streams.
type streamMetrics struct {
	active *prometheus.GaugeVec
	bytes  *prometheus.CounterVec
	ended  *prometheus.CounterVec
}

func newStreamMetrics(reg prometheus.Registerer) *streamMetrics {
	m := &streamMetrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "interlink_vk_streams_active",
			Help: "Streams (exec -it, attach, port-forward, service) open on the node, by kind."}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_vk_stream_bytes_total",
			Help: "Bytes carried by the node's streams, by kind and direction (in: towards the pod)."}, []string{"kind", "direction"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "interlink_vk_streams_ended_total",
			Help: "Streams ended or refused, by kind and reason (ok: a close by either side; TooManyStreams: over StreamMaxConcurrent)."}, []string{"kind", "reason"}),
	}
	reg.MustRegister(m.active, m.bytes, m.ended)
	return m
}

// ReasonTooManyStreams refuses a stream over the node's cap.
const ReasonTooManyStreams = "TooManyStreams"

// openStream opens a stream to the pod's sidecar, within the node's cap.
// The returned func ends its accounting (under kind), with the stream's
// outcome.
func (p *Provider) openStream(ctx context.Context, req *api.StreamRequest, kind string) (*api.StreamConn, func(error), error) {
	pod, err := p.GetPod(ctx, req.Namespace, req.PodName)
	if err != nil {
		return nil, nil, err
	}
	req.PodUID = string(pod.UID)
	st, ok := p.il.(streamer)
	if !ok {
		return nil, nil, errdefs.InvalidInput("this virtual node's interLink client offers no streams")
	}
	m := p.streamMetrics
	select {
	case p.streamSlots <- struct{}{}:
	default:
		if m != nil {
			m.ended.WithLabelValues(kind, ReasonTooManyStreams).Inc()
		}
		return nil, nil, errdefs.InvalidInput(fmt.Sprintf("%s: this virtual node has %d streams open, its most (StreamMaxConcurrent)", ReasonTooManyStreams, cap(p.streamSlots)))
	}
	c, err := st.Stream(ctx, pod.Annotations[api.AnnotationSidecar], req)
	if err != nil {
		<-p.streamSlots
		if m != nil {
			m.ended.WithLabelValues(kind, string(api.ReasonOf(err))).Inc()
		}
		return nil, nil, streamErr(err)
	}
	if m != nil {
		m.active.WithLabelValues(kind).Inc()
	}
	return c, func(err error) {
		<-p.streamSlots
		if m == nil {
			return
		}
		m.active.WithLabelValues(kind).Dec()
		reason := "ok"
		if err != nil {
			reason = string(api.ReasonOf(err))
		}
		m.ended.WithLabelValues(kind, reason).Inc()
	}, nil
}

// streamErr maps a stream's error to what the kubelet API replies.
func streamErr(err error) error {
	switch api.ReasonOf(err) {
	case api.ReasonNotFound:
		return errdefs.AsNotFound(err)
	case api.ReasonInvalid, api.ReasonNotImplemented:
		return errdefs.AsInvalidInput(err)
	}
	return err
}

// ioStream runs an exec or attach stream with the kubelet API's attach.
func (p *Provider) ioStream(ctx context.Context, req *api.StreamRequest, attach vkapi.AttachIO) error {
	req.Stdin, req.TTY = attach.Stdin() != nil, attach.TTY()
	c, done, err := p.openStream(ctx, req, req.Kind)
	if err != nil {
		return err
	}
	var resize chan api.TermSize
	if req.TTY && attach.Resize() != nil {
		resize = make(chan api.TermSize)
		go func() {
			defer close(resize)
			for {
				select {
				case <-ctx.Done():
					return
				case ts, ok := <-attach.Resize():
					if !ok {
						return
					}
					select {
					case resize <- api.TermSize{Width: ts.Width, Height: ts.Height}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	var stdout, stderr io.Writer
	if w := attach.Stdout(); w != nil {
		stdout = p.countWriter(w, req.Kind, "out")
	}
	if w := attach.Stderr(); w != nil {
		stderr = p.countWriter(w, req.Kind, "out")
	}
	stdin := attach.Stdin()
	if stdin != nil {
		stdin = p.countReader(stdin, req.Kind, "in")
	}
	st, err := c.RunIO(ctx, stdin, stdout, stderr, resize)
	if err == nil {
		err = st.Err()
	}
	done(err)
	switch {
	case err != nil:
		return streamErr(err)
	case st.ExitCode != 0:
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", st.ExitCode), Code: st.ExitCode}
	}
	return nil
}

// AttachToContainer joins a running container's standard streams
// (kubectl attach), where its sidecar's runtime allows it.
func (p *Provider) AttachToContainer(ctx context.Context, namespace, podName, containerName string, attach vkapi.AttachIO) error {
	return p.ioStream(ctx, &api.StreamRequest{Kind: api.StreamAttach, Namespace: namespace, PodName: podName, ContainerName: containerName}, attach)
}

// PortForward carries one connection of kubectl port-forward to port in
// the pod, through interLink and its sidecar.
func (p *Provider) PortForward(ctx context.Context, namespace, podName string, port int32, stream io.ReadWriteCloser) error {
	return p.forward(ctx, namespace, podName, port, stream, api.StreamPortForward)
}

// KindService counts the connections of Services (services.Forwarder) in
// the stream metrics.
const KindService = "service"

// Forward carries one connection of a Service to port in the pod
// (services.Forwarder), as PortForward does.
func (p *Provider) Forward(ctx context.Context, namespace, podName string, port int32, conn io.ReadWriteCloser) error {
	return p.forward(ctx, namespace, podName, port, conn, KindService)
}

func (p *Provider) forward(ctx context.Context, namespace, podName string, port int32, stream io.ReadWriteCloser, kind string) error {
	c, done, err := p.openStream(ctx, &api.StreamRequest{Kind: api.StreamPortForward, Namespace: namespace, PodName: podName, Port: port}, kind)
	if err != nil {
		return err
	}
	rw := struct {
		io.Reader
		io.Writer
		io.Closer
	}{p.countReader(stream, kind, "in"), p.countWriter(stream, kind, "out"), stream}
	err = c.Pipe(ctx, rw, api.ChanStdin, api.ChanStdout)
	done(err)
	return streamErr(err)
}

type countingWriter struct {
	w io.Writer
	c prometheus.Counter
}

func (cw countingWriter) Write(b []byte) (int, error) {
	n, err := cw.w.Write(b)
	cw.c.Add(float64(n))
	return n, err
}

type countingReader struct {
	r io.Reader
	c prometheus.Counter
}

func (cr countingReader) Read(b []byte) (int, error) {
	n, err := cr.r.Read(b)
	cr.c.Add(float64(n))
	return n, err
}

func (p *Provider) countWriter(w io.Writer, kind, dir string) io.Writer {
	if p.streamMetrics == nil {
		return w
	}
	return countingWriter{w, p.streamMetrics.bytes.WithLabelValues(kind, dir)}
}

func (p *Provider) countReader(r io.Reader, kind, dir string) io.Reader {
	if p.streamMetrics == nil {
		return r
	}
	return countingReader{r, p.streamMetrics.bytes.WithLabelValues(kind, dir)}
}
