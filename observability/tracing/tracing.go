// Package tracing sets up OpenTelemetry for an interLink binary: W3C
// traceparent propagation always (so a trace crosses a hop even where
// tracing is off), and spans exported over OTLP/HTTP when an endpoint is
// configured. The VK -> interLink -> sidecar calls carry the context, so
// one pod create is one trace.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Config of tracing, part of every binary's Config.
type Config struct {
	Endpoint    string  `json:"Endpoint" env:"ENDPOINT" doc:"OTLP/HTTP collector to send spans to (http://host:4318, or a full URL ending in /v1/traces); empty: no spans are exported (traceparent still passes through)."`
	SampleRatio float64 `json:"SampleRatio" env:"SAMPLE_RATIO" doc:"Share of new traces sampled, 0 to 1 (a sampled parent is always followed)."`
}

// DefaultConfig is tracing off, every trace sampled once on.
func DefaultConfig() Config { return Config{SampleRatio: 1} }

// Validate reports a bad ratio.
func (c *Config) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("Tracing.SampleRatio %v: want 0 to 1", c.SampleRatio)
	}
	return nil
}

// Start installs the propagator and, with an endpoint, a tracer provider
// exporting the spans of service. The returned function flushes and stops.
func Start(ctx context.Context, cfg Config, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if cfg.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("tracing: Endpoint %q is not a URL such as http://collector:4318", cfg.Endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces" // the collector's base URL was given
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Handler wraps an HTTP handler: each request is a server span, child of
// the caller's traceparent.
func Handler(h http.Handler, operation string) http.Handler {
	return otelhttp.NewHandler(h, operation, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	}))
}

// Transport wraps an HTTP transport: each request is a client span whose
// context goes out as traceparent.
func Transport(rt http.RoundTripper) http.RoundTripper { return otelhttp.NewTransport(rt) }

// Tracer returns the named tracer of the installed provider.
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }
