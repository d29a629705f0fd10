package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"shadowbridge/bridge"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Request is a provisioning request (add, modify or delete) after decoding.
type Request struct {
	Verb     string
	Resource string
	// ShadowID of the target shadow; for add, empty (a new one is made).
	ShadowID  string
	RequestID string
	// Fingerprint identifies the request's content for request-id reuse checks.
	Fingerprint string
	ObjectClass string
	Attributes  domain.Attributes
	Assigned    bool
	// Identifiers address the shadow of a modify or delete when ShadowID is empty.
	Identifiers domain.Attributes
	Changes     domain.Changes
	// Order is the order in which the request named its attributes or changes.
	Order []string
}

// ErrRequestIDReused: the request id was used before for a different request.
var ErrRequestIDReused = &domain.Error{Category: domain.CategoryConflict, Message: "requestId already used for a different request"}

// errStored: the shadow already holds the operation this request creates (an earlier attempt of
// the request was stored); the answer comes from that commit.
var errStored = errors.New("request already stored")

// Provision runs an add, modify or delete. With a request id it is idempotent for as long as the
// shadow's history exists: the same request id and content always get the first reply and one
// set of events, whatever the crash point, long after JetStream's dedup window (see
// docs/design.md, "Request ids").
func (s *Service) Provision(ctx context.Context, req Request) (Reply, error) {
	if err := domain.CheckRequestID(req.RequestID); err != nil {
		return Reply{}, fmt.Errorf("%s: %w", req.Verb, err) // before it reaches an index key or a header
	}
	res, err := s.lookup(ctx, req.Resource)
	if err != nil {
		return Reply{}, fmt.Errorf("%s: %w", req.Verb, err)
	}
	shadowID, opID := req.ShadowID, NewID()
	// A new add's shadow id was made just now: nothing can be stored under it, so the unit of
	// work starts from the empty shadow instead of loading it (one round trip less per add).
	var known *eventstore.Known
	if req.Verb == "add" {
		shadowID, known = NewID(), &eventstore.Known{}
	}
	if req.RequestID != "" {
		rec, err := s.store.GetRequest(ctx, req.Resource, req.RequestID)
		if err == nil {
			rec, err = s.await(ctx, req, rec)
		}
		if err != nil {
			return Reply{}, err
		}
		if rec != nil {
			if reply, done, err := s.answer(ctx, rec, req); done || err != nil {
				return reply, err
			}
			shadowID, opID, known = rec.ShadowID, rec.OperationID, nil
		}
	}
	for range 4 {
		if shadowID == "" {
			// Addressed by identifiers: resolved after the request id is looked at, so that a
			// retry of a request whose shadow is gone since still gets its first reply.
			if shadowID, err = s.Resolve(ctx, req.Resource, req.ObjectClass, req.Identifiers); err != nil {
				if req.RequestID == "" || !domain.IsRefusal(err) {
					return Reply{}, err
				}
				reply, err := s.refuse(ctx, req, "", opID, 0, err)
				var adopt *eventstore.AdoptError
				if errors.As(err, &adopt) {
					shadowID, opID, known = adopt.Record.ShadowID, adopt.Record.OperationID, nil
					continue
				}
				return reply, err
			}
		}
		reply, err := s.decideRequest(ctx, req, res, shadowID, opID, known)
		var adopt *eventstore.AdoptError
		if err != nil && req.RequestID != "" && !errors.As(err, &adopt) {
			// Another attempt of this request may have reserved and stored its decision between
			// our look at the request id and our load (a retry racing the first attempt on
			// another instance): its decision then made ours fail ("delete already pending").
			// The reservation says so; answer as that attempt.
			if rec, gerr := s.store.GetRequest(ctx, req.Resource, req.RequestID); gerr == nil && rec != nil &&
				(rec.ShadowID != shadowID || rec.OperationID != opID) {
				adopt = &eventstore.AdoptError{Record: rec}
				err = adopt
			}
		}
		if errors.As(err, &adopt) {
			rec, err := s.await(ctx, req, adopt.Record)
			if err != nil {
				return Reply{}, err
			}
			if rec == nil {
				continue // dropped meanwhile: decide again
			}
			if reply, done, err := s.answer(ctx, rec, req); done || err != nil {
				return reply, err
			}
			shadowID, opID, known = rec.ShadowID, rec.OperationID, nil
			continue
		}
		return reply, err
	}
	return Reply{}, fmt.Errorf("%s: %w: request id %q: too many concurrent attempts", req.Verb, eventstore.ErrConflict, req.RequestID)
}

// decideRequest decides the request with the given ids, appends it (reserving the request id
// first) and completes the request record. known, when set, is the shadow's state as the caller
// knows it (see eventstore.UpdateOptions.Known).
func (s *Service) decideRequest(ctx context.Context, req Request, res domain.Resource, shadowID, opID string, known *eventstore.Known) (Reply, error) {
	var cmd domain.Command
	tp := bridge.TraceParent(ctx) // the command's span: the operation's attempts join its trace
	switch req.Verb {
	case "add":
		cmd = domain.Add{Resource: res, ShadowID: shadowID, OperationID: opID, RequestID: req.RequestID,
			ObjectClass: req.ObjectClass, Attributes: req.Attributes, Order: req.Order, Assigned: req.Assigned, TraceParent: tp}
	case "modify":
		cmd = domain.Modify{Resource: res, OperationID: opID, RequestID: req.RequestID, Changes: req.Changes, Order: req.Order, TraceParent: tp}
	case "delete":
		cmd = domain.Delete{Resource: res, OperationID: opID, RequestID: req.RequestID, TraceParent: tp}
	default:
		return Reply{}, fmt.Errorf("%w: unknown verb %q", domain.ErrInvalidCommand, req.Verb)
	}
	var reserve *eventstore.RequestRecord
	if req.RequestID != "" {
		reserve = &eventstore.RequestRecord{Fingerprint: req.Fingerprint, ShadowID: shadowID, OperationID: opID}
	}
	now := s.now()
	out, err := s.update(ctx, eventstore.UpdateOptions{Resource: req.Resource, ShadowID: shadowID, RequestID: req.RequestID, Reserve: reserve, Known: known,
		Decide: func(st domain.Shadow) ([]domain.Event, error) {
			if _, ok := st.Operation(opID); ok && req.RequestID != "" {
				return nil, errStored
			}
			return domain.Decide(st, cmd, now)
		}})
	var reply Reply
	switch {
	case errors.Is(err, errStored):
		rec, ferr := s.findCommit(ctx, shadowID, req.RequestID)
		if ferr != nil {
			return Reply{}, ferr
		}
		if rec == nil {
			return Reply{}, fmt.Errorf("%s: %w: operation %s is stored but no commit of request %q was found", req.Verb, eventstore.ErrCorrupt, opID, req.RequestID)
		}
		if reply, err = replyFromRecord(rec); err != nil {
			return Reply{}, err
		}
		out.Seq = rec.Seq
	case err != nil && req.RequestID != "" && domain.IsRefusal(err):
		return s.refuse(ctx, req, shadowID, opID, reserve.Revision, err)
	case err != nil:
		return Reply{}, err
	case len(out.Events) == 0 && req.Verb != "add":
		// avoidDuplicateOperations: the same change is pending; answer with it.
		dup, _ := out.Shadow.PendingDuplicate(domain.ChangeType(req.Verb), req.Changes)
		reply = replyFor(out.Shadow, dup.ID)
	default:
		reply = replyFor(out.Shadow, opID)
	}
	if req.RequestID != "" {
		s.complete(ctx, req, shadowID, opID, reply, out.Seq, reserve.Revision)
	}
	return reply, nil
}

// complete stores the reply of a request id (rev: the reservation's revision, 0 if unknown). A
// failure is logged, not returned: the pending record and the commit already answer any retry
// the same way.
func (s *Service) complete(ctx context.Context, req Request, shadowID, opID string, reply Reply, seq, rev uint64) {
	b, _ := json.Marshal(reply)
	rec := eventstore.RequestRecord{Fingerprint: req.Fingerprint, Reply: b, Seq: seq, ShadowID: shadowID, OperationID: opID, Revision: rev}
	if err := s.store.PutRequest(ctx, req.Resource, req.RequestID, rec); err != nil {
		s.log.Warn("request record not completed; its pending record answers retries", "requestId", req.RequestID, "err", err)
	}
}

// ReservationWait is how long an attempt of a request waits for another attempt's fresh
// reservation to be completed before deciding with its ids itself. Twins (the same request sent
// twice at once, to one instance or two) thus get the one decision: deciding both at once, one
// could be refused and the other carried out when the state changed between them (an
// identifier freed a moment later). A reservation older than this is taken for an attempt that
// died (a crash): the request is decided again with its ids, as before.
const ReservationWait = 5 * time.Second

// await waits while rec is a pending reservation younger than ReservationWait, and returns the
// record as it is then (nil if it was dropped).
func (s *Service) await(ctx context.Context, req Request, rec *eventstore.RequestRecord) (*eventstore.RequestRecord, error) {
	for pause := 2 * time.Millisecond; rec != nil && rec.Pending() && s.now().Sub(rec.Since) < ReservationWait; pause = min(2*pause, 50*time.Millisecond) {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w: request id %q is being decided by another attempt; send it again: %w", req.Verb, domain.CategoryCommunication, req.RequestID, ctx.Err())
		case <-time.After(pause):
		}
		var err error
		if rec, err = s.store.GetRequest(ctx, req.Resource, req.RequestID); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// refuse records a refusal as the request id's answer before it is given (rev: the reservation
// the refused attempt made, 0 if none) and answers with whatever the record holds then: this
// refusal, the answer of an attempt that completed first, or an *AdoptError for another attempt's
// reservation. A refusal that cannot be recorded is not given: the client is told to try again
// (503), and the retry decides afresh.
func (s *Service) refuse(ctx context.Context, req Request, shadowID, opID string, rev uint64, cause error) (Reply, error) {
	cat := CategoryOf(cause)
	rec := eventstore.RequestRecord{Fingerprint: req.Fingerprint, ShadowID: shadowID, OperationID: opID, Revision: rev,
		Refused: &eventstore.Refusal{Category: cat, Message: cause.Error()}}
	cur, written, err := s.store.RefuseRequest(ctx, req.Resource, req.RequestID, rec)
	if err != nil {
		return Reply{}, fmt.Errorf("%s: %w: the refusal (%v) could not be recorded: %w", req.Verb, domain.CategoryCommunication, cause, err)
	}
	if written {
		return Reply{}, cause
	}
	if cur.Pending() {
		return Reply{}, &eventstore.AdoptError{Record: cur}
	}
	reply, _, err := s.answer(ctx, cur, req)
	return reply, err
}

// answer answers a request from its record when it can: done is true with the first reply (or an
// error for a reused request id with another body). A pending record whose commit is not in the
// shadow's history is not done: the caller decides again with the record's ids.
func (s *Service) answer(ctx context.Context, rec *eventstore.RequestRecord, req Request) (Reply, bool, error) {
	if rec.Fingerprint != "" && req.Fingerprint != "" && rec.Fingerprint != req.Fingerprint {
		return Reply{}, true, fmt.Errorf("%s: %w: %q", req.Verb, ErrRequestIDReused, req.RequestID)
	}
	if rec.Refused != nil {
		return Reply{}, true, rec.Refused.Err()
	}
	if !rec.Pending() {
		var r Reply
		if err := json.Unmarshal(rec.Reply, &r); err != nil {
			return Reply{}, true, fmt.Errorf("%w: request record: %w", eventstore.ErrCorrupt, err)
		}
		return r, true, nil
	}
	c, err := s.findCommit(ctx, rec.ShadowID, req.RequestID)
	if err != nil || c == nil {
		return Reply{}, err != nil, err
	}
	reply, err := replyFromRecord(c)
	if err != nil {
		return Reply{}, true, err
	}
	s.complete(ctx, req, rec.ShadowID, rec.OperationID, reply, c.Seq, rec.Revision)
	return reply, true, nil
}

// findCommit returns the commit of a request id in a shadow's history, or nil. It reads the whole
// history: it runs only for a request whose earlier attempt crashed before its reply was stored.
func (s *Service) findCommit(ctx context.Context, shadowID, requestID string) (*eventstore.Record, error) {
	if shadowID == "" {
		return nil, nil
	}
	recs, err := s.store.History(ctx, shadowID)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if id, err := r.RequestID(); err == nil && id == requestID {
			return r, nil
		}
	}
	return nil, nil
}

// replyFromRecord rebuilds the reply of a stored commit: the shadow as the commit left it.
func replyFromRecord(rec *eventstore.Record) (Reply, error) {
	ev, err := rec.Events()
	if err != nil {
		return Reply{}, err
	}
	st, err := rec.State()
	if err != nil {
		return Reply{}, err
	}
	for _, e := range ev {
		switch e.(type) {
		case domain.AddRequested, domain.ModifyRequested, domain.DeleteRequested:
			return replyFor(st, domain.EventOperationID(e)), nil
		}
	}
	return Reply{ShadowID: st.ID()}, nil
}

// Resolve finds the live shadow holding an identifier: {attribute: [value]} naming the secondary or
// primary identifier of one of the resource's object classes (objectClass narrows the search).
func (s *Service) Resolve(ctx context.Context, resource, objectClass string, ids domain.Attributes) (string, error) {
	res, err := s.catalog.Lookup(resource)
	if err != nil {
		return "", err
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%w: identifiers must name exactly one attribute", domain.ErrInvalidCommand)
	}
	var attr string
	var vals []any
	for a, v := range ids {
		attr, vals = a, v
	}
	if len(vals) != 1 {
		return "", fmt.Errorf("%w: identifier %q needs exactly one value", domain.ErrInvalidCommand, attr)
	}
	v, err := domain.NormalizeValue(vals[0])
	if err != nil {
		return "", err
	}
	for _, oc := range objectClasses(res, objectClass) {
		kind := domain.SecondaryIdentifier
		switch attr {
		case oc.SecondaryIdentifier:
		case oc.PrimaryIdentifier:
			kind = domain.PrimaryIdentifier
		default:
			continue
		}
		owner, err := s.store.Owner(ctx, domain.Claim{Kind: kind, Resource: resource, ObjectClass: oc.Name, Attribute: attr, Value: v})
		if err != nil {
			return "", err
		}
		if owner != "" {
			return owner, nil
		}
	}
	return "", fmt.Errorf("%w: no live shadow of resource %q with %s=%v", domain.ErrShadowNotFound, resource, attr, v)
}

func objectClasses(res domain.Resource, name string) []domain.ObjectClass {
	if name != "" {
		if oc, ok := res.ObjectClass(name); ok {
			return []domain.ObjectClass{oc}
		}
		return nil
	}
	return res.ObjectClasses()
}
