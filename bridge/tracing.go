package bridge

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// W3C trace context (OpenTelemetry): a request's traceparent is stored with its operation, each
// attempt is a span of that trace whose own traceparent travels with the request (AMQP
// application property, NATS or AMQP 0-9-1 header "traceparent"), and a confirmation carrying a
// traceparent continues it, so one operation is one trace from the IDM's request to its
// completion, retries included.
var traceContext = propagation.TraceContext{}

// WithTraceParent returns ctx with the remote span context of a W3C traceparent as parent (ctx
// itself when tp is empty or not a valid traceparent).
func WithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}

// TraceParent returns the W3C traceparent of ctx's span ("" when ctx has none).
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// tracerOr returns t, or a tracer that records nothing.
func tracerOr(t trace.Tracer) trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer("shadowbridge")
	}
	return t
}
