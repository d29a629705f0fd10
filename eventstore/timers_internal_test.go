package eventstore

import (
	"slices"
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

// Each instance guesses a shadow's schedule from what it last wrote or read (no read before an
// arming); a guess made stale by another instance or by a firing must cost a retry, never a
// schedule replaced by an older decision or left behind by a newer one.
func TestStaleScheduleGuessesAreCaught(t *testing.T) {
	ctx := t.Context()
	id := "44444444-4444-4444-8444-444444444444"
	a, publish := timerRaceStore(t, id)
	b, err := Open(ctx, a.nc, a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var counted []string
	count := func(w string) { counted = append(counted, w) }
	apply := func(s *Store, r *Record) {
		t.Helper()
		if err := s.ApplyTimers(ctx, r, count); err != nil {
			t.Fatal(err)
		}
	}
	armed := func(want time.Time) {
		t.Helper()
		got, ok, err := a.ArmedTimer(ctx, "demo", id)
		if err != nil || ok != !want.IsZero() || (ok && !got.Equal(want)) {
			t.Fatalf("armed %v %v %v, want %v", got, ok, err, want)
		}
	}
	at := func(h int) time.Time { return time.Now().Add(time.Duration(h) * time.Hour).UTC() }
	t1, t2, t3, t5 := at(1), at(2), at(3), at(5)
	r1 := publish(domain.TimerSet{At: t1, Time: time.Now()})
	r2 := publish(domain.TimerSet{At: t2, Time: time.Now()})
	r3 := publish(domain.TimerSet{At: t3, Time: time.Now()})
	r4 := publish(domain.TimerCleared{Time: time.Now()})
	r5 := publish(domain.TimerSet{At: t5, Time: time.Now()})

	apply(a, r1) // A remembers r1's schedule
	armed(t1)
	apply(b, r3) // B replaces it: A's guess is now stale
	armed(t3)
	apply(a, r2) // A's write expects r1's schedule and fails; A reads: r3's is newer
	armed(t3)
	apply(b, r4) // B deletes the schedule it wrote
	armed(time.Time{})
	apply(a, r5) // A's guess (r3's schedule) is gone: its write fails, it reads, arms
	armed(t5)
	apply(b, r4) // redelivered late to B, which believes there is none: it reads
	armed(t5)
	if want := []string{"armed", "armed", "stale", "cancelled", "armed", "stale"}; !slices.Equal(counted, want) {
		t.Fatalf("counted %v, want %v", counted, want)
	}

	// A firing removes the schedule behind A's back: the next arming finds its guess wrong.
	cur, err := a.currentSchedule(ctx, a.TimerSubject("demo", id), false)
	if err != nil || cur == nil {
		t.Fatalf("schedule %v %v", cur, err)
	}
	if ok, err := a.deleteSeq(ctx, cur.seq); !ok || err != nil {
		t.Fatalf("delete %v %v", ok, err)
	}
	t4 := time.Now().Add(4 * time.Hour).UTC()
	apply(a, publish(domain.TimerSet{At: t4, Time: time.Now()}))
	armed(t4)
}
