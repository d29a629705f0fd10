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
	Pending   []PendingRow   `json:"pending"` // the first 50 shadows with unfinished operations
	// Charts are the per-resource series over the last hour and day (Charts).
	Charts map[string]ChartWindow `json:"charts"`
}

// PendingRow is a row of the dashboard's pending table: what the table shows of a shadow (the
// same names as the shadow's JSON), not the shadow, so that a push stays small.
type PendingRow struct {
	Resource          string           `json:"resource"`
	ShadowID          string           `json:"shadowId"`
	LifecycleState    domain.Lifecycle `json:"lifecycleState"`
	PendingOperations []PendingOpRow   `json:"pendingOperations"`
}

// PendingOpRow is an unfinished operation in a PendingRow.
type PendingOpRow struct {
	Delta struct {
		ChangeType domain.ChangeType `json:"changeType"`
	} `json:"delta"`
	ExecutionStatus domain.ExecutionStatus `json:"executionStatus"`
	AttemptNumber   int                    `json:"attemptNumber"`
	// Change says in a line what the operation carries (attr=value, attr+=value, attr-=value).
	Change string `json:"change,omitempty"`
}

// ResourceStates gives a resource's availability (the command service implements it).
type ResourceStates interface {
	ResourceState(ctx context.Context, resource string) (domain.ResourceData, error)
}

// BuildDashboard assembles what the dashboard shows at now for the named resources: their
// availability and counts, their charts, and the first 50 shadows with unfinished operations.
func BuildDashboard(ctx context.Context, now time.Time, names []string, states ResourceStates, d *Dashboard, t *Trend, pending *PendingIndex) (DashboardData, error) {
	counts, err := d.Counts(ctx, now)
	if err != nil {
		return DashboardData{}, err
	}
	by := map[string]ResourceCounts{}
	for _, c := range counts {
		by[c.Resource] = c
	}
	out := DashboardData{Time: now, Resources: []ResourceView{}}
	for _, name := range names {
		st, err := states.ResourceState(ctx, name)
		if err != nil {
			return DashboardData{}, err
		}
		c, ok := by[name]
		if !ok {
			c = ResourceCounts{Resource: name, ByLifecycle: map[domain.Lifecycle]int{}, PendingByStatus: map[domain.ExecutionStatus]int{}}
		}
		out.Resources = append(out.Resources, ResourceView{Resource: name, Availability: st, Counts: c})
	}
	if out.Charts, err = Charts(ctx, d, t, names, now); err != nil {
		return DashboardData{}, err
	}
	list, err := pending.PendingN(ctx, "", 50)
	if err != nil {
		return DashboardData{}, err
	}
	out.Pending = make([]PendingRow, 0, len(list))
	for _, sd := range list {
		row := PendingRow{Resource: sd.Resource, ShadowID: sd.ShadowID, LifecycleState: sd.LifecycleState, PendingOperations: []PendingOpRow{}}
		for _, p := range sd.PendingOperations {
			if p.Completed() {
				continue
			}
			var op PendingOpRow
			op.Delta.ChangeType, op.ExecutionStatus, op.AttemptNumber = p.Delta.ChangeType, p.ExecutionStatus, p.AttemptNumber
			op.Change = ChangeSummary(p.Delta, 80)
			row.PendingOperations = append(row.PendingOperations, op)
		}
		out.Pending = append(out.Pending, row)
	}
	return out, nil
}
