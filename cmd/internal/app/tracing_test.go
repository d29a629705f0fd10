package app_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// One provisioning operation is one trace: an add arriving over NATS with a W3C traceparent,
// its first attempt failing (the broker unreachable), its second sent to Artemis with the
// attempt's traceparent as an application property, and the target system's confirmation
// carrying it back. Every span the service records is in the IDM's trace, and each one's parent
// is the IDM's span or another of them.
func TestOneTraceFromRequestToConfirmation(t *testing.T) {
	b := amqptest.Start(t)
	req, conf := b.Queue(t, "trace-requests"), b.Queue(t, "trace-confirmations")
	proxy := amqptest.ReserveProxy(t, b.HostPort()) // refuses connections for now
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := start(t, amqpConfig(t, b.Via(proxy), req, conf, true), app.Options{TracerProvider: tp})

	const idmTrace, idmSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	msg := nats.NewMsg("prov.cmd.fs.add")
	msg.Header.Set("traceparent", "00-"+idmTrace+"-"+idmSpan+"-01")
	msg.Data = []byte(`{"objectClass":"AccountObjectClass","attributes":{"login":["traced"]}}`)
	reply, err := e.nc.RequestMsg(msg, 10*time.Second)
	if err != nil || reply.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("add: %v %s", err, reply.Data)
	}
	var r struct{ ShadowID string }
	_ = json.Unmarshal(reply.Data, &r)
	e.waitShadow(t, "fs", r.ShadowID, func(d domain.ShadowData) bool {
		p := d.PendingOperations[0]
		return p.AttemptNumber == 1 && p.Type == domain.TypeRetry
	})

	// The target system: confirms each request, handing its traceparent back.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	proxy.Restore()
	got := make(chan string, 4)
	go func() {
		rcv, snd := b.Receiver(t, req), b.Sender(t, conf)
		for {
			m, err := rcv.Receive(ctx, nil)
			if err != nil {
				return
			}
			_ = rcv.AcceptMessage(ctx, m)
			tpHeader, _ := m.ApplicationProperties["traceparent"].(string)
			got <- tpHeader
			_ = snd.Send(ctx, &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: m.Properties.MessageID},
				ApplicationProperties: map[string]any{"traceparent": tpHeader},
				Value:                 `{"resultStatus":"success","primaryIdentifiers":{"uid":["t-1"]}}`}, nil)
		}
	}()
	waitFor(t, "live after the retry", 30*time.Second, func() bool {
		_, _ = e.app.Service.Refresh(t.Context(), "fs", r.ShadowID, true)
		d := shadow(t, e.app, r.ShadowID)
		return d.LifecycleState == domain.LifecycleLive
	})
	if tpHeader := <-got; len(tpHeader) != 55 || tpHeader[3:35] != idmTrace {
		t.Fatalf("request traceparent %q: not in the IDM's trace", tpHeader)
	}
	if err := tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	names := map[string]int{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() != idmTrace {
			continue
		}
		spans[s.SpanContext().SpanID()] = s
		names[s.Name()]++
	}
	if names["command add"] != 1 || names["send fs"] < 2 || names["confirm fs"] != 1 {
		t.Fatalf("spans in the IDM's trace: %v", names)
	}
	for _, s := range spans {
		parent := s.Parent().SpanID()
		if _, ok := spans[parent]; !ok && parent.String() != idmSpan {
			t.Errorf("span %q has parent %s, outside the trace", s.Name(), parent)
		}
		if s.Name() == "confirm fs" {
			if p := spans[parent]; p == nil || p.Name() != "send fs" {
				t.Errorf("the confirmation does not continue the attempt that reached the target")
			}
		}
	}
	failed := 0
	for _, s := range spans {
		if s.Name() == "send fs" && s.Status().Code.String() == "Error" {
			failed++
		}
	}
	if failed < 1 {
		t.Fatal("the failed first attempt is not in the trace")
	}
}
