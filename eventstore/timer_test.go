package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// A timer fires onto the due subject at its time (the server checks every 250 ms at most);
// re-arming replaces it, cancelling removes it, and an armed timer survives a server restart.
func TestTimers(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	s, err := eventstore.Open(ctx, srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	fired := make(chan *eventstore.Record, 10)
	sub := func(s *eventstore.Store, ctx context.Context) {
		go func() {
			_ = s.SubscribeSharded(ctx, "timers-test", eventstore.SubscribeOptions{Filter: "prov.due.>", Workers: 2},
				func(_ context.Context, r *eventstore.Record) error { fired <- r; return nil })
		}()
	}
	sctx, cancel := context.WithCancel(ctx)
	sub(s, sctx)
	a, b, c := storetest.NewID(), storetest.NewID(), storetest.NewID()
	start := time.Now()
	if err := s.ArmTimer(ctx, "demo", a, start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.ArmTimer(ctx, "demo", a, start.Add(500*time.Millisecond)); err != nil { // re-armed earlier
		t.Fatal(err)
	}
	if err := s.ArmTimer(ctx, "demo", b, start.Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelTimer(ctx, "demo", b); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-fired:
		late := time.Since(start.Add(500 * time.Millisecond))
		if r.ShadowID != a || r.Resource != "demo" || late < 0 || late > 2*time.Second {
			t.Fatalf("fired %s/%s, %s late", r.Resource, r.ShadowID, late)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the timer did not fire")
	}
	select {
	case r := <-fired:
		t.Fatalf("a cancelled or replaced timer fired: %s", r.ShadowID)
	case <-time.After(time.Second):
	}
	// Armed, then the server restarts before it is due: it still fires.
	if err := s.ArmTimer(ctx, "demo", c, time.Now().Add(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	cancel()
	srv.Shutdown()
	srv.WaitForShutdown()
	srv2 := natstest.StartIn(t, srv.Dir)
	s2, err := eventstore.Open(ctx, srv2.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	sub(s2, ctx)
	select {
	case r := <-fired:
		if r.ShadowID != c {
			t.Fatalf("fired %s, want %s", r.ShadowID, c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the timer did not survive the restart")
	}
	_ = jetstream.ErrMsgNotFound
}

// A cancel redelivered after a newer record of its shadow (a crashed instance's record, handed to
// the other instance after AckWait) does not purge the newer record's schedule; the latest
// record's cancel still cancels.
func TestStaleCancelKeepsTheNewerSchedule(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	s, err := eventstore.Open(ctx, srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	id := storetest.NewID()
	publish := func(e domain.Event) {
		data, err := eventstore.EncodeCommit("", []domain.Event{e}, domain.Shadow{})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(s.Subject("demo", id))
		m.Data = data
		m.Header.Set(eventstore.HeaderEventType, e.EventType())
		if _, err := s.JetStream().PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().Add(time.Hour).UTC()
	publish(domain.TimerCleared{Time: time.Now()})
	publish(domain.TimerSet{At: at, Time: time.Now()})
	recs, err := s.History(ctx, id)
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d records: %v", len(recs), err)
	}
	nop := func(string) {}
	if err := s.ApplyTimers(ctx, recs[1], nop); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyTimers(ctx, recs[0], nop); err != nil { // the stale cancel, applied late
		t.Fatal(err)
	}
	if got, ok, err := s.ArmedTimer(ctx, "demo", id); err != nil || !ok || !got.Equal(at) {
		t.Fatalf("armed %v %v %v, want %v", got, ok, err, at)
	}
	publish(domain.TimerCleared{Time: time.Now()})
	if recs, err = s.History(ctx, id); err != nil || len(recs) != 3 {
		t.Fatalf("%d records: %v", len(recs), err)
	}
	if err := s.ApplyTimers(ctx, recs[2], nop); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.ArmedTimer(ctx, "demo", id); err != nil || ok {
		t.Fatalf("the latest cancel left %v armed (%v)", got, err)
	}
}
