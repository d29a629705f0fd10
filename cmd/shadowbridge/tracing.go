package main

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracerProvider exports spans over OTLP/HTTP when the standard OpenTelemetry environment asks
// for it (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; the
// other OTEL_* variables, headers and batching included, apply as the SDK reads them), unless
// OTEL_TRACES_EXPORTER or OTEL_SDK_DISABLED turn it off. Off by default: nil provider, and
// shutdown does nothing.
func tracerProvider(ctx context.Context, getenv func(string) string) (trace.TracerProvider, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	url := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); url == "" && base != "" {
		url = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	if url == "" || getenv("OTEL_TRACES_EXPORTER") == "none" || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, none, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url))
	if err != nil {
		return nil, none, fmt.Errorf("tracing: OTLP exporter for %s: %w", url, err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "shadowbridge"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return nil, none, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}
