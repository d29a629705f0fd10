package domain

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Event is one recorded fact about a shadow. Events are plain values; the event store persists
// them with their EventType name, which never changes once released.
type Event interface {
	EventType() string
	EventTime() time.Time
}

// ShadowEvent is an event of a shadow; the other events are a resource's (availability,
// maintenance, reconciliation runs). The event codecs are generated for the shadow events
// (eventstore/internal/eventgen finds them by this interface).
type ShadowEvent interface {
	Event
	shadowEvent()
}

func (AddRequested) shadowEvent()       {}
func (ModifyRequested) shadowEvent()    {}
func (DeleteRequested) shadowEvent()    {}
func (DispatchRequested) shadowEvent()  {}
func (OperationSent) shadowEvent()      {}
func (AttemptFailed) shadowEvent()      {}
func (OperationCompleted) shadowEvent() {}
func (OperationPostponed) shadowEvent() {}
func (TimerSet) shadowEvent()           {}
func (TimerCleared) shadowEvent()       {}
func (GracePeriodEnded) shadowEvent()   {}
func (OperationRemoved) shadowEvent()   {}
func (ShadowExpired) shadowEvent()      {}
func (AccountDiscovered) shadowEvent()  {}
func (ShadowDiscovered) shadowEvent()   {}
func (RecreateRequested) shadowEvent()  {}
func (AccountGone) shadowEvent()        {}
func (AccountChanged) shadowEvent()     {}

// TargetRequest is exactly what is asked of the target system for one attempt, recorded in the
// DispatchRequested event so that auditors see what was sent and the dispatcher needs no lookup.
type TargetRequest struct {
	Operation            ChangeType `json:"operation"`
	ObjectClass          string     `json:"objectClass"`
	Attributes           Attributes `json:"attributes,omitempty"`
	PrimaryIdentifiers   Attributes `json:"primaryIdentifiers,omitempty"`
	SecondaryIdentifiers Attributes `json:"secondaryIdentifiers,omitempty"`
	Changes              Changes    `json:"changes,omitempty"`
	// Order is the request's order of the attribute (add) or change (modify) names.
	Order []string `json:"order,omitempty"`
}

// AddRequested creates the shadow with its attribute cache and a pending add.
type AddRequested struct {
	ShadowID            string     `json:"shadowId"`
	Resource            string     `json:"resource"`
	ObjectClass         string     `json:"objectClass"`
	SecondaryIdentifier string     `json:"secondaryIdentifier"`
	OperationID         string     `json:"operationId"`
	RequestID           string     `json:"requestId,omitempty"`
	Attributes          Attributes `json:"attributes"`
	Order               []string   `json:"order,omitempty"`
	Assigned            bool       `json:"assigned,omitempty"`
	TraceParent         string     `json:"traceparent,omitempty"`
	Time                time.Time  `json:"time"`
}

// ModifyRequested queues a modification.
type ModifyRequested struct {
	OperationID string    `json:"operationId"`
	RequestID   string    `json:"requestId,omitempty"`
	Changes     Changes   `json:"changes"`
	Order       []string  `json:"order,omitempty"`
	TraceParent string    `json:"traceparent,omitempty"`
	Time        time.Time `json:"time"`
}

// DeleteRequested queues a delete.
type DeleteRequested struct {
	OperationID string    `json:"operationId"`
	RequestID   string    `json:"requestId,omitempty"`
	TraceParent string    `json:"traceparent,omitempty"`
	Time        time.Time `json:"time"`
}

// DispatchRequested releases an operation to the dispatcher for attempt number Attempt.
//
// Sequence is the operation's place among the shadow's operations released to the target (1, 2,
// ...; every attempt of one operation keeps it) and PreviousSequence the Sequence of the last
// operation the transport accepted before it (0: none). Both travel with the request, so a target
// can apply one account's operations once and in order, whatever a broker redelivers: drop what
// it has passed (Sequence <= last applied), hold back what comes too early (PreviousSequence >
// last applied). Zero in events recorded before sequences existed.
type DispatchRequested struct {
	OperationID      string        `json:"operationId"`
	Attempt          int           `json:"attempt"`
	Sequence         int64         `json:"sequence,omitempty"`
	PreviousSequence int64         `json:"previousSequence,omitempty"`
	Request          TargetRequest `json:"request"`
	// TraceParent is the operation's (PendingOperation.TraceParent): each attempt joins the
	// request's trace.
	TraceParent string    `json:"traceparent,omitempty"`
	Time        time.Time `json:"time"`
}

// OperationSent records that the transport accepted attempt Attempt (for AMQP: the broker's
// Accepted outcome).
type OperationSent struct {
	OperationID string    `json:"operationId"`
	Attempt     int       `json:"attempt"`
	Reference   string    `json:"reference,omitempty"`
	Time        time.Time `json:"time"`
}

// AttemptFailed records a failed attempt. A communication error, or any error that kept the
// request from reaching the target (NotSent: no connection, a refused login, a missing queue),
// leaves the operation pending as a retry; any other category is followed by OperationCompleted
// with fatal_error.
type AttemptFailed struct {
	OperationID string         `json:"operationId"`
	Attempt     int            `json:"attempt"`
	Error       OperationError `json:"error"`
	NotSent     bool           `json:"notSent,omitempty"`
	Time        time.Time      `json:"time"`
}

// Completion sources: how an operation came to its end.
const (
	SourceDelivery     = "delivery"     // accepted by the transport, no confirmation expected
	SourceConfirmation = "confirmation" // confirmed by the target system
	SourceFailure      = "failure"      // failed for good
	SourceCascade      = "cascade"      // ended because an earlier operation ended the shadow
	SourceCancel       = "cancel"       // cancelled before it reached the target
)

// OperationCompleted ends an operation. When the result means the target did the work, its effect
// reaches the shadow: an add makes the account exist, a modify updates the cache, a delete kills
// the shadow. A failed add kills the shadow too.
type OperationCompleted struct {
	OperationID        string       `json:"operationId"`
	Result             ResultStatus `json:"result"`
	Message            string       `json:"message,omitempty"`
	PrimaryIdentifiers Attributes   `json:"primaryIdentifiers,omitempty"`
	Source             string       `json:"source"`
	// GraceUntil is the end of the operation's grace period (zero: none).
	GraceUntil time.Time `json:"graceUntil,omitzero"`
	Time       time.Time `json:"time"`
}

// AccountDiscovered records that an add found the account already on the target: the account gets
// a live shadow ShadowID of its own (ShadowDiscovered on that shadow), and this one dies.
type AccountDiscovered struct {
	OperationID        string     `json:"operationId"`
	ShadowID           string     `json:"shadowId"`
	Attributes         Attributes `json:"attributes,omitempty"`
	PrimaryIdentifiers Attributes `json:"primaryIdentifiers,omitempty"`
	Time               time.Time  `json:"time"`
}

// ShadowDiscovered creates a live shadow for an account found on the target.
type ShadowDiscovered struct {
	ShadowID            string     `json:"shadowId"`
	Resource            string     `json:"resource"`
	ObjectClass         string     `json:"objectClass"`
	SecondaryIdentifier string     `json:"secondaryIdentifier"`
	Attributes          Attributes `json:"attributes"`
	PrimaryIdentifiers  Attributes `json:"primaryIdentifiers,omitempty"`
	Cause               string     `json:"cause,omitempty"`
	Time                time.Time  `json:"time"`
}

// RecreateRequested queues an add that re-creates an assigned account the target lost. Source
// says how the loss was seen: a not-found answer (empty), a reconciliation or a notification.
type RecreateRequested struct {
	OperationID string     `json:"operationId"`
	Attributes  Attributes `json:"attributes"`
	Source      string     `json:"source,omitempty"`
	Time        time.Time  `json:"time"`
}

// AccountGone records that the target no longer has the account (not found, not assigned): the
// shadow dies. Source as RecreateRequested's.
type AccountGone struct {
	Source string    `json:"source,omitempty"`
	Time   time.Time `json:"time"`
}

// AccountChanged records that the target holds other attribute values than the cache (changed
// outside shadowbridge, seen by a reconciliation or the target's notification): the cache follows
// the target. Before has the cached values of the attributes that differed, After the target's;
// an attribute in Before and not in After is gone on the target. PrimaryIdentifiers, when set,
// are the target's for a shadow that had none.
type AccountChanged struct {
	Source             string     `json:"source"`
	Reconciliation     string     `json:"reconciliation,omitempty"`
	Before             Attributes `json:"before,omitempty"`
	After              Attributes `json:"after,omitempty"`
	PrimaryIdentifiers Attributes `json:"primaryIdentifiers,omitempty"`
	Time               time.Time  `json:"time"`
}

// OperationPostponed records that a released attempt was held back before reaching the target
// (the resource is in maintenance): the operation is requested again and its attempt number is
// unchanged, so maintenance never uses up operationRetryMaxAttempts.
type OperationPostponed struct {
	OperationID string    `json:"operationId"`
	Attempt     int       `json:"attempt"` // the attempt that was not made
	Reason      string    `json:"reason,omitempty"`
	Time        time.Time `json:"time"`
}

func (OperationPostponed) EventType() string      { return "OperationPostponed" }
func (e OperationPostponed) EventTime() time.Time { return e.Time }

func (AccountDiscovered) EventType() string      { return "AccountDiscovered" }
func (ShadowDiscovered) EventType() string       { return "ShadowDiscovered" }
func (RecreateRequested) EventType() string      { return "RecreateRequested" }
func (AccountGone) EventType() string            { return "AccountGone" }
func (AccountChanged) EventType() string         { return "AccountChanged" }
func (e AccountChanged) EventTime() time.Time    { return e.Time }
func (e AccountDiscovered) EventTime() time.Time { return e.Time }
func (e ShadowDiscovered) EventTime() time.Time  { return e.Time }
func (e RecreateRequested) EventTime() time.Time { return e.Time }
func (e AccountGone) EventTime() time.Time       { return e.Time }

// EventType names, as stored in the log. Never rename one.
func (AddRequested) EventType() string       { return "AddRequested" }
func (ModifyRequested) EventType() string    { return "ModifyRequested" }
func (DeleteRequested) EventType() string    { return "DeleteRequested" }
func (DispatchRequested) EventType() string  { return "DispatchRequested" }
func (OperationSent) EventType() string      { return "OperationSent" }
func (AttemptFailed) EventType() string      { return "AttemptFailed" }
func (OperationCompleted) EventType() string { return "OperationCompleted" }

// EventTime returns when the event happened.
func (e AddRequested) EventTime() time.Time       { return e.Time }
func (e ModifyRequested) EventTime() time.Time    { return e.Time }
func (e DeleteRequested) EventTime() time.Time    { return e.Time }
func (e DispatchRequested) EventTime() time.Time  { return e.Time }
func (e OperationSent) EventTime() time.Time      { return e.Time }
func (e AttemptFailed) EventTime() time.Time      { return e.Time }
func (e OperationCompleted) EventTime() time.Time { return e.Time }

// EventTypes names every event type the log can hold (NewEvent knows each).
var EventTypes = []string{"AddRequested", "ModifyRequested", "DeleteRequested", "DispatchRequested", "OperationSent",
	"AttemptFailed", "OperationCompleted", "AvailabilityChanged", "AdministrativeAvailabilityChanged",
	"OperationPostponed", "TimerSet", "TimerCleared", "GracePeriodEnded", "OperationRemoved", "ShadowExpired",
	"AccountDiscovered", "ShadowDiscovered", "RecreateRequested", "AccountGone", "AccountChanged",
	"ReconciliationStarted", "ReconciliationPageApplied", "ReconciliationFinished", "ReconciliationFailed"}

// NewEvent returns a pointer to a zero event of the named type, for decoders. ok is false for an
// unknown name.
func NewEvent(eventType string) (ptr any, ok bool) {
	switch eventType {
	case "AddRequested":
		return &AddRequested{}, true
	case "ModifyRequested":
		return &ModifyRequested{}, true
	case "DeleteRequested":
		return &DeleteRequested{}, true
	case "DispatchRequested":
		return &DispatchRequested{}, true
	case "OperationSent":
		return &OperationSent{}, true
	case "AttemptFailed":
		return &AttemptFailed{}, true
	case "OperationCompleted":
		return &OperationCompleted{}, true
	case "AvailabilityChanged":
		return &AvailabilityChanged{}, true
	case "AdministrativeAvailabilityChanged":
		return &AdministrativeAvailabilityChanged{}, true
	case "OperationPostponed":
		return &OperationPostponed{}, true
	case "TimerSet":
		return &TimerSet{}, true
	case "TimerCleared":
		return &TimerCleared{}, true
	case "GracePeriodEnded":
		return &GracePeriodEnded{}, true
	case "OperationRemoved":
		return &OperationRemoved{}, true
	case "ShadowExpired":
		return &ShadowExpired{}, true
	case "AccountDiscovered":
		return &AccountDiscovered{}, true
	case "ShadowDiscovered":
		return &ShadowDiscovered{}, true
	case "RecreateRequested":
		return &RecreateRequested{}, true
	case "AccountGone":
		return &AccountGone{}, true
	case "AccountChanged":
		return &AccountChanged{}, true
	case "ReconciliationStarted":
		return &ReconciliationStarted{}, true
	case "ReconciliationPageApplied":
		return &ReconciliationPageApplied{}, true
	case "ReconciliationFinished":
		return &ReconciliationFinished{}, true
	case "ReconciliationFailed":
		return &ReconciliationFailed{}, true
	}
	return nil, false
}

// EventOperationID returns the operation an event is about ("" if none).
func EventOperationID(e Event) string {
	switch x := e.(type) {
	case AddRequested:
		return x.OperationID
	case ModifyRequested:
		return x.OperationID
	case DeleteRequested:
		return x.OperationID
	case DispatchRequested:
		return x.OperationID
	case OperationSent:
		return x.OperationID
	case AttemptFailed:
		return x.OperationID
	case OperationPostponed:
		return x.OperationID
	case OperationCompleted:
		return x.OperationID
	case GracePeriodEnded:
		return x.OperationID
	case OperationRemoved:
		return x.OperationID
	case AccountDiscovered:
		return x.OperationID
	case RecreateRequested:
		return x.OperationID
	}
	return ""
}

// Evolve returns the shadow after the event. It never fails: events are facts that Decide already
// checked. An event about an unknown operation changes nothing but the version (it cannot happen
// for events Decide produced, and replay must not stop on it). s is not modified.
func Evolve(s Shadow, e Event) Shadow {
	d := s.d.clone()
	evolve(&d, e)
	return Shadow{d: d}
}

// evolve applies e to d in place. d must be owned by the caller (a clone): Fold clones once for
// all its events, which halves the copying of a decision's usual two events.
func evolve(d *ShadowData, e Event) {
	at := e.EventTime()
	switch e.(type) {
	case TimerSet, TimerCleared:
		// Timers change nothing in the shadow; they are in the log so that arming is audited.
	default:
		if !evolveRequest(d, e, at) && !evolveAttempt(d, e, at) && !evolveTarget(d, e, at) {
			panic(fmt.Sprintf("domain: Evolve: unknown event %T", e))
		}
	}
	if tc := targetChange(e, at); tc != nil {
		d.TargetChange = tc
	}
	switch e.(type) {
	case AddRequested, ShadowDiscovered, TimerSet, TimerCleared, GracePeriodEnded, OperationRemoved, ShadowExpired:
		// Creation has its own timestamp; housekeeping is not activity on the account (the
		// dead-shadow retention counts from the last activity).
	default:
		d.ModifyTimestamp = at
	}
	d.Version++
	d.LifecycleState = deriveLifecycle(*d, at)
}

// evolveRequest applies a request for an operation (an add, a modify, a delete, a re-creation);
// false: e is not one.
func evolveRequest(d *ShadowData, e Event, at time.Time) bool {
	switch x := e.(type) {
	case AddRequested:
		*d = ShadowData{
			ShadowID:             x.ShadowID,
			Resource:             x.Resource,
			ObjectClass:          x.ObjectClass,
			Assigned:             x.Assigned,
			PrimaryIdentifiers:   Attributes{},
			SecondaryIdentifiers: Attributes{x.SecondaryIdentifier: x.Attributes.Clone()[x.SecondaryIdentifier]},
			Attributes:           x.Attributes.Clone(),
			CreateTimestamp:      at,
			Version:              d.Version,
			PendingOperations: []PendingOperation{{
				ID: x.OperationID, Type: TypeAsynchronous, RequestID: x.RequestID, TraceParent: x.TraceParent,
				Delta:           Delta{ChangeType: ChangeAdd, Attributes: x.Attributes.Clone(), Order: slices.Clone(x.Order)},
				ExecutionStatus: StatusRequested, ResultStatus: ResultInProgress, RequestTimestamp: at,
			}},
		}
	case ModifyRequested:
		d.PendingOperations = append(d.PendingOperations, PendingOperation{
			ID: x.OperationID, Type: TypeAsynchronous, RequestID: x.RequestID, TraceParent: x.TraceParent,
			Delta:           Delta{ChangeType: ChangeModify, Changes: x.Changes.Clone(), Order: slices.Clone(x.Order)},
			ExecutionStatus: StatusRequested, ResultStatus: ResultInProgress, RequestTimestamp: at,
		})
	case DeleteRequested:
		d.PendingOperations = append(d.PendingOperations, PendingOperation{
			ID: x.OperationID, Type: TypeAsynchronous, RequestID: x.RequestID, TraceParent: x.TraceParent,
			Delta:           Delta{ChangeType: ChangeDelete},
			ExecutionStatus: StatusRequested, ResultStatus: ResultInProgress, RequestTimestamp: at,
		})
	case RecreateRequested:
		d.Exists = false
		d.Attributes = x.Attributes.Clone()
		d.PendingOperations = append(d.PendingOperations, PendingOperation{
			ID: x.OperationID, Type: TypeAsynchronous,
			Delta:           Delta{ChangeType: ChangeAdd, Attributes: x.Attributes.Clone(), Order: x.Attributes.Names()},
			ExecutionStatus: StatusRequested, ResultStatus: ResultInProgress, RequestTimestamp: at,
		})
	default:
		return false
	}
	return true
}

// evolveAttempt applies what happened to an operation on its way to the target and after it
// (released, sent, failed, postponed, completed, its grace period and retention over); false: e
// is not one of these.
func evolveAttempt(d *ShadowData, e Event, at time.Time) bool {
	switch x := e.(type) {
	case DispatchRequested:
		if op := findOp(d, x.OperationID); op != nil {
			op.ExecutionStatus = StatusExecutionPending
			if x.Sequence > 0 {
				op.Sequence = x.Sequence
			}
		}
		d.LastSequence = max(d.LastSequence, x.Sequence)
	case OperationSent:
		if op := findOp(d, x.OperationID); op != nil {
			d.DeliveredSequence = max(d.DeliveredSequence, op.Sequence)
			if !op.Completed() { // a late report of a confirmed operation only fills in the attempt
				op.ExecutionStatus = StatusExecuting
				op.Type = TypeAsynchronous
			}
			op.AttemptNumber = x.Attempt
			op.LastAttemptTimestamp = at
			op.AsynchronousOperationReference = x.Reference
			op.LastError = nil
		}
	case AttemptFailed:
		if op := findOp(d, x.OperationID); op != nil {
			op.ExecutionStatus = StatusExecuting
			op.AttemptNumber = x.Attempt
			op.LastAttemptTimestamp = at
			le := x.Error
			op.LastError = &le
			if x.Error.Category == CategoryCommunication || x.NotSent {
				op.Type = TypeRetry
			}
		}
	case OperationPostponed:
		// Nothing reached the target: the operation waits again, its attempts untouched.
		if op := findOp(d, x.OperationID); op != nil && !op.Completed() {
			op.ExecutionStatus = StatusRequested
		}
	case OperationCompleted:
		if op := findOp(d, x.OperationID); op != nil && (x.Source == SourceConfirmation || x.Source == SourceDelivery) {
			// The target has it even if its delivery was never recorded (the instance that sent it
			// died first, or the confirmation overtook the report): the next request follows it.
			d.DeliveredSequence = max(d.DeliveredSequence, op.Sequence)
		}
		completeOp(d, x)
	case GracePeriodEnded:
		if op := findOp(d, x.OperationID); op != nil {
			op.GracePeriodEnd = time.Time{}
		}
	case OperationRemoved:
		d.PendingOperations = slices.DeleteFunc(d.PendingOperations, func(p PendingOperation) bool { return p.ID == x.OperationID })
	default:
		return false
	}
	return true
}

// evolveTarget applies what the target (or time) did to the shadow's account: discovered, gone,
// changed outside shadowbridge, expired; false: e is not one of these.
func evolveTarget(d *ShadowData, e Event, at time.Time) bool {
	switch x := e.(type) {
	case ShadowExpired:
		d.Expired = true
	case AccountDiscovered:
		kill(d, at) // the account belongs to the discovered shadow now
	case AccountGone:
		kill(d, at)
	case AccountChanged:
		for name := range x.Before {
			delete(d.Attributes, name)
		}
		for name, vals := range x.After {
			if d.Attributes == nil {
				d.Attributes = Attributes{}
			}
			d.Attributes[name] = slices.Clone(vals)
		}
		for attr := range d.SecondaryIdentifiers {
			d.SecondaryIdentifiers[attr] = d.Attributes.Clone()[attr]
		}
		if len(x.PrimaryIdentifiers) > 0 {
			d.PrimaryIdentifiers = x.PrimaryIdentifiers.Clone()
		}
	case ShadowDiscovered:
		*d = ShadowData{
			ShadowID: x.ShadowID, Resource: x.Resource, ObjectClass: x.ObjectClass, Exists: true,
			PrimaryIdentifiers:   x.PrimaryIdentifiers.Clone(),
			SecondaryIdentifiers: Attributes{x.SecondaryIdentifier: x.Attributes.Clone()[x.SecondaryIdentifier]},
			Attributes:           x.Attributes.Clone(), CreateTimestamp: at, Version: d.Version,
		}
		if d.PrimaryIdentifiers == nil {
			d.PrimaryIdentifiers = Attributes{}
		}
	default:
		return false
	}
	return true
}

// targetChange is the change made on the target outside shadowbridge that e records (nil: e
// records none): what ShadowData.TargetChange keeps for explain.
func targetChange(e Event, at time.Time) *TargetChange {
	switch x := e.(type) {
	case AccountGone:
		if x.Source != "" {
			return &TargetChange{Kind: TargetGone, Source: x.Source, Time: at}
		}
	case AccountChanged:
		return &TargetChange{Kind: TargetChanged, Source: x.Source, Reconciliation: x.Reconciliation,
			Attributes: slices.Sorted(maps.Keys(mergeNames(x.Before, x.After))), Time: at}
	case ShadowDiscovered:
		if x.Cause == SourceReconciliation || x.Cause == SourceNotification {
			return &TargetChange{Kind: TargetDiscovered, Source: x.Cause, Time: at}
		}
	case RecreateRequested:
		if x.Source != "" {
			return &TargetChange{Kind: TargetLost, Source: x.Source, Time: at}
		}
	}
	return nil
}

// mergeNames is the set of attribute names in a or b.
func mergeNames(a, b Attributes) map[string]struct{} {
	m := make(map[string]struct{}, len(a)+len(b))
	for n := range a {
		m[n] = struct{}{}
	}
	for n := range b {
		m[n] = struct{}{}
	}
	return m
}

func findOp(d *ShadowData, id string) *PendingOperation {
	for i := range d.PendingOperations {
		if d.PendingOperations[i].ID == id {
			return &d.PendingOperations[i]
		}
	}
	return nil
}

func completeOp(d *ShadowData, x OperationCompleted) {
	op := findOp(d, x.OperationID)
	if op == nil {
		return
	}
	op.ExecutionStatus = StatusCompleted
	op.ResultStatus = x.Result
	op.CompletionTimestamp = x.Time
	op.Message = x.Message
	op.GracePeriodEnd = x.GraceUntil
	if len(x.PrimaryIdentifiers) > 0 {
		d.PrimaryIdentifiers = x.PrimaryIdentifiers.Clone()
	}
	switch op.Delta.ChangeType {
	case ChangeAdd:
		if x.Result.applied() {
			d.Exists = true
		} else {
			kill(d, x.Time) // failed or cancelled: the account will never exist
		}
	case ChangeModify:
		if x.Result.applied() {
			d.Attributes = applyChanges(d.Attributes, op.Delta.Changes)
			// A target may confirm out of order: later modifies already in the cache are
			// applied again after this one, so the cache always ends as the modifies' order says.
			i := slices.IndexFunc(d.PendingOperations, func(p PendingOperation) bool { return p.ID == op.ID })
			for _, later := range d.PendingOperations[i+1:] {
				if later.Completed() && later.Delta.ChangeType == ChangeModify && later.ResultStatus.applied() {
					d.Attributes = applyChanges(d.Attributes, later.Delta.Changes)
				}
			}
			for attr := range d.SecondaryIdentifiers {
				d.SecondaryIdentifiers[attr] = d.Attributes.Clone()[attr]
			}
		}
	case ChangeDelete:
		if x.Result.applied() {
			kill(d, x.Time)
		}
	}
}

func kill(d *ShadowData, at time.Time) {
	d.Dead = true
	d.Exists = false
	d.DeathTimestamp = at
}

// Fold applies events in order, starting from s.
func Fold(s Shadow, events []Event) Shadow {
	if len(events) == 0 {
		return s
	}
	d := s.d.clone()
	for _, e := range events {
		evolve(&d, e)
	}
	return Shadow{d: d}
}
