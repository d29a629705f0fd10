package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"shadowbridge/bridge"
	"shadowbridge/bridge/amqptest"
	"shadowbridge/domain"
	"shadowbridge/eventstore/storetest"
)

func amqpTarget(t *testing.T, b amqptest.Broker, address, confirmations string) *bridge.AMQPTarget {
	tgt, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: b.URL, Address: address, ConfirmationAddress: confirmations, Transformation: bridge.SimplifiedJSON})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tgt.Close() })
	return tgt
}

func request(attempt int) bridge.Request {
	return bridge.Request{Resource: "fs", ShadowID: storetest.NewID(), OperationID: storetest.NewID(), Attempt: attempt,
		Body: domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {"jack"}, "shoeSize": {int64(42)}}}}
}

// The message on the broker is exactly CONTRACT.md's layout.
func TestAMQPMessageLayout(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "layout")
	tgt := amqpTarget(t, b, q, "FileSystemResponses")
	req := request(2)
	ref, err := tgt.Send(t.Context(), req)
	if err != nil || ref != req.OperationID {
		t.Fatalf("send: %q %v", ref, err)
	}
	m := amqptest.ReceiveN(t, b.Receiver(t, q), 1, 10*time.Second)[0]
	body, ok := m.Value.(string)
	if !ok {
		t.Fatalf("body is %T, want an AMQP value string", m.Value)
	}
	want, _ := bridge.Transform(bridge.SimplifiedJSON, req.Body)
	if body != string(want) {
		t.Fatalf("body %s, want %s", body, want)
	}
	if m.Header == nil || !m.Header.Durable {
		t.Fatal("not durable")
	}
	id, ok := m.Properties.MessageID.(amqp.UUID)
	if !ok || id.String() != req.OperationID {
		t.Fatalf("message-id %#v, want UUID %s", m.Properties.MessageID, req.OperationID)
	}
	if m.Properties.ReplyTo == nil || *m.Properties.ReplyTo != "FileSystemResponses" {
		t.Fatalf("reply-to %v", m.Properties.ReplyTo)
	}
	if v, ok := m.Annotations["x-opt-jms-msg-type"].(int8); !ok || v != 5 {
		t.Fatalf("x-opt-jms-msg-type = %#v, want byte 5", m.Annotations["x-opt-jms-msg-type"])
	}
	p := m.ApplicationProperties
	if p["shadowId"] != req.ShadowID || p["operationId"] != req.OperationID || p["resource"] != "fs" ||
		p["attempt"] != int32(2) || p["_AMQ_DUPL_ID"] != req.OperationID {
		t.Fatalf("application properties %#v", p)
	}
}

func TestAMQPPipelinedSends(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "pipeline")
	tgt := amqpTarget(t, b, q, "")
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := tgt.Send(t.Context(), request(1)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := len(amqptest.ReceiveN(t, b.Receiver(t, q), n, 20*time.Second)); got != n {
		t.Fatalf("%d arrived", got)
	}
}

func TestAMQPUnreachableBrokerIsCommunicationAndBacksOff(t *testing.T) {
	tgt, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: "amqp://127.0.0.1:1", Address: "q", MinBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tgt.Send(t.Context(), request(1))
	if bridge.Categorize(err) != domain.CategoryCommunication {
		t.Fatalf("first send: %v (%s)", err, bridge.Categorize(err))
	}
	start := time.Now()
	_, err = tgt.Send(t.Context(), request(1))
	if bridge.Categorize(err) != domain.CategoryCommunication || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second send during backoff: %v after %s", err, time.Since(start))
	}
}

func TestAMQPWrongPasswordIsSecurity(t *testing.T) {
	b := amqptest.Start(t)
	tgt, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: "amqp://" + b.HostPort(), Username: "guest", Password: "wrong", Address: "q"})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	_, err = tgt.Send(t.Context(), request(1))
	if bridge.Categorize(err) != domain.CategorySecurity {
		t.Fatalf("wrong password: %v (%s), want security", err, bridge.Categorize(err))
	}
	if _, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: "http://x", Address: "q"}); !errors.Is(err, domain.CategoryConfiguration) {
		t.Fatalf("bad url: %v", err)
	}
}

type confirmRecorder struct {
	mu    sync.Mutex
	got   []recordedConfirmation
	fail  int // communication failures to return before succeeding
	known map[string]bool
}

// recordedConfirmation is a confirmation as the recorder read its body (the service reads it
// with the NATS confirm command's decoder; see the app's tests).
type recordedConfirmation struct {
	OperationID        string
	ResultStatus       string           `json:"resultStatus"`
	Message            string           `json:"message"`
	PrimaryIdentifiers map[string][]any `json:"primaryIdentifiers"`
}

func (c *confirmRecorder) Confirm(_ context.Context, _ string, cf bridge.Confirmation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	rc := recordedConfirmation{OperationID: cf.OperationID}
	if err := json.Unmarshal(cf.Body, &rc); err != nil || rc.ResultStatus == "" {
		return fmt.Errorf("%w: %v", bridge.ErrMalformed, err)
	}
	if !c.known[cf.OperationID] {
		return domain.ErrOperationNotFound
	}
	if c.fail > 0 {
		c.fail--
		return errors.New("nats: timeout") // uncategorized: not stored, retried
	}
	c.got = append(c.got, rc)
	return nil
}

func (c *confirmRecorder) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.got) }

// countLabels is a bridge.Counter that remembers its counts.
type countLabels struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countLabels) Inc(labels ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[strings.Join(labels, " ")]++
}

func (c *countLabels) byLabels() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func (c *countLabels) total() int {
	n := 0
	for _, v := range c.byLabels() {
		n += v
	}
	return n
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestConfirmationReceiver(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "confirmations")
	good, unknown := storetest.NewID(), storetest.NewID()
	rec := &confirmRecorder{fail: 2, known: map[string]bool{good: true}}
	var logs syncBuffer
	refused := &countLabels{}
	rcv, err := bridge.NewConfirmationReceiver(bridge.AMQPOptions{URL: b.URL, Address: "unused", ConfirmationAddress: q, MinBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Refused: refused}, "fs", rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = rcv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	snd := b.Sender(t, q)
	send := func(corr any, body string) {
		m := &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: corr}, Value: body}
		if err := snd.Send(t.Context(), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	send(nil, `{"resultStatus":"success"}`)                                                                        // no correlation id
	send(good, `not json`)                                                                                         // malformed body
	send(good, `{"message":"x"}`)                                                                                  // no result status
	send(unknown, `{"resultStatus":"success"}`)                                                                    // unknown operation
	send(amqptest.UUID(t, good), `{"resultStatus":"success","primaryIdentifiers":{"uid":["u-7"]},"message":"ok"}`) // good, as UUID
	deadline := time.Now().Add(15 * time.Second)
	for rec.count() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the good confirmation never arrived: the receiver stopped on a bad one?")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := rec.got[0]
	if c.OperationID != good || c.ResultStatus != "success" || c.Message != "ok" || len(c.PrimaryIdentifiers["uid"]) != 1 {
		t.Fatalf("confirmation %+v", c)
	}
	// A flood of bad confirmations: each refused and counted, one log line for all of them
	// (each used to log two: the handler's and watermill's router's).
	for range 50 {
		send(storetest.NewID(), `{"resultStatus":"success"}`)
	}
	for refused.total() < 54 {
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals counted, want 54: %v", refused.total(), refused.byLabels())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := refused.byLabels(); got["fs malformed"] != 3 || got["fs unknown-operation"] != 51 {
		t.Fatalf("refusals by reason: %v", got)
	}
	if n := strings.Count(logs.String(), "confirmation refused"); n != 1 || strings.Contains(logs.String(), "Handler returned error") {
		t.Fatalf("%d lines about refusals for 54 of them:\n%s", n, logs.String())
	}
	// Nothing is left on the queue: refused messages were settled (rejected), not redelivered.
	r := b.Receiver(t, q)
	rctx, rcancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer rcancel()
	if m, err := r.Receive(rctx, nil); err == nil {
		t.Fatalf("left on the queue: %v", m.Properties.CorrelationID)
	}
}

// Artemis' interop facts, checked rather than trusted: a duplicate _AMQ_DUPL_ID is answered
// Accepted and not routed; a receiver asking for settle mode "second" is refused (Artemis always
// answers "first", so shadowbridge never asks for it).
func TestArtemisDuplicateDetectionAndSettleMode(t *testing.T) {
	b := amqptest.Artemis(t)
	q := b.Queue(t, "dupl")
	tgt := amqpTarget(t, b, q, "")
	req := request(1)
	for i := range 3 {
		if _, err := tgt.Send(t.Context(), req); err != nil {
			t.Fatalf("send %d of the same operation: %v (want Accepted)", i, err)
		}
	}
	r := b.Receiver(t, q)
	amqptest.ReceiveN(t, r, 1, 10*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if m, err := r.Receive(ctx, nil); err == nil {
		t.Fatalf("a duplicate was routed: %v", m.ApplicationProperties)
	}
	conn := b.Dial(t)
	sess, err := conn.NewSession(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.NewReceiver(t.Context(), q, &amqp.ReceiverOptions{SettlementMode: amqp.ReceiverSettleModeSecond.Ptr()}); err == nil {
		t.Fatal("a receiver asking for settle mode second was accepted; the fact changed")
	}
}
