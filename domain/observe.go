package domain

import (
	"fmt"
	"slices"
	"time"
)

// OperationList is the request a reconciliation run sends the target: list your accounts
// (TargetRequest.Operation; the run's id is the request's operation id).
const OperationList ChangeType = "list"

// Where an observation of the target comes from (AccountChanged.Source, AccountGone.Source,
// RecreateRequested.Source).
const (
	SourceReconciliation = "reconciliation" // a page of a reconciliation run's listing
	SourceNotification   = "notification"   // the target's own change notification
)

// Observe carries what the target holds for one account, as a reconciliation page lists it or a
// change notification tells it, to the shadow that names the account. It is midPoint's
// consistency mechanism in the direction from the resource to the repository: the attribute
// cache follows the target, and a shadow whose account is gone follows the discovery rule.
type Observe struct {
	Resource Resource
	// Present says the target has the account; false says it does not (a delete notification,
	// or a complete listing without it).
	Present bool
	// Attributes are the account's attributes as the target holds them: all of them when
	// Complete (a listing, an add notification), otherwise only the ones that changed (a modify
	// notification). An attribute with no values is absent on the target.
	Attributes Attributes
	Complete   bool
	// PrimaryIdentifiers the target gave the account (optional): a shadow without any takes them.
	PrimaryIdentifiers Attributes
	// AppliedSequence is the sequence (DispatchRequested.Sequence) of the last request of this
	// shadow the target had processed when it read the account; 0 when the target does not say.
	AppliedSequence int64
	// ObservedAt is when the target read the account (a page's listing time, a notification's);
	// zero when unknown.
	ObservedAt time.Time
	// Source is SourceReconciliation or SourceNotification; Reconciliation names the run.
	Source         string
	Reconciliation string
	// RecreateOperationID is the id of the add that re-creates an assigned account the target
	// does not have (chosen by the caller, so that Decide stays deterministic).
	RecreateOperationID string
}

func (Observe) commandName() string  { return "observe" }
func (c Observe) resource() Resource { return c.Resource }

// ObservationRacesOperations reports why an observation of the target cannot be compared with
// the shadow: something the shadow knows may not be in what the target showed. An operation
// still on its way is never mistaken for drift:
//   - an unfinished operation (an add not yet at the target, a modify in flight, a delete
//     pending) makes the target's picture a moment old;
//   - a target that says which request it processed last (AppliedSequence) was read before a
//     request the transport has accepted since (DeliveredSequence is later);
//   - the shadow changed after the target read the account (ObservedAt): a page listed before a
//     modify was applied must not undo it.
//
// "" means the observation may be compared.
func ObservationRacesOperations(s Shadow, c Observe) string {
	d := s.d
	switch {
	case s.HasUnfinished():
		return "an operation is still on its way"
	case c.AppliedSequence > 0 && c.AppliedSequence < d.DeliveredSequence:
		return fmt.Sprintf("the target had processed request %d, the shadow has sent %d since", c.AppliedSequence, d.DeliveredSequence)
	case !c.ObservedAt.IsZero() && d.ModifyTimestamp.After(c.ObservedAt):
		return "the shadow changed after the target read the account"
	}
	return ""
}

func decideObserve(s Shadow, c Observe, now time.Time) ([]Event, error) {
	const op = "observe"
	if !s.Created() {
		return nil, wrap(op, ErrShadowNotFound, "no shadow to compare with (discover the account instead)")
	}
	if c.Source != SourceReconciliation && c.Source != SourceNotification {
		return nil, wrap(op, ErrInvalidCommand, "source %q (want %s or %s)", c.Source, SourceReconciliation, SourceNotification)
	}
	if ObservationRacesOperations(s, c) != "" {
		return nil, nil // the next observation will see it settled
	}
	if s.Dead() {
		if c.Present {
			// The account exists again (or still): it is an account without a live shadow.
			return nil, wrap(op, ErrShadowDead, "%s; the account on the target needs a shadow of its own", s.d.ShadowID)
		}
		return nil, nil
	}
	if !c.Present {
		return observeGone(s, c, now)
	}
	attrs, err := normalizeAttributes(c.Attributes)
	if err != nil {
		return nil, fmt.Errorf("%s: attributes: %w", op, err)
	}
	for name, vals := range c.Attributes {
		if len(vals) == 0 && !c.Complete {
			attrs[name] = nil // given without values: removed on the target
		}
	}
	ids, err := identifiers(c.PrimaryIdentifiers)
	if err != nil {
		return nil, fmt.Errorf("%s: primaryIdentifiers: %w", op, err)
	}
	before, after := drift(s.d.Attributes, attrs, c.Complete)
	newIDs := len(ids) > 0 && len(s.d.PrimaryIdentifiers) == 0
	if len(before)+len(after) == 0 && !newIDs {
		return nil, nil
	}
	e := AccountChanged{Source: c.Source, Reconciliation: c.Reconciliation, Before: before, After: after, Time: now}
	if newIDs {
		e.PrimaryIdentifiers = ids
	}
	return []Event{e}, nil
}

// observeGone is midPoint's discovery rule for a live shadow whose account the target does not
// have: an assigned account is created again with what the shadow holds, any other shadow dies.
func observeGone(s Shadow, c Observe, now time.Time) ([]Event, error) {
	if !s.d.Exists {
		return nil, nil // never created at the target: nothing is missing
	}
	if s.d.Assigned {
		if !ValidID(c.RecreateOperationID) {
			return nil, wrap("observe", ErrInvalidID, "the operation that re-creates an assigned account needs a UUID")
		}
		return []Event{RecreateRequested{OperationID: c.RecreateOperationID, Attributes: s.d.Attributes.Clone(), Source: c.Source, Time: now}}, nil
	}
	return []Event{AccountGone{Source: c.Source, Time: now}}, nil
}

// drift compares the cache with what the target holds: before has the cached values of every
// attribute that differs, after the target's (an attribute missing from after is gone on the
// target). With complete, an attribute the target does not list is gone; otherwise only the
// attributes given are compared (one given without values is gone).
func drift(cache, target Attributes, complete bool) (before, after Attributes) {
	before, after = Attributes{}, Attributes{}
	for name, vals := range target {
		if !slices.Equal(cache[name], vals) {
			if cur, ok := cache[name]; ok {
				before[name] = slices.Clone(cur)
			}
			if len(vals) > 0 {
				after[name] = slices.Clone(vals)
			}
		}
	}
	if complete {
		for name, vals := range cache {
			if _, listed := target[name]; !listed {
				before[name] = slices.Clone(vals)
			}
		}
	}
	if len(before) == 0 {
		before = nil
	}
	if len(after) == 0 {
		after = nil
	}
	return before, after
}
