package domain

import (
	"fmt"
	"time"
)

// Reconciliation run states (ReconciliationRun.State).
const (
	RunRunning  = "running"
	RunFinished = "finished"
	RunFailed   = "failed"
)

// ReconciliationCounts are what a reconciliation found: accounts listed, and per account (or,
// for Gone and Recreated, per live shadow the listing did not name) what was decided.
type ReconciliationCounts struct {
	Accounts   int `json:"accounts"`
	Unchanged  int `json:"unchanged"`
	Changed    int `json:"changed"`
	Discovered int `json:"discovered"`
	Skipped    int `json:"skipped"` // an operation was on its way: not compared
	Gone       int `json:"gone"`
	Recreated  int `json:"recreated"`
}

// Add returns the sum of two counts.
func (c ReconciliationCounts) Add(o ReconciliationCounts) ReconciliationCounts {
	return ReconciliationCounts{Accounts: c.Accounts + o.Accounts, Unchanged: c.Unchanged + o.Unchanged, Changed: c.Changed + o.Changed,
		Discovered: c.Discovered + o.Discovered, Skipped: c.Skipped + o.Skipped, Gone: c.Gone + o.Gone, Recreated: c.Recreated + o.Recreated}
}

// ReconciliationRun is a resource's last reconciliation run: the target lists its accounts in
// pages, each applied once and in order, then the live shadows the listing did not name follow
// the discovery rule.
type ReconciliationRun struct {
	ID         string               `json:"id"`
	State      string               `json:"state"`
	StartedAt  time.Time            `json:"startedAt"`
	LastPageAt time.Time            `json:"lastPageAt,omitzero"`
	FinishedAt time.Time            `json:"finishedAt,omitzero"`
	Pages      int                  `json:"pages"`
	LastPage   bool                 `json:"lastPage,omitempty"` // the target sent its last page
	Counts     ReconciliationCounts `json:"counts"`
	Reason     string               `json:"reason,omitempty"` // why it failed
}

// Running reports whether the run has started and not ended.
func (r *ReconciliationRun) Running() bool { return r != nil && r.State == RunRunning }

// ReconciliationStarted records that a reconciliation run of the resource began.
type ReconciliationStarted struct {
	Resource string    `json:"resource"`
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
}

// ReconciliationPageApplied records that one page of the target's listing was applied.
type ReconciliationPageApplied struct {
	Resource string               `json:"resource"`
	ID       string               `json:"id"`
	Page     int                  `json:"page"`
	Last     bool                 `json:"last,omitempty"`
	Counts   ReconciliationCounts `json:"counts"`
	Time     time.Time            `json:"time"`
}

// ReconciliationFinished records the end of a run: Counts are the missing-account pass's.
type ReconciliationFinished struct {
	Resource string               `json:"resource"`
	ID       string               `json:"id"`
	Counts   ReconciliationCounts `json:"counts"`
	Time     time.Time            `json:"time"`
}

// ReconciliationFailed records that a run ended without finishing (the target stopped
// answering).
type ReconciliationFailed struct {
	Resource string    `json:"resource"`
	ID       string    `json:"id"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

func (ReconciliationStarted) EventType() string          { return "ReconciliationStarted" }
func (ReconciliationPageApplied) EventType() string      { return "ReconciliationPageApplied" }
func (ReconciliationFinished) EventType() string         { return "ReconciliationFinished" }
func (ReconciliationFailed) EventType() string           { return "ReconciliationFailed" }
func (e ReconciliationStarted) EventTime() time.Time     { return e.Time }
func (e ReconciliationPageApplied) EventTime() time.Time { return e.Time }
func (e ReconciliationFinished) EventTime() time.Time    { return e.Time }
func (e ReconciliationFailed) EventTime() time.Time      { return e.Time }

// ReconciliationIdle is how long a run may go without a page before a new request starts
// another (the old one failed: the target never answered, or lost the request).
const ReconciliationIdle = 10 * time.Minute

// DecideReconcile answers a request to reconcile the resource: a run already going joins it (no
// events, its id), one idle for longer than ReconciliationIdle is failed and a new one, id,
// started.
func DecideReconcile(r ResourceState, resource, id string, now time.Time) ([]Event, string, error) {
	if !ValidToken(resource) {
		return nil, "", fmt.Errorf("%w: resource %q", ErrUnknownResource, resource)
	}
	if !ValidID(id) {
		return nil, "", wrap("reconcile", ErrInvalidID, "a run id must be a UUID")
	}
	var events []Event
	if run := r.d.Reconciliation; run.Running() {
		last := run.StartedAt
		if run.LastPageAt.After(last) {
			last = run.LastPageAt
		}
		if now.Sub(last) < ReconciliationIdle {
			return nil, run.ID, nil
		}
		events = append(events, ReconciliationFailed{Resource: resource, ID: run.ID, Time: now,
			Reason: fmt.Sprintf("no page from the target for %s", now.Sub(last).Round(time.Second))})
	}
	return append(events, ReconciliationStarted{Resource: resource, ID: id, Time: now}), id, nil
}

// DecidePage applies page number page (1, 2, ...) of run id: once (a page seen before changes
// nothing) and in order (a page ahead of the next is refused with ErrAttemptOutOfSequence:
// the transport redelivers it later).
func DecidePage(r ResourceState, resource, id string, page int, last bool, counts ReconciliationCounts, now time.Time) ([]Event, error) {
	run := r.d.Reconciliation
	if run == nil || run.ID != id {
		return nil, wrap("page", ErrOperationNotFound, "reconciliation %s is not the resource's run", id)
	}
	if page <= run.Pages {
		return nil, nil
	}
	if !run.Running() {
		return nil, wrap("page", ErrOperationFinished, "reconciliation %s is %s", id, run.State)
	}
	if page != run.Pages+1 {
		return nil, wrap("page", ErrAttemptOutOfSequence, "page %d of reconciliation %s before page %d", page, id, run.Pages+1)
	}
	return []Event{ReconciliationPageApplied{Resource: resource, ID: id, Page: page, Last: last, Counts: counts, Time: now}}, nil
}

// DecideFinish ends run id after its last page, with the missing-account pass's counts. A run
// finished already changes nothing.
func DecideFinish(r ResourceState, resource, id string, counts ReconciliationCounts, now time.Time) ([]Event, error) {
	run := r.d.Reconciliation
	switch {
	case run == nil || run.ID != id:
		return nil, wrap("finish", ErrOperationNotFound, "reconciliation %s is not the resource's run", id)
	case run.State == RunFinished:
		return nil, nil
	case !run.Running() || !run.LastPage:
		return nil, wrap("finish", ErrAttemptOutOfSequence, "reconciliation %s has not received its last page", id)
	}
	return []Event{ReconciliationFinished{Resource: resource, ID: id, Counts: counts, Time: now}}, nil
}

// evolveReconciliation applies a run's event to d; false for another event.
func evolveReconciliation(d *ResourceData, e Event) bool {
	switch x := e.(type) {
	case ReconciliationStarted:
		d.Resource = x.Resource
		d.Reconciliation = &ReconciliationRun{ID: x.ID, State: RunRunning, StartedAt: x.Time}
	case ReconciliationPageApplied:
		if run := d.Reconciliation; run != nil && run.ID == x.ID {
			run.Pages, run.LastPage, run.LastPageAt = x.Page, x.Last, x.Time
			run.Counts = run.Counts.Add(x.Counts)
		}
	case ReconciliationFinished:
		if run := d.Reconciliation; run != nil && run.ID == x.ID {
			run.State, run.FinishedAt = RunFinished, x.Time
			run.Counts = run.Counts.Add(x.Counts)
		}
	case ReconciliationFailed:
		if run := d.Reconciliation; run != nil && run.ID == x.ID {
			run.State, run.FinishedAt, run.Reason = RunFailed, x.Time, x.Reason
		}
	default:
		return false
	}
	return true
}
