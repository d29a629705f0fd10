package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

var (
	_ bridge.Log    = (*eventstore.Store)(nil)
	_ bridge.Target = (*bridge.NATSTarget)(nil)
)

// recorder records outcomes with load, decide, append (the command service does the same).
type recorder struct {
	t     *testing.T
	store *eventstore.Store
	res   domain.Resource
}

func (r recorder) do(ctx context.Context, shadowID string, cmd domain.Command) error {
	for {
		_, _, err := storetest.Decide(ctx, r.t, r.store, r.res, shadowID, cmd)
		if !errors.Is(err, eventstore.ErrConflict) {
			return err
		}
	}
}

func (r recorder) Delivered(ctx context.Context, a bridge.Attempt, ref string) error {
	return r.do(ctx, a.ShadowID, domain.RecordDelivery{Resource: r.res, OperationID: a.OperationID, Attempt: a.Number, Reference: ref})
}

func (r recorder) Failed(ctx context.Context, a bridge.Attempt, f bridge.Failure) error {
	return r.do(ctx, a.ShadowID, domain.RecordFailure{Resource: r.res, OperationID: a.OperationID, Attempt: a.Number,
		Error: domain.OperationError{Category: f.Category, Message: f.Message}, NotSent: f.NotSent})
}

func (r recorder) Postponed(ctx context.Context, a bridge.Attempt, reason string) error {
	return r.do(ctx, a.ShadowID, domain.RecordPostponement{Resource: r.res.WithMaintenance(true), OperationID: a.OperationID, Attempt: a.Number, Reason: reason})
}

type fixture struct {
	store  *eventstore.Store
	js     jetstream.JetStream
	res    domain.Resource
	rec    recorder
	target *bridge.NATSTarget
	disp   *bridge.Dispatcher
}

func setup(t *testing.T, confirm bool) *fixture {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	store, err := eventstore.Open(t.Context(), nc, eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	res, err := domain.NewResource("demo", []domain.ObjectClass{{Name: "AccountObjectClass", SecondaryIdentifier: "login", PrimaryIdentifier: "uid"}}, domain.DefaultConsistency(), confirm)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	target, err := bridge.NewNATSTarget(t.Context(), js, "target.demo", "TARGET_DEMO", bridge.SimplifiedJSON)
	if err != nil {
		t.Fatal(err)
	}
	rec := recorder{t: t, store: store, res: res}
	return &fixture{store: store, js: js, res: res, rec: rec, target: target,
		disp: bridge.NewDispatcher(store, rec, map[string]bridge.Target{"demo": target}, nil)}
}

func (f *fixture) add(t *testing.T, login string) string {
	id := storetest.NewID()
	if err := f.rec.do(t.Context(), id, domain.Add{Resource: f.res, ShadowID: id, OperationID: storetest.NewID(),
		ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {login}, "shoeSize": {int64(42)}}}); err != nil {
		t.Fatal(err)
	}
	return id
}

func (f *fixture) replayAll(t *testing.T) []*eventstore.Record {
	var recs []*eventstore.Record
	if _, err := f.store.Replay(t.Context(), 1, func(r *eventstore.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// targetMsgs reads the target's work queue without consuming it.
func (f *fixture) targetMsgs(t *testing.T) []*jetstream.RawStreamMsg {
	s, err := f.js.Stream(t.Context(), "TARGET_DEMO")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestDispatchDeliversInOrderAndOnce(t *testing.T) {
	f := setup(t, false)
	ctx := t.Context()
	a := f.add(t, "a")
	// A modify queued behind a's add, and a second shadow.
	if err := f.rec.do(ctx, a, domain.Modify{Resource: f.res, OperationID: storetest.NewID(), Changes: domain.Changes{"x": {Add: []any{"1"}}}}); err != nil {
		t.Fatal(err)
	}
	b := f.add(t, "b")
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	// a's add completed on delivery and released the modify: dispatch what the log has now.
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	// Redelivery of everything sends nothing new.
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	msgs := f.targetMsgs(t)
	if len(msgs) != 3 {
		t.Fatalf("%d messages at the target, want 3", len(msgs))
	}
	var ops []string
	for _, m := range msgs {
		h := m.Header
		if h.Get("resource") != "demo" || h.Get("attempt") != "1" || h.Get("Nats-Msg-Id") != h.Get("operationId") {
			t.Fatalf("headers %v", h)
		}
		if h.Get("shadowId") == a {
			ops = append(ops, string(m.Data[:22]))
		}
	}
	if len(ops) != 2 || ops[0] != `{"operation":"add","ob` || ops[1] != `{"operation":"modify",` {
		t.Fatalf("shadow a's requests out of order: %v", ops)
	}
	for _, id := range []string{a, b} {
		st, _, _ := f.store.Load(ctx, "demo", id)
		for _, p := range st.Data().PendingOperations {
			if p.ResultStatus != domain.ResultSuccess || p.AttemptNumber != 1 {
				t.Fatalf("%s op %s: %s attempt %d", id, p.Delta.ChangeType, p.ResultStatus, p.AttemptNumber)
			}
		}
	}
}

func TestTargetOutageLeavesOperationPendingThenRetries(t *testing.T) {
	f := setup(t, true)
	ctx := t.Context()
	if err := f.js.DeleteStream(ctx, "TARGET_DEMO"); err != nil { // nothing takes the requests now
		t.Fatal(err)
	}
	f.disp.SendTimeout = 2 * time.Second
	id := f.add(t, "a")
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	st, _, _ := f.store.Load(ctx, "demo", id)
	p := st.Data().PendingOperations[0]
	if p.Type != domain.TypeRetry || p.ExecutionStatus != domain.StatusExecuting || p.AttemptNumber != 1 ||
		p.LastError == nil || p.LastError.Category != domain.CategoryCommunication || p.Completed() {
		t.Fatalf("after a failed send: %+v", p)
	}
	// The target comes back; a forced refresh retries with attempt 2 and the same operation id.
	target, err := bridge.NewNATSTarget(ctx, f.js, "target.demo", "TARGET_DEMO", bridge.SimplifiedJSON)
	if err != nil {
		t.Fatal(err)
	}
	_ = target
	if err := f.rec.do(ctx, id, domain.Refresh{Resource: f.res, ForceRetry: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	st, _, _ = f.store.Load(ctx, "demo", id)
	p = st.Data().PendingOperations[0]
	if p.ExecutionStatus != domain.StatusExecuting || p.AttemptNumber != 2 || p.AsynchronousOperationReference != p.ID || p.LastError != nil {
		t.Fatalf("after the retry: %+v", p)
	}
	msgs := f.targetMsgs(t)
	if len(msgs) != 1 || msgs[0].Header.Get("attempt") != "2" || msgs[0].Header.Get("operationId") != p.ID {
		t.Fatalf("target got %d messages", len(msgs))
	}
}

func TestResourceWithoutTargetFailsForGood(t *testing.T) {
	f := setup(t, false)
	d := bridge.NewDispatcher(f.store, f.rec, map[string]bridge.Target{}, nil)
	id := f.add(t, "a")
	if err := d.Handle(t.Context(), f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	st, _, _ := f.store.Load(t.Context(), "demo", id)
	p := st.Data().PendingOperations[0]
	if p.ResultStatus != domain.ResultFatalError || p.LastError.Category != domain.CategoryConfiguration || !st.Dead() {
		t.Fatalf("%+v dead=%v", p, st.Dead())
	}
}

func TestRunThroughDurableConsumer(t *testing.T) {
	f := setup(t, false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = f.disp.Run(ctx) }()
	var ids []string
	for i := range 30 {
		ids = append(ids, f.add(t, fmt.Sprint("u", i)))
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, id := range ids {
		for {
			st, _, _ := f.store.Load(ctx, "demo", id)
			if st.Lifecycle() == domain.LifecycleLive {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", id, st.Lifecycle())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := len(f.targetMsgs(t)); n != 30 {
		t.Fatalf("%d messages, want 30", n)
	}
}

// After a crash, a redelivered older request can arrive after a newer one of the same shadow:
// the older operation is still sent first.
func TestDispatchKeepsShadowOrderWhenRecordsArriveOutOfOrder(t *testing.T) {
	f := setup(t, false)
	ctx := t.Context()
	id := f.add(t, "a")
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil { // the add goes out and completes
		t.Fatal(err)
	}
	var ops []string
	for _, v := range []string{"1", "2"} {
		op := storetest.NewID()
		ops = append(ops, op)
		if err := f.rec.do(ctx, id, domain.Modify{Resource: f.res, OperationID: op, Changes: domain.Changes{"x": {Replace: []any{v}}}}); err != nil {
			t.Fatal(err)
		}
	}
	recs := f.replayAll(t)
	last := recs[len(recs)-1] // the second modify: queued behind the first, nothing to send
	if err := f.disp.Handle(ctx, []*eventstore.Record{last}); err != nil {
		t.Fatal(err)
	}
	if len(f.targetMsgs(t)) != 1 {
		t.Fatal("a queued modify was sent")
	}
	if err := f.disp.Handle(ctx, recs); err != nil { // everything, redelivered: the first modify goes
		t.Fatal(err)
	}
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil { // its delivery released the second
		t.Fatal(err)
	}
	msgs := f.targetMsgs(t)
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3 (no re-sends)", len(msgs))
	}
	if msgs[1].Header.Get("operationId") != ops[0] || msgs[2].Header.Get("operationId") != ops[1] {
		t.Fatalf("modifies sent out of order: %s, %s", msgs[1].Header.Get("operationId"), msgs[2].Header.Get("operationId"))
	}
	for i, m := range msgs {
		if seq, prev := m.Header.Get("sequence"), m.Header.Get("previousSequence"); seq != fmt.Sprint(i+1) || prev != fmt.Sprint(i) {
			t.Errorf("message %d: sequence %s previousSequence %s, want %d and %d", i, seq, prev, i+1, i)
		}
	}
}

// gate is a switchable maintenance gate.
type gate struct{ on atomic.Bool }

func (g *gate) InMaintenance(context.Context, string) bool { return g.on.Load() }

// An operation released just before maintenance began is held back by the gate: nothing reaches
// the target, no attempt is counted, and the same attempt goes out once maintenance ends.
func TestGateHoldsBackReleasedAttempts(t *testing.T) {
	f := setup(t, false)
	ctx := t.Context()
	g := &gate{}
	g.on.Store(true)
	f.disp.Gate = g
	id := f.add(t, "a") // released: the resource value the decision saw was operational
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.targetMsgs(t)); n != 0 {
		t.Fatalf("%d messages reached the target in maintenance", n)
	}
	st, _, _ := f.store.Load(ctx, "demo", id)
	p := st.Data().PendingOperations[0]
	if p.ExecutionStatus != domain.StatusRequested || p.AttemptNumber != 0 || p.Completed() {
		t.Fatalf("held back: %+v", p)
	}
	h, err := f.store.History(ctx, id)
	if err != nil || !h[len(h)-1].Has("OperationPostponed") {
		t.Fatalf("no OperationPostponed in the log (%v)", err)
	}
	// Maintenance over: a refresh releases it again and the gate lets it through.
	g.on.Store(false)
	if err := f.rec.do(ctx, id, domain.Refresh{Resource: f.res}); err != nil {
		t.Fatal(err)
	}
	if err := f.disp.Handle(ctx, f.replayAll(t)); err != nil {
		t.Fatal(err)
	}
	msgs := f.targetMsgs(t)
	if len(msgs) != 1 || msgs[0].Header.Get("attempt") != "1" {
		t.Fatalf("after maintenance: %d messages", len(msgs))
	}
	st, _, _ = f.store.Load(ctx, "demo", id)
	if p := st.Data().PendingOperations[0]; p.ResultStatus != domain.ResultSuccess || p.AttemptNumber != 1 {
		t.Fatalf("after maintenance: %+v", p)
	}
}
