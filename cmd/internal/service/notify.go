package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Notification is a change the target made, or saw, to one of its accounts (midPoint's
// asynchronous update, inbound): the shadow follows it.
type Notification struct {
	Resource    string
	RequestID   string
	Fingerprint string
	// Change is add (the account is there, with all of Attributes), modify (Attributes holds what
	// changed; an attribute without values is gone) or delete (the account is gone).
	Change             domain.ChangeType
	ObjectClass        string
	PrimaryIdentifiers domain.Attributes
	Attributes         domain.Attributes
	// ObservedAt is when the target read the account (zero: unknown).
	ObservedAt time.Time
}

// What a notification did to the shadows (NotifyReply.Outcome).
const (
	OutcomeChanged    = "changed"    // the cache follows the target (AccountChanged)
	OutcomeUnchanged  = "unchanged"  // the cache already held it
	OutcomeSkipped    = "skipped"    // an operation of the shadow is on its way: not compared
	OutcomeDiscovered = "discovered" // an account without a shadow: a new live shadow
	OutcomeGone       = "gone"       // the account is gone: the shadow died
	OutcomeRecreated  = "recreated"  // the account is gone and assigned: it is created again
	OutcomeUnknown    = "unknown"    // a delete of an account no live shadow holds: nothing to do
)

// NotifyReply is the answer to a notification.
type NotifyReply struct {
	ShadowID string `json:"shadowId,omitempty"`
	Outcome  string `json:"outcome"`
}

// Notify applies a change notification from the target to the shadow that holds the account
// (found by its primary identifier, else by its secondary identifier), with the same decisions
// and events as reconciliation (domain.Observe); an account no shadow holds is discovered. With
// a request id it is answered once, like every command.
func (s *Service) Notify(ctx context.Context, n Notification) (NotifyReply, error) {
	res, err := s.lookup(ctx, n.Resource)
	if err != nil {
		return NotifyReply{}, fmt.Errorf("notify: %w", err)
	}
	if err := checkNotification(res, n); err != nil {
		return NotifyReply{}, err
	}
	var reply NotifyReply
	err = s.once(ctx, n.Resource, "notify", n.RequestID, n.Fingerprint, &reply, func() (any, error) {
		return s.notify(ctx, res, n)
	})
	return reply, err
}

func checkNotification(res domain.Resource, n Notification) error {
	switch n.Change {
	case domain.ChangeAdd, domain.ChangeModify, domain.ChangeDelete:
	default:
		return fmt.Errorf("notify: %w: change %q (want add, modify or delete)", ErrBadRequest, n.Change)
	}
	if n.ObjectClass == "" {
		return fmt.Errorf("notify: %w", domain.ErrMissingObjectClass)
	}
	oc, ok := res.ObjectClass(n.ObjectClass)
	if !ok {
		return fmt.Errorf("notify: %w: %q", domain.ErrUnknownObjectClass, n.ObjectClass)
	}
	if len(n.PrimaryIdentifiers[oc.PrimaryIdentifier]) == 0 && len(n.Attributes[oc.SecondaryIdentifier]) == 0 {
		return fmt.Errorf("notify: %w: name the account by primaryIdentifiers.%s or attributes.%s", domain.ErrMissingIdentifier, oc.PrimaryIdentifier, oc.SecondaryIdentifier)
	}
	return nil
}

func (s *Service) notify(ctx context.Context, res domain.Resource, n Notification) (NotifyReply, error) {
	return s.notifyAs(ctx, res, n, domain.SourceNotification, "", 0)
}

// notifyAs applies the target's picture of one account, from a notification or a reconciliation
// run's page (source, run; appliedSequence as the target reported it).
func (s *Service) notifyAs(ctx context.Context, res domain.Resource, n Notification, source, run string, appliedSequence int64) (NotifyReply, error) {
	now := s.now()
	shadowID, err := s.holder(ctx, res, n)
	if err != nil {
		return NotifyReply{}, err
	}
	if shadowID != "" {
		obs := observation(res, n, source, run, appliedSequence)
		out, err := s.Update(ctx, n.Resource, shadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(st, obs, now)
		})
		switch {
		case errors.Is(err, domain.ErrShadowDead):
			// The shadow died meanwhile: the account is one without a shadow.
		case err != nil:
			return NotifyReply{}, fmt.Errorf("notify: %w", err)
		default:
			return NotifyReply{ShadowID: shadowID, Outcome: observed(out, obs)}, nil
		}
	}
	if n.Change == domain.ChangeDelete {
		return NotifyReply{Outcome: OutcomeUnknown}, nil
	}
	id := NewID()
	if _, err := s.Update(ctx, n.Resource, id, "", func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, domain.Discover{Resource: res, ShadowID: id, ObjectClass: n.ObjectClass,
			Attributes: n.Attributes, PrimaryIdentifiers: n.PrimaryIdentifiers, Cause: source}, now)
	}); err != nil {
		return NotifyReply{}, fmt.Errorf("notify: discover: %w", err)
	}
	return NotifyReply{ShadowID: id, Outcome: OutcomeDiscovered}, nil
}

// observation is the command that makes a shadow follow the target's picture n of its account.
func observation(res domain.Resource, n Notification, source, run string, appliedSequence int64) domain.Observe {
	return domain.Observe{Resource: res, Present: n.Change != domain.ChangeDelete, Complete: n.Change == domain.ChangeAdd,
		Attributes: n.Attributes, PrimaryIdentifiers: n.PrimaryIdentifiers, Source: source, Reconciliation: run,
		AppliedSequence: appliedSequence, ObservedAt: n.ObservedAt, RecreateOperationID: NewID()}
}

// holder finds the live shadow holding the notified account: by its primary identifier, else by
// its secondary identifier ("" if none).
func (s *Service) holder(ctx context.Context, res domain.Resource, n Notification) (string, error) {
	oc, _ := res.ObjectClass(n.ObjectClass)
	for _, id := range []struct {
		attr string
		vals []any
	}{{oc.PrimaryIdentifier, n.PrimaryIdentifiers[oc.PrimaryIdentifier]}, {oc.SecondaryIdentifier, n.Attributes[oc.SecondaryIdentifier]}} {
		if id.attr == "" || len(id.vals) == 0 {
			continue
		}
		shadowID, err := s.Resolve(ctx, res.Name(), n.ObjectClass, domain.Attributes{id.attr: id.vals[:1]})
		if errors.Is(err, domain.CategoryNotFound) {
			continue
		}
		return shadowID, err
	}
	return "", nil
}

// observed names what an observation did.
func observed(out Outcome, obs domain.Observe) string {
	for _, e := range out.Events {
		switch e.(type) {
		case domain.AccountChanged:
			return OutcomeChanged
		case domain.AccountGone:
			return OutcomeGone
		case domain.RecreateRequested:
			return OutcomeRecreated
		}
	}
	if domain.ObservationRacesOperations(out.Shadow, obs) != "" {
		return OutcomeSkipped
	}
	return OutcomeUnchanged
}

// once answers a request id once for a decision whose reply is a JSON value (reply points to
// it): a completed record answers at once; another attempt's young reservation is waited for;
// otherwise the id is reserved, decide runs, and its reply is recorded. A decision that fails
// drops the reservation, so a retry decides afresh. Without a request id, decide just runs.
func (s *Service) once(ctx context.Context, resource, verb, requestID, fingerprint string, reply any, decide func() (any, error)) error {
	set := func(v any) error {
		b, _ := json.Marshal(v)
		return json.Unmarshal(b, reply)
	}
	if requestID == "" {
		v, err := decide()
		if err != nil {
			return err
		}
		return set(v)
	}
	if err := domain.CheckRequestID(requestID); err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	req := Request{Verb: verb, Resource: resource, RequestID: requestID, Fingerprint: fingerprint}
	rec, err := s.store.GetRequest(ctx, resource, requestID)
	if err == nil && rec == nil {
		var made bool
		rec, made, err = s.store.ReserveRequest(ctx, resource, requestID, eventstore.RequestRecord{Fingerprint: fingerprint})
		if made {
			return s.decideOnce(ctx, req, rec, reply, decide)
		}
	}
	if err == nil {
		rec, err = s.await(ctx, req, rec)
	}
	if err != nil {
		return err
	}
	if rec != nil && rec.Fingerprint != "" && fingerprint != "" && rec.Fingerprint != fingerprint {
		return fmt.Errorf("%s: %w: %q", verb, ErrRequestIDReused, requestID)
	}
	switch {
	case rec == nil: // dropped meanwhile (its decision failed): decide afresh
		return s.once(ctx, resource, verb, requestID, fingerprint, reply, decide)
	case rec.Refused != nil:
		return rec.Refused.Err()
	case !rec.Pending():
		if err := json.Unmarshal(rec.Reply, reply); err != nil {
			return fmt.Errorf("%w: request record: %w", eventstore.ErrCorrupt, err)
		}
		return nil
	}
	// Left by an attempt that died: decide again (a decision on the target's picture is the
	// same decision twice).
	return s.decideOnce(ctx, req, rec, reply, decide)
}

// decideOnce runs decide for the reservation rec and records its reply.
func (s *Service) decideOnce(ctx context.Context, req Request, rec *eventstore.RequestRecord, reply any, decide func() (any, error)) error {
	v, err := decide()
	if err != nil {
		_ = s.store.DropRequest(context.WithoutCancel(ctx), req.Resource, req.RequestID, *rec)
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	done := eventstore.RequestRecord{Fingerprint: req.Fingerprint, Reply: b, Revision: rec.Revision}
	if err := s.store.PutRequest(ctx, req.Resource, req.RequestID, done); err != nil {
		s.log.Warn("request record not completed; a retry decides again", "requestId", req.RequestID, "err", err)
	}
	return json.Unmarshal(b, reply)
}
