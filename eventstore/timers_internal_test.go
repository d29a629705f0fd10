package eventstore

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// timerRaceStore opens a store on a fresh embedded server and returns a function that appends a
// commit with one event to shadow id's subject and returns its record.
func timerRaceStore(t *testing.T, id string) (*Store, func(domain.Event) *Record) {
	t.Helper()
	srv := natstest.Start(t)
	s, err := Open(t.Context(), srv.Connect(t), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	publish := func(e domain.Event) *Record {
		data, err := EncodeCommit("", []domain.Event{e}, domain.Shadow{})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(s.Subject("demo", id))
		m.Data = data
		m.Header.Set(HeaderEventType, e.EventType())
		ack, err := s.js.PublishMsg(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.RecordAt(t.Context(), ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return s, publish
}

// once runs fn the first time the armer reaches op, between its read of the schedule and its write.
func once(s *Store, op string, fn func()) {
	done := false
	s.timerRace = func(at string) {
		if at == op && !done {
			done = true
			fn()
		}
	}
}

// The interleaving that lost a retention timer in a CI soak, played step by step: instance A
// applies a stale record's cancel (a record a crashed instance had taken, redelivered) and, between
// reading the shadow's schedule and removing it, instance B applies a newer record's TimerSet.
// The newer schedule must survive. (The armer before this test looked for a newer record of the
// shadow and then purged the whole timer subject: B's schedule, stored between the two, was
// purged.)
func TestStaleCancelRacingANewerArm(t *testing.T) {
	ctx := t.Context()
	id := "11111111-1111-4111-8111-111111111111"
	s, publish := timerRaceStore(t, id)
	nop := func(string) {}
	first := publish(domain.TimerSet{At: time.Now().Add(time.Hour), Time: time.Now()})
	if err := s.ApplyTimers(ctx, first, nop); err != nil {
		t.Fatal(err)
	}
	stale := publish(domain.TimerCleared{Time: time.Now()})
	at := time.Now().Add(24 * time.Hour).UTC()
	newer := publish(domain.TimerSet{At: at, Time: time.Now()})

	var counted []string
	once(s, "cancel", func() {
		if err := s.ApplyTimers(ctx, newer, nop); err != nil { // B, in the moment
			t.Error(err)
		}
	})
	if err := s.ApplyTimers(ctx, stale, func(w string) { counted = append(counted, w) }); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.ArmedTimer(ctx, "demo", id); err != nil || !ok || !got.Equal(at) {
		t.Fatalf("armed %v %v %v, want the newer record's %v", got, ok, err, at)
	}
	if len(counted) != 1 || counted[0] != "stale" {
		t.Fatalf("the stale cancel counted %v, want [stale]", counted)
	}
}

// A stale TimerSet racing a newer one: the older time must not replace the newer schedule,
// whichever of the two reads first.
func TestStaleArmRacingANewerArm(t *testing.T) {
	ctx := t.Context()
	id := "22222222-2222-4222-8222-222222222222"
	s, publish := timerRaceStore(t, id)
	nop := func(string) {}
	stale := publish(domain.TimerSet{At: time.Now().Add(time.Minute), Time: time.Now()})
	at := time.Now().Add(24 * time.Hour).UTC()
	newer := publish(domain.TimerSet{At: at, Time: time.Now()})

	once(s, "arm", func() {
		if err := s.ApplyTimers(ctx, newer, nop); err != nil {
			t.Error(err)
		}
	})
	if err := s.ApplyTimers(ctx, stale, nop); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.ArmedTimer(ctx, "demo", id); err != nil || !ok || !got.Equal(at) {
		t.Fatalf("armed %v %v %v, want the newer record's %v", got, ok, err, at)
	}
	// Applied late without a race, the stale record is skipped as well.
	s.timerRace = nil
	if err := s.ApplyTimers(ctx, stale, nop); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.ArmedTimer(ctx, "demo", id); !got.Equal(at) {
		t.Fatalf("a stale record applied late re-armed %v over %v", got, at)
	}
}

// A newer cancel racing a stale arm's write: the cancel removes only what it read, and the
// newest decision's schedule is the one left when both orders are played.
func TestNewerCancelWinsOverAnOlderSchedule(t *testing.T) {
	ctx := t.Context()
	id := "33333333-3333-4333-8333-333333333333"
	s, publish := timerRaceStore(t, id)
	nop := func(string) {}
	set := publish(domain.TimerSet{At: time.Now().Add(time.Hour), Time: time.Now()})
	if err := s.ApplyTimers(ctx, set, nop); err != nil {
		t.Fatal(err)
	}
	cleared := publish(domain.TimerCleared{Time: time.Now()})
	if err := s.ApplyTimers(ctx, cleared, nop); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ArmedTimer(ctx, "demo", id); err != nil || ok {
		t.Fatalf("the newest record cancelled, yet a timer is armed (%v)", err)
	}
	// The legacy schedule of an older build (no commit named) is older than any record.
	if err := s.ArmTimer(ctx, "demo", id, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyTimers(ctx, cleared, nop); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.ArmedTimer(ctx, "demo", id); ok {
		t.Fatal("a cancel left an older build's schedule armed")
	}
}
