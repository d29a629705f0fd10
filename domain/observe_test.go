package domain

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The target's picture of an account (a reconciliation page, a notification) against the shadow:
// the cache follows the target, an account gone follows the discovery rule, and nothing that is
// still on its way is taken for drift.
func TestObserve(t *testing.T) {
	r := testResource(t, true)
	later := t0.Add(time.Hour)
	rec := "44444444-4444-4444-8444-444444444444"
	settled := live(t, r) // cache: login jack, fullName Jack Sparrow, shoeSize 42; uid u-1
	inFlight, _ := run(t, settled, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"J"}}}}, t0.Add(time.Minute))
	sent, _ := run(t, inFlight, RecordDelivery{Resource: r, OperationID: op2, Attempt: 1}, t0.Add(time.Minute))
	done, _ := run(t, sent, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}, t0.Add(2*time.Minute)) // fullName J, sequence 2 processed
	assigned := func() Shadow {
		s, _ := run(t, Shadow{}, Add{Resource: r, ShadowID: sid, OperationID: op1, ObjectClass: acct, Assigned: true,
			Attributes: Attributes{"login": {"jack"}}}, t0)
		s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0)
		s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}}, t0)
		return s
	}()
	dead, _ := run(t, settled, Observe{Resource: r, Source: SourceNotification}, later)
	proposed := added(t, r)
	full := func(attrs Attributes) Observe {
		return Observe{Resource: r, Present: true, Complete: true, Attributes: attrs, Source: SourceReconciliation, Reconciliation: rec, ObservedAt: later}
	}
	jack := Attributes{"login": {"jack"}, "fullName": {"Jack Sparrow"}, "shoeSize": {int64(42)}}
	tests := []struct {
		name   string
		s      Shadow
		c      Observe
		events []string
		attrs  Attributes // the cache after, when events change it
		err    error
		check  func(t *testing.T, s Shadow, ev []Event)
	}{
		{name: "same: nothing", s: settled, c: full(jack)},
		{name: "changed, added and removed on the target", s: settled,
			c:      full(Attributes{"login": {"jack"}, "fullName": {"Jack S."}, "mail": {"j@x"}}),
			events: []string{"AccountChanged"}, attrs: Attributes{"login": {"jack"}, "fullName": {"Jack S."}, "mail": {"j@x"}},
			check: func(t *testing.T, s Shadow, ev []Event) {
				c := ev[0].(AccountChanged)
				eq(t, "before fullName", c.Before["fullName"][0], any("Jack Sparrow"))
				eq(t, "before shoeSize (gone)", c.Before["shoeSize"][0], any(int64(42)))
				eq(t, "after mail", c.After["mail"][0], any("j@x"))
				eq(t, "after has no shoeSize", len(c.After["shoeSize"]), 0)
				eq(t, "reconciliation", c.Reconciliation, rec)
				eq(t, "still live", s.Lifecycle(), LifecycleLive)
				tc := s.Data().TargetChange
				eq(t, "the state remembers the target's change", fmt.Sprint(tc.Kind, tc.Source, tc.Reconciliation, tc.Attributes), fmt.Sprint(TargetChanged, SourceReconciliation, rec, []string{"fullName", "mail", "shoeSize"}))
				x := Explain(s, DefaultConsistency(), later)
				eq(t, "explain says the target changed it", strings.Contains(strings.Join(x.Why, "|"), "the target changed fullName, mail, shoeSize outside shadowbridge (seen by reconciliation "+rec), true)
			}},
		{name: "renamed on the target: the secondary identifier follows", s: settled,
			c: full(Attributes{"login": {"jack2"}, "fullName": {"Jack Sparrow"}, "shoeSize": {int64(42)}}), events: []string{"AccountChanged"},
			check: func(t *testing.T, s Shadow, ev []Event) {
				eq(t, "secondary identifier", s.Data().SecondaryIdentifiers["login"][0], any("jack2"))
				eq(t, "claims the new login", s.Claims()[0].Value, any("jack2"))
			}},
		{name: "a notification names only what changed", s: settled,
			c:      Observe{Resource: r, Present: true, Attributes: Attributes{"fullName": {"JS"}, "shoeSize": {}}, Source: SourceNotification},
			events: []string{"AccountChanged"}, attrs: Attributes{"login": {"jack"}, "fullName": {"JS"}}},
		{name: "nothing is compared while an operation is on its way", s: inFlight,
			c: full(Attributes{"login": {"jack"}, "fullName": {"Jack Sparrow"}, "shoeSize": {int64(43)}})},
		{name: "nor once the transport has it", s: sent,
			c: full(Attributes{"login": {"jack"}, "fullName": {"Jack Sparrow"}, "shoeSize": {int64(43)}})},
		{name: "a listing from before the target processed the last request sent", s: done,
			c: Observe{Resource: r, Present: true, Complete: true, Attributes: jack, AppliedSequence: 1, Source: SourceReconciliation}},
		{name: "a page listed before the modify was applied", s: done,
			c: Observe{Resource: r, Present: true, Complete: true, Attributes: jack, ObservedAt: t0.Add(90 * time.Second), Source: SourceReconciliation}},
		{name: "the target processed the modify: its picture counts", s: done,
			c:      Observe{Resource: r, Present: true, Complete: true, Attributes: jack, AppliedSequence: 2, Source: SourceReconciliation},
			events: []string{"AccountChanged"}, attrs: jack},
		{name: "an add not yet at the target is not missing", s: proposed, c: Observe{Resource: r, Source: SourceReconciliation, ObservedAt: later}},
		{name: "gone on the target: the shadow dies", s: settled, c: Observe{Resource: r, Source: SourceReconciliation, Reconciliation: rec},
			events: []string{"AccountGone"}, check: func(t *testing.T, s Shadow, ev []Event) {
				eq(t, "dead", s.Dead(), true)
				eq(t, "source", ev[0].(AccountGone).Source, SourceReconciliation)
				x := Explain(s, DefaultConsistency(), later)
				eq(t, "explain says the target deleted it", strings.Contains(x.Why[0], "dead since") && strings.Contains(x.Why[0], "the account is gone from the target, deleted outside shadowbridge (seen by reconciliation"), true)
			}},
		{name: "gone on the target and assigned: created again", s: assigned,
			c:      Observe{Resource: r, Source: SourceNotification, RecreateOperationID: op3},
			events: []string{"RecreateRequested", "DispatchRequested"}, check: func(t *testing.T, s Shadow, ev []Event) {
				eq(t, "not dead", s.Dead(), false)
				p, ok := s.Operation(op3)
				eq(t, "re-creating add", ok && p.Delta.ChangeType == ChangeAdd, true)
			}},
		{name: "assigned and gone needs the re-creating operation's id", s: assigned, c: Observe{Resource: r, Source: SourceNotification}, err: ErrInvalidID},
		{name: "a dead shadow's account is there: it needs a shadow of its own", s: dead, c: full(jack), err: ErrShadowDead},
		{name: "a dead shadow's account is gone: nothing", s: dead, c: Observe{Resource: r, Source: SourceReconciliation}},
		{name: "no shadow", s: Shadow{}, c: full(jack), err: ErrShadowNotFound},
		{name: "unknown source", s: settled, c: Observe{Resource: r, Present: true, Source: "gossip"}, err: ErrInvalidCommand},
		{name: "primary identifiers for a shadow without", s: func() Shadow {
			s, _ := run(t, added(t, r), RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0)
			s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, t0)
			return s
		}(), c: Observe{Resource: r, Present: true, Attributes: Attributes{"login": {"jack"}}, PrimaryIdentifiers: Attributes{"uid": {"u-9"}}, Source: SourceNotification},
			events: []string{"AccountChanged"}, check: func(t *testing.T, s Shadow, _ []Event) {
				eq(t, "uid", s.Data().PrimaryIdentifiers["uid"][0], any("u-9"))
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decide(tc.s, tc.c, later)
			if tc.err != nil || err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			eqTypes(t, withoutTimers(ev), tc.events...)
			after := Fold(tc.s, ev)
			if tc.attrs != nil && !sameAttributes(after.Data().Attributes, tc.attrs) {
				t.Errorf("cache %v, want %v", after.Data().Attributes, tc.attrs)
			}
			if tc.check != nil {
				tc.check(t, after, ev)
			}
		})
	}
}

func withoutTimers(ev []Event) []Event {
	var out []Event
	for _, e := range ev {
		switch e.(type) {
		case TimerSet, TimerCleared:
		default:
			out = append(out, e)
		}
	}
	return out
}
