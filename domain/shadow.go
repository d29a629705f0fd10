package domain

import (
	"encoding/json"
	"iter"
	"slices"
	"strings"
	"time"
)

// Lifecycle is midPoint's shadow lifecycle state.
type Lifecycle string

// The lifecycle states, in the order a shadow normally passes through them.
const (
	LifecycleProposed  Lifecycle = "proposed"  // add requested, not attempted yet
	LifecycleConceived Lifecycle = "conceived" // add attempted, not completed
	LifecycleGestating Lifecycle = "gestating" // add completed, still inside the grace period
	LifecycleLive      Lifecycle = "live"      // the account exists
	LifecycleReaping   Lifecycle = "reaping"   // delete requested, not completed
	LifecycleCorpse    Lifecycle = "corpse"    // delete completed, still inside the grace period
	LifecycleTombstone Lifecycle = "tombstone" // dead
)

// OperationType is midPoint's pendingOperationType.
type OperationType string

// Operation types: asynchronous (sent, the target works on it), retry (postponed after a
// communication error) and manual (reserved for manual resources).
const (
	TypeAsynchronous OperationType = "asynchronous"
	TypeRetry        OperationType = "retry"
	TypeManual       OperationType = "manual"
)

// ExecutionStatus is midPoint's pendingOperationExecutionStatus.
type ExecutionStatus string

// Execution statuses: requested (queued behind other work), executionPending (released, waiting
// for the dispatcher), executing (attempted, waiting for an answer or a retry) and completed.
const (
	StatusRequested        ExecutionStatus = "requested"
	StatusExecutionPending ExecutionStatus = "executionPending"
	StatusExecuting        ExecutionStatus = "executing"
	StatusCompleted        ExecutionStatus = "completed"
)

// ResultStatus is midPoint's OperationResultStatusType.
type ResultStatus string

// Result statuses, with midPoint's spelling.
const (
	ResultInProgress    ResultStatus = "in_progress"
	ResultSuccess       ResultStatus = "success"
	ResultWarning       ResultStatus = "warning"
	ResultPartialError  ResultStatus = "partial_error"
	ResultFatalError    ResultStatus = "fatal_error"
	ResultHandledError  ResultStatus = "handled_error"
	ResultNotApplicable ResultStatus = "not_applicable"
	ResultUnknown       ResultStatus = "unknown"
)

// Final reports whether r may end an operation (a confirmation carries one of these).
func (r ResultStatus) Final() bool {
	switch r {
	case ResultSuccess, ResultWarning, ResultPartialError, ResultFatalError, ResultHandledError, ResultNotApplicable:
		return true
	}
	return false
}

// applied reports whether an operation that ended with r changed the account.
func (r ResultStatus) applied() bool {
	switch r {
	case ResultSuccess, ResultWarning, ResultPartialError, ResultHandledError:
		return true
	}
	return false
}

// ChangeType is the kind of delta.
type ChangeType string

// Change types.
const (
	ChangeAdd    ChangeType = "add"
	ChangeModify ChangeType = "modify"
	ChangeDelete ChangeType = "delete"
)

// Delta is what an operation asks the target to do.
type Delta struct {
	ChangeType ChangeType `json:"changeType"`
	Attributes Attributes `json:"attributes,omitempty"` // add
	Changes    Changes    `json:"changes,omitempty"`    // modify
	// Order lists the attribute names of Attributes or Changes in the order the request gave
	// them. Transformations that reproduce midPoint's output byte for byte need it.
	Order []string `json:"order,omitempty"`
}

func (d Delta) clone() Delta {
	return Delta{ChangeType: d.ChangeType, Attributes: d.Attributes.Clone(), Changes: d.Changes.Clone(), Order: slices.Clone(d.Order)}
}

// OrderNames returns names in the given order, keeping only the given names that are in names,
// without repeats, and appending the other names in their order (deterministic whatever the
// caller gave). It returns nil for no names.
func OrderNames(given []string, names []string) []string {
	if len(names) == 0 {
		return nil
	}
	out := make([]string, 0, len(names))
	for _, n := range given {
		if slices.Contains(names, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// OperationError is the last error of an operation.
type OperationError struct {
	Category Category `json:"category"`
	Message  string   `json:"message"`
}

// String is "category: message", the category said once: a message that already starts with
// its category (as a transport's error often does) is not prefixed again.
func (e OperationError) String() string {
	if strings.HasPrefix(e.Message, string(e.Category)+": ") || e.Category == "" {
		return e.Message
	}
	return string(e.Category) + ": " + e.Message
}

// PendingOperation is midPoint's pending operation: one unfinished (or recently finished) delta.
type PendingOperation struct {
	ID                             string          `json:"id"`
	Type                           OperationType   `json:"type"`
	Delta                          Delta           `json:"delta"`
	ExecutionStatus                ExecutionStatus `json:"executionStatus"`
	ResultStatus                   ResultStatus    `json:"resultStatus"`
	AttemptNumber                  int             `json:"attemptNumber"`
	RequestTimestamp               time.Time       `json:"requestTimestamp"`
	LastAttemptTimestamp           time.Time       `json:"lastAttemptTimestamp,omitzero"`
	CompletionTimestamp            time.Time       `json:"completionTimestamp,omitzero"`
	AsynchronousOperationReference string          `json:"asynchronousOperationReference,omitempty"`
	LastError                      *OperationError `json:"lastError,omitempty"`
	RequestID                      string          `json:"requestId,omitempty"`
	Message                        string          `json:"message,omitempty"`
	// GracePeriodEnd is set on a completed operation while its pendingOperationGracePeriod runs.
	GracePeriodEnd time.Time `json:"gracePeriodEnd,omitzero"`
	// TraceParent is the W3C traceparent of the request that made the operation (our
	// extension): its attempts and its confirmation join that trace.
	TraceParent string `json:"traceparent,omitempty"`
	// Sequence is the operation's place among the shadow's operations released to the target
	// (see DispatchRequested); 0 until it is first released.
	Sequence int64 `json:"sequence,omitempty"`
}

// Completed reports whether the operation has ended.
func (p PendingOperation) Completed() bool { return p.ExecutionStatus == StatusCompleted }

func (p PendingOperation) clone() PendingOperation {
	c := p
	c.Delta = p.Delta.clone()
	if p.LastError != nil {
		e := *p.LastError
		c.LastError = &e
	}
	return c
}

// ShadowData is the plain form of a shadow: what queries return, what the projection stores and
// what snapshots hold. Its JSON form is the shadow of CONTRACT.md.
type ShadowData struct {
	ShadowID             string             `json:"shadowId"`
	Resource             string             `json:"resource"`
	ObjectClass          string             `json:"objectClass"`
	LifecycleState       Lifecycle          `json:"lifecycleState"`
	Exists               bool               `json:"exists"`
	Dead                 bool               `json:"dead"`
	Assigned             bool               `json:"assigned"`
	PrimaryIdentifiers   Attributes         `json:"primaryIdentifiers"`
	SecondaryIdentifiers Attributes         `json:"secondaryIdentifiers"`
	Attributes           Attributes         `json:"attributes"`
	PendingOperations    []PendingOperation `json:"pendingOperations"`
	CreateTimestamp      time.Time          `json:"createTimestamp"`
	ModifyTimestamp      time.Time          `json:"modifyTimestamp,omitzero"`
	DeathTimestamp       time.Time          `json:"deathTimestamp,omitzero"`
	// Expired is set when a dead shadow's retention is over: it leaves the projection.
	Expired bool `json:"expired,omitempty"`
	// LastSequence is the highest Sequence given to an operation; DeliveredSequence the Sequence
	// of the last operation the transport accepted (the next request's PreviousSequence).
	LastSequence      int64 `json:"lastSequence,omitempty"`
	DeliveredSequence int64 `json:"deliveredSequence,omitempty"`
	// TargetChange is the last change made on the target outside shadowbridge that the shadow
	// followed (nil: none), for explain: the history has them all.
	TargetChange *TargetChange `json:"targetChange,omitempty"`
	Version      int64         `json:"version"`
}

// TargetChange is a change made on the target outside shadowbridge, as a reconciliation or the
// target's notification showed it (ShadowData.TargetChange).
type TargetChange struct {
	// Kind is what the target did: changed (attributes), gone (the account, the shadow died),
	// lost (the account, re-created because it is assigned) or discovered (an account with no
	// shadow).
	Kind   string `json:"kind"`
	Source string `json:"source"` // reconciliation or notification
	// Reconciliation is the run that saw it, when a run did.
	Reconciliation string `json:"reconciliation,omitempty"`
	// Attributes names the attributes a change touched.
	Attributes []string  `json:"attributes,omitempty"`
	Time       time.Time `json:"time"`
}

// What TargetChange.Kind says the target did.
const (
	TargetChanged    = "changed"
	TargetGone       = "gone"
	TargetLost       = "lost"
	TargetDiscovered = "discovered"
)

func (d ShadowData) clone() ShadowData {
	c := d
	c.PrimaryIdentifiers = d.PrimaryIdentifiers.Clone()
	c.SecondaryIdentifiers = d.SecondaryIdentifiers.Clone()
	c.Attributes = d.Attributes.Clone()
	if d.TargetChange != nil {
		tc := *d.TargetChange
		tc.Attributes = slices.Clone(tc.Attributes)
		c.TargetChange = &tc
	}
	c.PendingOperations = make([]PendingOperation, len(d.PendingOperations))
	for i, p := range d.PendingOperations {
		c.PendingOperations[i] = p.clone()
	}
	return c
}

// Shadow is the aggregate: midPoint's shadow of one account. The zero value is "no shadow yet".
// A Shadow is an immutable value: Evolve returns a new one, so old states can be kept and compared.
type Shadow struct {
	d ShadowData
}

// RestoreShadow rebuilds a shadow from its plain form (a snapshot); d stays the caller's.
func RestoreShadow(d ShadowData) Shadow { return Shadow{d: d.clone()} }

// AdoptShadow is RestoreShadow without the copy, for decoders that build d afresh: the shadow
// takes d over, and the caller must neither change nor keep d or anything it references.
func AdoptShadow(d ShadowData) Shadow { return Shadow{d: d} }

// OperationStatuses yields each pending operation's id and execution status, oldest first,
// without copying the shadow (a reader that needs no more than these skips Data's deep copy).
func (s Shadow) OperationStatuses() iter.Seq2[string, ExecutionStatus] {
	return func(yield func(string, ExecutionStatus) bool) {
		for _, p := range s.d.PendingOperations {
			if !yield(p.ID, p.ExecutionStatus) {
				return
			}
		}
	}
}

// Data returns a deep copy of the shadow's plain form.
func (s Shadow) Data() ShadowData { return s.d.clone() }

// View calls fn with the shadow's plain form without copying it, for encoders on hot paths.
// fn must not modify or retain it.
func (s Shadow) View(fn func(any) error) error { return fn(&s.d) }

// ID returns the shadow id ("" for the zero shadow).
func (s Shadow) ID() string { return s.d.ShadowID }

// Resource returns the resource name.
func (s Shadow) Resource() string { return s.d.Resource }

// ObjectClass returns the object class name.
func (s Shadow) ObjectClass() string { return s.d.ObjectClass }

// Created reports whether the shadow has been created (an add was requested).
func (s Shadow) Created() bool { return s.d.ShadowID != "" }

// Dead reports whether the shadow is dead.
func (s Shadow) Dead() bool { return s.d.Dead }

// Expired reports whether the shadow is dead and past its retention (it leaves the projection).
func (s Shadow) Expired() bool { return s.d.Expired }

// Lifecycle returns the lifecycle state as of the last event.
func (s Shadow) Lifecycle() Lifecycle { return s.d.LifecycleState }

// Version counts the events applied to the shadow.
func (s Shadow) Version() int64 { return s.d.Version }

// Operation returns the pending operation with the given id.
func (s Shadow) Operation(id string) (PendingOperation, bool) {
	i := s.opIndex(id)
	if i < 0 {
		return PendingOperation{}, false
	}
	return s.d.PendingOperations[i].clone(), true
}

// HasUnfinished reports whether any operation is not completed yet.
func (s Shadow) HasUnfinished() bool {
	return slices.ContainsFunc(s.d.PendingOperations, func(p PendingOperation) bool { return !p.Completed() })
}

// HasOperation reports whether the shadow holds a pending operation with the given id.
func (s Shadow) HasOperation(id string) bool { return s.opIndex(id) >= 0 }

func (s Shadow) opIndex(id string) int {
	return slices.IndexFunc(s.d.PendingOperations, func(p PendingOperation) bool { return p.ID == id })
}

func (s Shadow) unfinished(ct ChangeType) bool {
	return slices.ContainsFunc(s.d.PendingOperations, func(p PendingOperation) bool {
		return !p.Completed() && p.Delta.ChangeType == ct
	})
}

// futureAttributes is the attribute cache with every unfinished modify applied: what the account
// will hold when the queue drains. Uniqueness and validation look at this, not the cache alone.
func (s Shadow) futureAttributes() Attributes {
	a := s.d.Attributes
	for _, p := range s.d.PendingOperations {
		if !p.Completed() && p.Delta.ChangeType == ChangeModify {
			a = applyChanges(a, p.Delta.Changes)
		}
	}
	return a
}

// IdentifierKind says whether a Claim is on the naming (secondary) or the primary identifier.
type IdentifierKind string

// Identifier kinds.
const (
	SecondaryIdentifier IdentifierKind = "secondary"
	PrimaryIdentifier   IdentifierKind = "primary"
)

// Claim is one identifier value a shadow holds. Secondary identifiers are exclusive among the
// live shadows of a resource and object class; primary identifiers are for lookups only.
type Claim struct {
	Kind        IdentifierKind
	Resource    string
	ObjectClass string
	Attribute   string
	Value       any
}

// Claims returns the identifier values the shadow holds now or will hold when its pending
// modifications complete. A dead shadow holds none. The command path reserves the claims a
// decision adds and frees the ones it drops.
func (s Shadow) Claims() []Claim {
	if !s.Created() || s.d.Dead {
		return nil
	}
	var out []Claim
	add := func(kind IdentifierKind, attr string, v any) {
		c := Claim{Kind: kind, Resource: s.d.Resource, ObjectClass: s.d.ObjectClass, Attribute: attr, Value: v}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	future := s.futureAttributes()
	for _, attr := range s.d.SecondaryIdentifiers.Names() {
		for _, v := range s.d.SecondaryIdentifiers[attr] {
			add(SecondaryIdentifier, attr, v)
		}
		for _, v := range future[attr] {
			add(SecondaryIdentifier, attr, v)
		}
	}
	for _, attr := range s.d.PrimaryIdentifiers.Names() {
		for _, v := range s.d.PrimaryIdentifiers[attr] {
			add(PrimaryIdentifier, attr, v)
		}
	}
	return out
}

// inGrace reports whether an operation of the given kind completed with an applied result and is
// still inside its grace period at "at".
func inGrace(d ShadowData, ct ChangeType, at time.Time) bool {
	return slices.ContainsFunc(d.PendingOperations, func(p PendingOperation) bool {
		return p.Completed() && p.Delta.ChangeType == ct && p.ResultStatus.applied() && at.Before(p.GracePeriodEnd)
	})
}

func deriveLifecycle(d ShadowData, at time.Time) Lifecycle {
	if d.Dead {
		if inGrace(d, ChangeDelete, at) {
			return LifecycleCorpse
		}
		return LifecycleTombstone
	}
	for _, p := range d.PendingOperations {
		if !p.Completed() && p.Delta.ChangeType == ChangeDelete && p.ExecutionStatus != StatusRequested {
			return LifecycleReaping
		}
	}
	if d.Exists {
		if inGrace(d, ChangeAdd, at) {
			return LifecycleGestating
		}
		return LifecycleLive
	}
	for _, p := range d.PendingOperations {
		if p.Delta.ChangeType == ChangeAdd && !p.Completed() {
			if p.AttemptNumber > 0 || p.ExecutionStatus == StatusExecuting {
				return LifecycleConceived
			}
			return LifecycleProposed
		}
	}
	return LifecycleProposed
}

// MarshalJSON writes the contract's shape, with empty objects and lists instead of null.
func (d ShadowData) MarshalJSON() ([]byte, error) {
	type plain ShadowData
	p := plain(d)
	if p.PrimaryIdentifiers == nil {
		p.PrimaryIdentifiers = Attributes{}
	}
	if p.SecondaryIdentifiers == nil {
		p.SecondaryIdentifiers = Attributes{}
	}
	if p.Attributes == nil {
		p.Attributes = Attributes{}
	}
	if p.PendingOperations == nil {
		p.PendingOperations = []PendingOperation{}
	}
	return json.Marshal(p)
}
