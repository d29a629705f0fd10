package projections

import (
	"context"
	"time"

	"shadowbridge/domain"
)

// ResourceView is one resource on the dashboard.
type ResourceView struct {
	Resource     string              `json:"resource"`
	Availability domain.ResourceData `json:"availability"`
	Counts       ResourceCounts      `json:"counts"`
}

// DashboardData is what the dashboard shows (GET /api/dashboard, and each server-sent event of
// /api/stream).
type DashboardData struct {
	Time      time.Time      `json:"time"`
	Resources []ResourceView `json:"resources"`
	// Pending is the first page (DashboardPageSize rows) of the shadows with unfinished
	// operations, PendingTotal how many there are; the next pages are GET /api/pending.
	Pending      []PendingRow `json:"pending"`
	PendingTotal int          `json:"pendingTotal"`
	// RecentFailures are the newest failed attempts and fatal errors still in the projection
	// (RecentFailureCount at most), newest first.
	RecentFailures []FailureRow `json:"recentFailures"`
	// Charts are the per-resource series over the last hour and day (Charts).
	Charts map[string]ChartWindow `json:"charts"`
}

// DashboardPageSize is the number of rows of a page of the dashboard's pending table.
const DashboardPageSize = 50

// RecentFailureCount is the number of failures the dashboard lists.
const RecentFailureCount = 20

// PendingRow is a row of the dashboard's pending table: what the table shows of a shadow (the
// same names as the shadow's JSON), not the shadow, so that a push stays small.
type PendingRow struct {
	Resource          string           `json:"resource"`
	ShadowID          string           `json:"shadowId"`
	LifecycleState    domain.Lifecycle `json:"lifecycleState"`
	PendingOperations []PendingOpRow   `json:"pendingOperations"`
	// Since is when the oldest unfinished operation was requested (the row's age).
	Since time.Time `json:"since,omitzero"`
	// NextAttempt is when the earliest retry is due (absent: no operation waits for a retry).
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	// LastError is the newest error of an unfinished operation's attempts, "category: message".
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// PendingOpRow is an unfinished operation in a PendingRow.
type PendingOpRow struct {
	Delta struct {
		ChangeType domain.ChangeType `json:"changeType"`
	} `json:"delta"`
	ExecutionStatus domain.ExecutionStatus `json:"executionStatus"`
	Type            domain.OperationType   `json:"type"`
	AttemptNumber   int                    `json:"attemptNumber"`
	// Change says in a line what the operation carries (attr=value, attr+=value, attr-=value).
	Change string `json:"change,omitempty"`
}

// NextAttemptFunc says when a shadow's earliest retry is due (false: none waits), by its
// resource's consistency settings (domain.NextRetry).
type NextAttemptFunc func(domain.ShadowData) (time.Time, bool)

// NewPendingRow summarizes a shadow for the pending table. next may be nil (no next attempt).
func NewPendingRow(sd domain.ShadowData, next NextAttemptFunc) PendingRow {
	row := PendingRow{Resource: sd.Resource, ShadowID: sd.ShadowID, LifecycleState: sd.LifecycleState, PendingOperations: []PendingOpRow{}}
	for _, p := range sd.PendingOperations {
		if p.Completed() {
			continue
		}
		if row.Since.IsZero() || p.RequestTimestamp.Before(row.Since) {
			row.Since = p.RequestTimestamp
		}
		if p.LastError != nil && !p.LastAttemptTimestamp.Before(row.LastErrorAt) {
			row.LastErrorAt, row.LastError = p.LastAttemptTimestamp, p.LastError.String()
		}
		var op PendingOpRow
		op.Delta.ChangeType, op.ExecutionStatus, op.Type, op.AttemptNumber = p.Delta.ChangeType, p.ExecutionStatus, p.Type, p.AttemptNumber
		op.Change = ChangeSummary(p.Delta, 80)
		row.PendingOperations = append(row.PendingOperations, op)
	}
	if next != nil {
		if at, ok := next(sd); ok {
			row.NextAttempt = at
		}
	}
	return row
}

// PendingRows is a page of the pending table (GET /api/pending).
type PendingRows struct {
	Shadows []PendingRow `json:"shadows"`
	Total   int          `json:"total"`
	Next    string       `json:"next,omitempty"`
}

// Rows returns a page of the pending table: the rows of ix.PendingPage(resource, after, limit).
func (ix *PendingIndex) Rows(ctx context.Context, resource, after string, limit int, next NextAttemptFunc) (PendingRows, error) {
	page, err := ix.PendingPage(ctx, resource, after, limit)
	if err != nil {
		return PendingRows{}, err
	}
	out := PendingRows{Shadows: make([]PendingRow, 0, len(page.Shadows)), Total: page.Total, Next: page.Next}
	for _, sd := range page.Shadows {
		out.Shadows = append(out.Shadows, NewPendingRow(sd, next))
	}
	return out, nil
}

// ResourceStates gives a resource's availability (the command service implements it).
type ResourceStates interface {
	ResourceState(ctx context.Context, resource string) (domain.ResourceData, error)
}

// DashboardSources are the read models the dashboard is assembled from.
type DashboardSources struct {
	States      ResourceStates
	Dashboard   *Dashboard
	Trend       *Trend
	Pending     *PendingIndex
	NextAttempt NextAttemptFunc
}

// BuildDashboard assembles what the dashboard shows at now for the named resources: their
// availability and counts, their charts, the first page of shadows with unfinished operations
// and the recent failures.
func BuildDashboard(ctx context.Context, now time.Time, names []string, src DashboardSources) (DashboardData, error) {
	counts, err := src.Dashboard.Counts(ctx, now)
	if err != nil {
		return DashboardData{}, err
	}
	by := map[string]ResourceCounts{}
	for _, c := range counts {
		by[c.Resource] = c
	}
	out := DashboardData{Time: now, Resources: []ResourceView{}}
	for _, name := range names {
		st, err := src.States.ResourceState(ctx, name)
		if err != nil {
			return DashboardData{}, err
		}
		c, ok := by[name]
		if !ok {
			c = ResourceCounts{Resource: name, ByLifecycle: map[domain.Lifecycle]int{}, PendingByStatus: map[domain.ExecutionStatus]int{}}
		}
		out.Resources = append(out.Resources, ResourceView{Resource: name, Availability: st, Counts: c})
	}
	if out.Charts, err = Charts(ctx, src.Dashboard, src.Trend, names, now); err != nil {
		return DashboardData{}, err
	}
	rows, err := src.Pending.Rows(ctx, "", "", DashboardPageSize, src.NextAttempt)
	if err != nil {
		return DashboardData{}, err
	}
	out.Pending, out.PendingTotal = rows.Shadows, rows.Total
	out.RecentFailures = src.Dashboard.RecentFailures(RecentFailureCount)
	return out, nil
}
