package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Command is a request to change a shadow. Commands are plain values; Decide validates them.
type Command interface {
	commandName() string
	resource() Resource
}

// Add asks to create an account. ShadowID and OperationID are chosen by the caller (fresh UUIDs)
// so that Decide stays deterministic.
type Add struct {
	Resource    Resource
	ShadowID    string
	OperationID string
	RequestID   string
	ObjectClass string
	Attributes  Attributes
	// Order is the request's order of the attribute names (optional).
	Order    []string
	Assigned bool
	// TraceParent is the W3C traceparent of the request (optional), kept with the operation so
	// that its attempts and its confirmation join the request's trace.
	TraceParent string
}

// Modify asks to change attributes of an existing account.
type Modify struct {
	Resource    Resource
	OperationID string
	RequestID   string
	Changes     Changes
	// Order is the request's order of the changed attribute names (optional).
	Order []string
	// TraceParent: as Add's.
	TraceParent string
}

// Delete asks to delete an account.
type Delete struct {
	Resource    Resource
	OperationID string
	RequestID   string
	// TraceParent: as Add's.
	TraceParent string
}

// Confirm carries the target system's answer for an operation. ErrorCategory, when the target
// says why an operation failed, drives midPoint's discovery: already-exists on an add, not-found on
// a modify or delete. Attributes are the existing account's, for an already-exists answer.
type Confirm struct {
	Resource           Resource
	OperationID        string
	Result             ResultStatus
	Message            string
	PrimaryIdentifiers Attributes
	ErrorCategory      Category
	Attributes         Attributes
	// DiscoveredShadowID is the id for the shadow of an account discovered by an already-exists
	// answer (a fresh UUID chosen by the caller, so that Decide stays deterministic).
	DiscoveredShadowID string
}

// Discover creates a live shadow for an account found on the target (discovery).
type Discover struct {
	Resource           Resource
	ShadowID           string
	ObjectClass        string
	Attributes         Attributes
	PrimaryIdentifiers Attributes
	Cause              string // the operation whose answer revealed the account
}

// Refresh retries the operations whose retry is due (all of them with ForceRetry) and releases
// queued operations that may go.
//
// TimerFired says the refresh is the shadow's timer firing: its schedule is gone, so when the
// decision does not set or clear the timer itself and work is still due later, it re-arms it
// (TimerSet for NextDue). Without that, a schedule armed out of order (a record redelivered to
// another instance after a crash, applied after a newer one) fired, did nothing, and left the
// shadow's later work with no timer at all. A time already past is not re-armed: what is due and
// cannot be done now (maintenance) waits for the refresh that can do it.
type Refresh struct {
	Resource   Resource
	ForceRetry bool
	TimerFired bool
}

// Cancel ends an operation that has not reached the target: one postponed for retry, or one
// still queued. It completes with not_applicable (midPoint allows cancelling pending retries).
type Cancel struct {
	Resource    Resource
	OperationID string
}

// RecordDelivery is the dispatcher's report that the transport accepted an attempt.
type RecordDelivery struct {
	Resource    Resource
	OperationID string
	Attempt     int
	Reference   string
}

// RecordFailure is the dispatcher's report that an attempt failed. NotSent says the request
// never reached the target system (the connection, the login or the queue failed, not the
// request): whatever the category, the operation waits for a retry, since nothing about the
// request itself was refused.
type RecordFailure struct {
	Resource    Resource
	OperationID string
	Attempt     int
	Error       OperationError
	NotSent     bool
}

// RecordPostponement is the dispatcher's report that it held a released attempt back without
// contacting the target (the resource is in maintenance).
type RecordPostponement struct {
	Resource    Resource
	OperationID string
	Attempt     int
	Reason      string
}

func (Add) commandName() string      { return "add" }
func (Modify) commandName() string   { return "modify" }
func (Delete) commandName() string   { return "delete" }
func (Confirm) commandName() string  { return "confirm" }
func (Refresh) commandName() string  { return "refresh" }
func (Cancel) commandName() string   { return "cancel" }
func (Discover) commandName() string { return "discover" }

func (c Add) resource() Resource                { return c.Resource }
func (c Modify) resource() Resource             { return c.Resource }
func (c Delete) resource() Resource             { return c.Resource }
func (c Confirm) resource() Resource            { return c.Resource }
func (c Refresh) resource() Resource            { return c.Resource }
func (c Cancel) resource() Resource             { return c.Resource }
func (c Discover) resource() Resource           { return c.Resource }
func (c RecordDelivery) resource() Resource     { return c.Resource }
func (c RecordFailure) resource() Resource      { return c.Resource }
func (c RecordPostponement) resource() Resource { return c.Resource }
func (RecordPostponement) commandName() string  { return "record-postponement" }
func (RecordDelivery) commandName() string      { return "record-delivery" }
func (RecordFailure) commandName() string       { return "record-failure" }

// ValidID reports whether s is a lower-case canonical UUID (8-4-4-4-12 hex digits), the form of
// shadow and operation ids.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Decide answers a command against the current shadow: the events to record, or a typed error
// (test with errors.Is against the sentinels or the categories). No events and no error means the
// command was already applied (idempotent replays of dispatcher reports). now is the decision time.
func Decide(s Shadow, cmd Command, now time.Time) ([]Event, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	res := cmd.resource()
	if s.Created() && s.d.Resource != res.name {
		return nil, wrap(cmd.commandName(), ErrShadowNotFound, "shadow %s belongs to resource %q, not %q", s.d.ShadowID, s.d.Resource, res.name)
	}
	var (
		events []Event
		err    error
	)
	switch c := cmd.(type) {
	case Add:
		events, err = decideAdd(s, c, now)
	case Modify:
		events, err = decideModify(s, c, now)
	case Delete:
		events, err = decideDelete(s, c, now)
	case Confirm:
		events, err = decideConfirm(s, c, now)
	case Refresh:
		events, err = decideRefresh(s, c, now)
	case Cancel:
		events, err = decideCancel(s, c, now)
	case Discover:
		events, err = decideDiscover(s, c, now)
	case RecordDelivery:
		events, err = decideDelivery(s, c, now)
	case RecordFailure:
		events, err = decideFailure(s, c, now)
	case RecordPostponement:
		events, err = decidePostponement(s, c, now)
	case Observe:
		events, err = decideObserve(s, c, now)
	default:
		return nil, fmt.Errorf("%w: %T", ErrInvalidCommand, cmd)
	}
	if err != nil {
		return nil, err
	}
	fired := false
	if r, ok := cmd.(Refresh); ok {
		fired = r.TimerFired
	}
	if len(events) == 0 {
		if fired {
			return rearm(s, res.consistency, now), nil
		}
		return nil, nil
	}
	events = withGrace(events, res.consistency)
	// Fold(Fold(s, a), b) is Fold(s, a+b): the state after the decision is folded once, and
	// again only over the follow-ups (a state clone and every event's evolve fewer per command).
	after := Fold(s, events)
	follow := withGrace(followUps(after, res, now), res.consistency)
	events = append(events, follow...)
	events = append(events, timerEvents(s, Fold(after, follow), res.consistency, now)...)
	if fired && !setsTimer(events) {
		events = append(events, rearm(Fold(s, events), res.consistency, now)...)
	}
	return events, nil
}

// rearm returns the TimerSet that re-arms s's timer after it fired, if work is due later: at
// that time, but not within a second (a timer that fired early by the server's clock, a little
// ahead of ours, would otherwise be re-armed to fire again at once, and again, until our clock
// caught up).
func rearm(s Shadow, c Consistency, now time.Time) []Event {
	at, ok := NextDue(s, c)
	if !ok || !at.After(now) {
		return nil
	}
	if floor := now.Add(rearmFloor); at.Before(floor) {
		at = floor
	}
	return []Event{TimerSet{At: at, Time: now}}
}

// rearmFloor is the least delay of a re-armed timer.
const rearmFloor = time.Second

func setsTimer(events []Event) bool {
	for _, e := range events {
		switch e.(type) {
		case TimerSet, TimerCleared:
			return true
		}
	}
	return false
}

// withGrace sets the end of the grace period on completions (the domain's policy, so that Evolve
// needs none).
func withGrace(events []Event, c Consistency) []Event {
	if c.PendingOperationGracePeriod <= 0 {
		return events
	}
	for i, e := range events {
		if oc, ok := e.(OperationCompleted); ok && oc.Result.applied() {
			oc.GraceUntil = oc.Time.Add(c.PendingOperationGracePeriod)
			events[i] = oc
		}
	}
	return events
}

func decideAdd(s Shadow, c Add, now time.Time) ([]Event, error) {
	const op = "add"
	if c.Resource.name == "" {
		return nil, wrap(op, ErrUnknownResource, "")
	}
	if !ValidID(c.ShadowID) || !ValidID(c.OperationID) {
		return nil, wrap(op, ErrInvalidID, "shadow and operation ids must be UUIDs")
	}
	if s.Created() {
		return nil, wrap(op, ErrShadowExists, "%s", s.d.ShadowID)
	}
	oc, err := c.Resource.lookupClass(op, c.ObjectClass)
	if err != nil {
		return nil, err
	}
	if err := CheckRequestID(c.RequestID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	attrs, err := normalizeAttributes(c.Attributes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for _, name := range c.Attributes.Names() {
		if len(c.Attributes[name]) == 0 {
			// Dropping it silently would store less than was asked for.
			return nil, wrap(op, ErrInvalidValue, "attribute %q has no values (leave it out)", name)
		}
	}
	if len(attrs) == 0 {
		return nil, wrap(op, ErrNoAttributes, "an add needs at least the %q attribute", oc.SecondaryIdentifier)
	}
	if n := len(attrs[oc.SecondaryIdentifier]); n != 1 {
		return nil, wrap(op, ErrMissingIdentifier, "attribute %q needs exactly one value, got %d", oc.SecondaryIdentifier, n)
	}
	if err := CheckIdentifierValue(oc.SecondaryIdentifier, attrs[oc.SecondaryIdentifier][0]); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return []Event{AddRequested{
		ShadowID: c.ShadowID, Resource: c.Resource.name, ObjectClass: oc.Name,
		SecondaryIdentifier: oc.SecondaryIdentifier, OperationID: c.OperationID, RequestID: c.RequestID,
		Attributes: attrs, Order: OrderNames(c.Order, attrs.Names()), Assigned: c.Assigned, TraceParent: c.TraceParent, Time: now,
	}}, nil
}

// liveForChange checks that a modify or delete may be queued on s.
func liveForChange(op string, s Shadow) error {
	if !s.Created() {
		return wrap(op, ErrShadowNotFound, "")
	}
	if s.d.Dead {
		return wrap(op, ErrShadowDead, "shadow %s died at %s", s.d.ShadowID, s.d.DeathTimestamp.Format(time.RFC3339))
	}
	if s.unfinished(ChangeDelete) {
		return wrap(op, ErrDeletePending, "shadow %s", s.d.ShadowID)
	}
	return nil
}

func decideModify(s Shadow, c Modify, now time.Time) ([]Event, error) {
	const op = "modify"
	if err := liveForChange(op, s); err != nil {
		return nil, err
	}
	if !ValidID(c.OperationID) {
		return nil, wrap(op, ErrInvalidID, "operation id must be a UUID")
	}
	if err := CheckRequestID(c.RequestID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	changes, err := normalizeChanges(c.Changes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	oc, _ := c.Resource.ObjectClass(s.d.ObjectClass)
	if _, ok := changes[oc.PrimaryIdentifier]; ok && oc.PrimaryIdentifier != "" {
		return nil, wrap(op, ErrIdentifierImmutable, "attribute %q is assigned by the target system", oc.PrimaryIdentifier)
	}
	for attr := range s.d.SecondaryIdentifiers {
		if _, touched := changes[attr]; !touched {
			continue
		}
		vs := applyChanges(s.futureAttributes(), changes)[attr]
		if n := len(vs); n != 1 {
			return nil, wrap(op, ErrMissingIdentifier, "attribute %q must keep exactly one value, would have %d", attr, n)
		}
		if err := CheckIdentifierValue(attr, vs[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	if c.Resource.consistency.AvoidDuplicateOperations {
		if _, dup := s.PendingDuplicate(ChangeModify, changes); dup {
			return nil, nil // the same change is already on its way
		}
	}
	return []Event{ModifyRequested{OperationID: c.OperationID, RequestID: c.RequestID, Changes: changes,
		Order: OrderNames(c.Order, changes.Names()), TraceParent: c.TraceParent, Time: now}}, nil
}

// PendingDuplicate returns the unfinished operation of the given kind whose changes equal
// changes (for a delete: any unfinished delete). avoidDuplicateOperations uses it.
func (s Shadow) PendingDuplicate(ct ChangeType, changes Changes) (PendingOperation, bool) {
	for _, p := range s.d.PendingOperations {
		if p.Completed() || p.Delta.ChangeType != ct {
			continue
		}
		if ct == ChangeDelete || reflect.DeepEqual(p.Delta.Changes, changes) {
			return p.clone(), true
		}
	}
	return PendingOperation{}, false
}

func decideDelete(s Shadow, c Delete, now time.Time) ([]Event, error) {
	const op = "delete"
	if c.Resource.consistency.AvoidDuplicateOperations && s.Created() && !s.d.Dead {
		if _, dup := s.PendingDuplicate(ChangeDelete, nil); dup {
			return nil, nil
		}
	}
	if err := liveForChange(op, s); err != nil {
		return nil, err
	}
	if !ValidID(c.OperationID) {
		return nil, wrap(op, ErrInvalidID, "operation id must be a UUID")
	}
	if err := CheckRequestID(c.RequestID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return []Event{DeleteRequested{OperationID: c.OperationID, RequestID: c.RequestID, TraceParent: c.TraceParent, Time: now}}, nil
}

func decideConfirm(s Shadow, c Confirm, now time.Time) ([]Event, error) {
	const op = "confirm"
	if !c.Result.Final() {
		return nil, wrap(op, ErrInvalidResult, "%q (want success, warning, partial_error, fatal_error, handled_error or not_applicable)", c.Result)
	}
	p, ok := s.Operation(c.OperationID)
	if !ok {
		return nil, wrap(op, ErrOperationNotFound, "%q", c.OperationID)
	}
	if p.Completed() {
		return nil, wrap(op, ErrOperationFinished, "operation %s ended %s with %s", p.ID, p.CompletionTimestamp.Format(time.RFC3339), p.ResultStatus)
	}
	ids, err := identifiers(c.PrimaryIdentifiers)
	if err != nil {
		return nil, fmt.Errorf("%s: primaryIdentifiers: %w", op, err)
	}
	if len(ids) > 0 && p.Delta.ChangeType != ChangeAdd && len(s.d.PrimaryIdentifiers) > 0 && !sameAttributes(ids, s.d.PrimaryIdentifiers) {
		return nil, wrap(op, ErrIdentifierImmutable, "shadow %s already has primary identifiers", s.d.ShadowID)
	}
	if len(ids) == 0 {
		ids = nil
	}
	done := OperationCompleted{OperationID: p.ID, Result: c.Result, Message: c.Message, PrimaryIdentifiers: ids,
		Source: SourceConfirmation, Time: now}
	if c.Result.applied() || c.ErrorCategory == "" {
		return []Event{done}, nil
	}
	// Discovery: the target says why it failed.
	switch {
	case p.Delta.ChangeType == ChangeAdd && c.ErrorCategory == CategoryAlreadyExists:
		// The account is there already: this shadow dies; the account gets a live shadow of its own.
		if !ValidID(c.DiscoveredShadowID) {
			return nil, wrap(op, ErrInvalidID, "discovered shadow id must be a UUID")
		}
		attrs, err := normalizeAttributes(c.Attributes)
		if err != nil {
			return nil, fmt.Errorf("%s: attributes: %w", op, err)
		}
		done.Result, done.Message = ResultHandledError, "already exists on the target: discovered as shadow "+c.DiscoveredShadowID
		done.PrimaryIdentifiers = nil
		return []Event{done, AccountDiscovered{OperationID: p.ID, ShadowID: c.DiscoveredShadowID, Attributes: attrs,
			PrimaryIdentifiers: ids, Time: now}}, nil
	case p.Delta.ChangeType == ChangeDelete && c.ErrorCategory == CategoryNotFound:
		done.Result, done.Message = ResultHandledError, "not found on the target: already deleted"
		return []Event{done}, nil
	case p.Delta.ChangeType == ChangeModify && c.ErrorCategory == CategoryNotFound:
		done.Result = ResultHandledError
		if s.d.Assigned {
			// Created by an assignment: the account must exist; create it again with what the
			// shadow holds (this modify included).
			done.Message = "not found on the target: re-created (the account is assigned)"
			recreate := OperationID(p.ID, "recreate")
			return []Event{done, RecreateRequested{OperationID: recreate, Attributes: applyChanges(s.futureAttributes(), p.Delta.Changes),
				Time: now}}, nil
		}
		done.Message = "not found on the target: the account is gone"
		return []Event{done, AccountGone{Time: now}}, nil
	}
	return []Event{done}, nil
}

// OperationID derives a stable operation id from another one (deterministic: Decide draws no
// random numbers). The form is a UUID v8 built from a SHA-256 of the inputs.
func OperationID(from, purpose string) string {
	h := sha256.Sum256([]byte(from + "/" + purpose))
	h[6] = h[6]&0x0f | 0x80
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func decideDiscover(s Shadow, c Discover, now time.Time) ([]Event, error) {
	const op = "discover"
	if s.Created() {
		return nil, wrap(op, ErrShadowExists, "%s", s.d.ShadowID)
	}
	if !ValidID(c.ShadowID) {
		return nil, wrap(op, ErrInvalidID, "shadow id must be a UUID")
	}
	oc, err := c.Resource.lookupClass(op, c.ObjectClass)
	if err != nil {
		return nil, err
	}
	attrs, err := normalizeAttributes(c.Attributes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if n := len(attrs[oc.SecondaryIdentifier]); n != 1 {
		return nil, wrap(op, ErrMissingIdentifier, "the discovered account needs exactly one %q, has %d", oc.SecondaryIdentifier, n)
	}
	ids, err := identifiers(c.PrimaryIdentifiers)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return []Event{ShadowDiscovered{ShadowID: c.ShadowID, Resource: c.Resource.name, ObjectClass: oc.Name,
		SecondaryIdentifier: oc.SecondaryIdentifier, Attributes: attrs, PrimaryIdentifiers: ids, Cause: c.Cause, Time: now}}, nil
}

func sameAttributes(a, b Attributes) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// dispatchable finds the operation a dispatcher report is about. done means the report is a
// replay (the attempt was already recorded, or the operation ended meanwhile) and changes nothing.
func dispatchable(op string, s Shadow, id string, attempt int) (p PendingOperation, done bool, err error) {
	p, ok := s.Operation(id)
	if !ok {
		return p, false, wrap(op, ErrOperationNotFound, "%q", id)
	}
	if p.Completed() || attempt <= p.AttemptNumber {
		return p, true, nil
	}
	if attempt != p.AttemptNumber+1 || p.ExecutionStatus != StatusExecutionPending {
		return p, false, wrap(op, ErrAttemptOutOfSequence, "operation %s: attempt %d reported, %d made, status %s", id, attempt, p.AttemptNumber, p.ExecutionStatus)
	}
	return p, false, nil
}

func decideDelivery(s Shadow, c RecordDelivery, now time.Time) ([]Event, error) {
	p, done, err := dispatchable("record delivery", s, c.OperationID, c.Attempt)
	if err != nil {
		return nil, err
	}
	if done {
		// The target can confirm before the delivery report is stored: the attempt still
		// happened, and auditors must see it.
		if p.Completed() && c.Attempt == p.AttemptNumber+1 {
			return []Event{OperationSent{OperationID: p.ID, Attempt: c.Attempt, Reference: c.Reference, Time: now}}, nil
		}
		return nil, nil
	}
	events := []Event{OperationSent{OperationID: p.ID, Attempt: c.Attempt, Reference: c.Reference, Time: now}}
	if !c.Resource.confirmations {
		events = append(events, OperationCompleted{OperationID: p.ID, Result: ResultSuccess, Source: SourceDelivery, Time: now})
	}
	return events, nil
}

func decideFailure(s Shadow, c RecordFailure, now time.Time) ([]Event, error) {
	p, done, err := dispatchable("record failure", s, c.OperationID, c.Attempt)
	if err != nil || done {
		return nil, err
	}
	if c.Error.Category == "" {
		c.Error.Category = CategoryGeneric
	}
	events := []Event{AttemptFailed{OperationID: p.ID, Attempt: c.Attempt, Error: c.Error, NotSent: c.NotSent, Time: now}}
	max := c.Resource.consistency.OperationRetryMaxAttempts
	retryable := c.Error.Category == CategoryCommunication || c.NotSent
	if !retryable || c.Attempt >= max {
		msg := c.Error.Message
		if retryable {
			msg = fmt.Sprintf("gave up after %d attempt(s): %s", c.Attempt, msg)
		}
		events = append(events, OperationCompleted{OperationID: p.ID, Result: ResultFatalError, Message: msg, Source: SourceFailure, Time: now})
	}
	return events, nil
}

func decidePostponement(s Shadow, c RecordPostponement, now time.Time) ([]Event, error) {
	p, done, err := dispatchable("record postponement", s, c.OperationID, c.Attempt)
	if err != nil || done {
		return nil, err
	}
	return []Event{OperationPostponed{OperationID: p.ID, Attempt: c.Attempt, Reason: c.Reason, Time: now}}, nil
}

func decideCancel(s Shadow, c Cancel, now time.Time) ([]Event, error) {
	const op = "cancel"
	p, ok := s.Operation(c.OperationID)
	if !ok {
		return nil, wrap(op, ErrOperationNotFound, "%q", c.OperationID)
	}
	if p.Completed() {
		return nil, wrap(op, ErrOperationFinished, "operation %s ended with %s", p.ID, p.ResultStatus)
	}
	waiting := p.ExecutionStatus == StatusRequested || (p.Type == TypeRetry && p.ExecutionStatus == StatusExecuting)
	if !waiting {
		return nil, wrap(op, ErrNotCancellable, "operation %s is %s at the target (%s)", p.ID, p.ExecutionStatus, p.Type)
	}
	return []Event{OperationCompleted{OperationID: p.ID, Result: ResultNotApplicable, Message: "cancelled", Source: SourceCancel, Time: now}}, nil
}

func decideRefresh(s Shadow, c Refresh, now time.Time) ([]Event, error) {
	if !s.Created() {
		return nil, wrap("refresh", ErrShadowNotFound, "")
	}
	cons := c.Resource.consistency
	var events []Event
	next := s.d.LastSequence
	for _, p := range s.d.PendingOperations {
		if p.Completed() || p.Type != TypeRetry || p.ExecutionStatus != StatusExecuting {
			continue
		}
		if c.Resource.maintenance {
			// Neither retried nor given up: maintenance counts no attempts. The refresh that
			// ends maintenance (or the sweep) picks the operation up.
			continue
		}
		if !c.ForceRetry && now.Before(p.LastAttemptTimestamp.Add(cons.OperationRetryPeriod)) {
			continue
		}
		if p.AttemptNumber >= cons.OperationRetryMaxAttempts {
			events = append(events, OperationCompleted{OperationID: p.ID, Result: ResultFatalError,
				Message: fmt.Sprintf("gave up after %d attempt(s)", p.AttemptNumber), Source: SourceFailure, Time: now})
			continue
		}
		events = append(events, release(s, p, &next, now))
	}
	// What time alone makes due: grace periods, retention, expiry.
	events = append(events, dueHousekeeping(s, cons, now)...)
	if len(events) == 0 {
		// Releasing queued work is a refresh's job too (after a crash between decisions, or
		// when maintenance ends).
		return followUps(s, c.Resource, now), nil
	}
	return events, nil
}

// followUps returns what must happen after a decision: queued operations of a dead shadow end,
// and queued operations that nothing blocks any more are released to the dispatcher.
//
// Order rules: an unfinished add blocks everything after it (later requests need the account and
// its primary identifier); an operation postponed for retry blocks everything after it; a queued
// operation that stays queued keeps the ones behind it queued; and an operation released but not
// yet accepted by the transport blocks everything after it: one operation of a shadow is in
// flight at a time until the broker has it, so a re-send after a crash can never overtake a newer
// operation. A resource in maintenance releases nothing.
func followUps(s Shadow, res Resource, now time.Time) []Event {
	var out []Event
	blocked := false
	next := s.d.LastSequence
	for _, p := range s.d.PendingOperations {
		if p.Completed() {
			continue
		}
		if s.d.Dead {
			out = append(out, OperationCompleted{OperationID: p.ID, Result: ResultNotApplicable,
				Message: "the shadow is dead", Source: SourceCascade, Time: now})
			continue
		}
		if p.ExecutionStatus == StatusRequested {
			if !blocked && !res.maintenance {
				out = append(out, release(s, p, &next, now))
			}
			blocked = true // queued, or released now and not yet accepted
			continue
		}
		if p.Delta.ChangeType == ChangeAdd || p.Type == TypeRetry || p.ExecutionStatus == StatusExecutionPending {
			blocked = true
		}
	}
	return out
}

// release returns the DispatchRequested for p's next attempt. An operation keeps its sequence
// across attempts; a first release takes the next one (*next is the highest given so far).
func release(s Shadow, p PendingOperation, next *int64, now time.Time) DispatchRequested {
	seq := p.Sequence
	if seq == 0 {
		*next++
		seq = *next
	}
	return DispatchRequested{OperationID: p.ID, Attempt: p.AttemptNumber + 1, Sequence: seq, PreviousSequence: s.d.DeliveredSequence, TraceParent: p.TraceParent,
		Request: targetRequest(s, p), Time: now}
}

// targetRequest builds what the target system gets for p, with the identifiers known now.
func targetRequest(s Shadow, p PendingOperation) TargetRequest {
	r := TargetRequest{Operation: p.Delta.ChangeType, ObjectClass: s.d.ObjectClass, Order: slices.Clone(p.Delta.Order)}
	switch p.Delta.ChangeType {
	case ChangeAdd:
		r.Attributes = p.Delta.Attributes.Clone()
	case ChangeModify:
		r.Changes = p.Delta.Changes.Clone()
		fallthrough
	case ChangeDelete:
		r.PrimaryIdentifiers = s.d.PrimaryIdentifiers.Clone()
		r.SecondaryIdentifiers = s.d.SecondaryIdentifiers.Clone()
	}
	return r
}

// identifiers normalizes primary identifiers reported by the target: each value must be able to
// name the account (see CheckIdentifierValue).
func identifiers(in Attributes) (Attributes, error) {
	ids, err := normalizeAttributes(in)
	if err != nil {
		return nil, err
	}
	for attr, vs := range ids {
		for _, v := range vs {
			if err := CheckIdentifierValue(attr, v); err != nil {
				return nil, err
			}
		}
	}
	return ids, nil
}
