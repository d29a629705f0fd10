package projections

import (
	"context"
	"fmt"
	"slices"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Log is what the queries read: a shadow's last commit, its commit as of a time, its history.
type Log interface {
	LoadByID(ctx context.Context, shadowID string) (domain.Shadow, uint64, error)
	CommitAsOf(ctx context.Context, shadowID string, t time.Time) (*eventstore.Record, error)
	History(ctx context.Context, shadowID string) ([]*eventstore.Record, error)
	// LoadResource reads a resource's state (explain says why work waits from it).
	LoadResource(ctx context.Context, resource string) (domain.ResourceState, uint64, error)
}

var _ Log = (*eventstore.Store)(nil)

// Queries answers questions about one shadow from the log: its state at a past time, its
// history, and why it is where it is. Safe for concurrent use; it holds no state of its own.
type Queries struct {
	log Log
	now func() time.Time
}

// NewQueries returns the queries over log; now is the clock explanations are computed at.
func NewQueries(log Log, now func() time.Time) *Queries {
	if now == nil {
		now = time.Now
	}
	return &Queries{log: log, now: now}
}

// AsOf returns the shadow as it was at asOf: the state held by the last commit decided at or
// before that time (each commit holds the state its decision left, and a decision's events share
// one time). ErrShadowNotFound when it did not exist then.
func (q *Queries) AsOf(ctx context.Context, shadowID string, asOf time.Time) (domain.ShadowData, error) {
	if !domain.ValidID(shadowID) {
		return domain.ShadowData{}, fmt.Errorf("shadow: %w: shadowId %q is not a UUID", domain.ErrInvalidID, shadowID)
	}
	at, err := q.log.CommitAsOf(ctx, shadowID, asOf)
	if err != nil {
		return domain.ShadowData{}, err
	}
	st := domain.Shadow{}
	if at != nil {
		if st, err = at.State(); err != nil {
			return domain.ShadowData{}, err
		}
	}
	if !st.Created() {
		return domain.ShadowData{}, fmt.Errorf("get: %w: %s did not exist at %s", domain.ErrShadowNotFound, shadowID, asOf.Format(time.RFC3339Nano))
	}
	return st.Data(), nil
}

// Explain says why the shadow is in its lifecycle state and what happens next (due timers,
// grace windows, operations waiting), from its current state and its resource's consistency
// settings (cons).
func (q *Queries) Explain(ctx context.Context, shadowID string, cons func(resource string) domain.Consistency) (domain.Explanation, error) {
	if !domain.ValidID(shadowID) {
		return domain.Explanation{}, fmt.Errorf("explain: %w: shadowId %q is not a UUID", domain.ErrInvalidID, shadowID)
	}
	st, _, err := q.log.LoadByID(ctx, shadowID)
	if err != nil {
		return domain.Explanation{}, err
	}
	if !st.Created() {
		return domain.Explanation{}, fmt.Errorf("explain: %w: %s", domain.ErrShadowNotFound, shadowID)
	}
	// The resource's maintenance or outage says why work waits; unreadable, the shadow alone
	// still explains itself.
	res, _, err := q.log.LoadResource(ctx, st.Resource())
	if err != nil {
		res = domain.ResourceState{}
	}
	return domain.ExplainIn(st, cons(st.Resource()), res, q.now()), nil
}

// HistoryEvent is one event as history and audit show it.
type HistoryEvent struct {
	Seq         uint64    `json:"seq"`
	Time        time.Time `json:"time"`
	Type        string    `json:"type"`
	Resource    string    `json:"resource"`
	ShadowID    string    `json:"shadowId"`
	ObjectClass string    `json:"objectClass,omitempty"`
	OperationID string    `json:"operationId,omitempty"`
	// Operation is the change type of the operation the event is about (add, modify, delete).
	Operation string `json:"operation,omitempty"`
	Attempt   int    `json:"attempt,omitempty"`
	RequestID string `json:"requestId,omitempty"`
	// Outcome says what the event means for its operation: a result status when it completes,
	// "sent", "failed: <category>", "postponed", "released".
	Outcome string       `json:"outcome,omitempty"`
	Event   domain.Event `json:"event"`

	// rec and idx name the event in its record when Event was not decoded (AuditJSON).
	rec *eventstore.Record
	idx int
}

// History returns a shadow's events in order.
func (q *Queries) History(ctx context.Context, shadowID string) ([]HistoryEvent, error) {
	if !domain.ValidID(shadowID) {
		return nil, fmt.Errorf("history: %w: shadowId %q is not a UUID", domain.ErrInvalidID, shadowID)
	}
	recs, err := q.log.History(ctx, shadowID)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("history: %w: %s", domain.ErrShadowNotFound, shadowID)
	}
	out := []HistoryEvent{}
	for _, rec := range recs {
		evs, err := HistoryOf(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// HistoryOf turns one record into history events: each with its operation's change type,
// attempt, request id and outcome, taken from the events and from the shadow the record holds.
func HistoryOf(rec *eventstore.Record) ([]HistoryEvent, error) {
	var s historyScratch
	return s.historyOf(rec, true)
}

// targetOutcome says, for the events that follow a change made on the target outside
// shadowbridge, what the target did and how it was seen ("" for the others).
func targetOutcome(e eventstore.EventSummary) string {
	by := ""
	if e.Source != "" {
		by = " (seen by " + e.Source + ")"
	}
	switch e.Type {
	case "AccountChanged":
		return "changed on the target" + by
	case "AccountGone":
		if e.Source == "" {
			return "" // a not-found answer to an operation: the operation's own events say so
		}
		return "gone from the target" + by
	case "RecreateRequested":
		if e.Source == "" {
			return ""
		}
		return "lost by the target" + by + ": created again"
	case "ShadowDiscovered":
		if e.Source != domain.SourceReconciliation && e.Source != domain.SourceNotification {
			return ""
		}
		return "found on the target" + by
	}
	return ""
}

// historyScratch holds the slices historyOf fills: an audit reuses them from record to record
// (it is done with a record's events before it reads the next).
type historyScratch struct {
	sums []eventstore.EventSummary
	out  []HistoryEvent
}

// historyOf is HistoryOf, its result valid until the next call; with decode false the events
// are not decoded: each HistoryEvent keeps its record and index instead of Event, and AppendJSON
// writes the event from the stored bytes (what an audit in JSON needs, at a fraction of the
// cost).
func (sc *historyScratch) historyOf(rec *eventstore.Record, decode bool) ([]HistoryEvent, error) {
	var evs []domain.Event
	var err error
	sums := sc.sums[:0]
	if decode {
		if evs, err = rec.Events(); err != nil {
			return nil, err
		}
		for _, e := range evs {
			sums = append(sums, eventstore.Summarize(e))
		}
	} else if sums, err = rec.AppendEventSummaries(sums); err != nil {
		return nil, err
	}
	sc.sums = sums
	st, err := rec.StateSummary() // not the whole state: a tenth of an audit's time
	if err != nil {
		return nil, err
	}
	reqID, _ := rec.RequestID()
	out := slices.Grow(sc.out[:0], len(sums))[:len(sums)]
	sc.out = out
	for i, e := range sums {
		h := &out[i]
		*h = HistoryEvent{Seq: rec.Seq, Time: e.Time, Type: e.Type, Resource: rec.Resource,
			ShadowID: rec.ShadowID, ObjectClass: st.ObjectClass, OperationID: e.OperationID}
		if decode {
			h.Event = evs[i]
		} else {
			h.rec, h.idx = rec, i
		}
		if h.OperationID != "" {
			if p, ok := st.Op(h.OperationID); ok {
				h.Operation, h.RequestID = string(p.ChangeType), p.RequestID
			}
		}
		if h.RequestID == "" && h.OperationID != "" {
			h.RequestID = reqID
		}
		switch e.Type {
		case "AddRequested":
			h.Operation = string(domain.ChangeAdd)
		case "ModifyRequested":
			h.Operation = string(domain.ChangeModify)
		case "DeleteRequested":
			h.Operation = string(domain.ChangeDelete)
		case "DispatchRequested":
			h.Attempt, h.Outcome = e.Attempt, "released"
		case "OperationSent":
			h.Attempt, h.Outcome = e.Attempt, "sent"
		case "AttemptFailed":
			h.Attempt, h.Outcome = e.Attempt, "failed: "+string(e.ErrorCategory)
		case "OperationPostponed":
			h.Attempt, h.Outcome = e.Attempt, "postponed"
		case "OperationCompleted":
			h.Outcome = string(e.Result)
		default:
			h.Outcome = targetOutcome(e)
		}
	}
	return out, nil
}
