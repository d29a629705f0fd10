package domain

import (
	"fmt"
	"time"
)

// Availability is midPoint's administrative view of whether a resource can be reached.
type Availability string

// Availability states: up (reachable), down (communication failures), broken (it answers, but
// refuses the configuration or credentials).
const (
	AvailabilityUp     Availability = "up"
	AvailabilityDown   Availability = "down"
	AvailabilityBroken Availability = "broken"
)

// AvailabilityHistory is how many changes a resource keeps.
const AvailabilityHistory = 5

// AvailabilityChange is one change of availability.
type AvailabilityChange struct {
	Status Availability `json:"status"`
	Reason string       `json:"reason,omitempty"`
	Time   time.Time    `json:"time"`
}

// AdministrativeStatus is midPoint's administrativeAvailabilityStatus: set by an administrator,
// independent of what the transport reports.
type AdministrativeStatus string

// Administrative states: operational (the default) and maintenance (nothing is sent to the
// target; operations wait without counting attempts).
const (
	AdministrativeOperational AdministrativeStatus = "operational"
	AdministrativeMaintenance AdministrativeStatus = "maintenance"
)

// AdministrativeChange is one change of the administrative state.
type AdministrativeChange struct {
	Status AdministrativeStatus `json:"status"`
	Reason string               `json:"reason,omitempty"`
	Time   time.Time            `json:"time"`
}

// ResourceData is the plain form of a resource's state.
type ResourceData struct {
	Resource     string               `json:"resource"`
	Availability Availability         `json:"availability"`
	Changes      []AvailabilityChange `json:"changes"` // the last AvailabilityHistory, oldest first
	// AdministrativeAvailabilityStatus is operational unless an administrator put the resource
	// in maintenance; AdministrativeChanges are its last AvailabilityHistory changes.
	AdministrativeAvailabilityStatus AdministrativeStatus   `json:"administrativeAvailabilityStatus"`
	AdministrativeChanges            []AdministrativeChange `json:"administrativeChanges,omitempty"`
	// Reconciliation is the last reconciliation run (nil: never reconciled).
	Reconciliation *ReconciliationRun `json:"reconciliation,omitempty"`
	Version        int64              `json:"version"`
}

// ResourceState is the resource aggregate: its availability and the recent changes. The zero value
// is a resource never reported on, considered up.
type ResourceState struct{ d ResourceData }

// RestoreResource rebuilds a resource state from its plain form.
func RestoreResource(d ResourceData) ResourceState {
	d.Changes = append([]AvailabilityChange(nil), d.Changes...)
	d.AdministrativeChanges = append([]AdministrativeChange(nil), d.AdministrativeChanges...)
	d.Reconciliation = cloneRun(d.Reconciliation)
	return ResourceState{d: d}
}

func cloneRun(r *ReconciliationRun) *ReconciliationRun {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// Data returns a copy of the plain form.
func (r ResourceState) Data() ResourceData {
	d := r.d
	d.Changes = append([]AvailabilityChange(nil), r.d.Changes...)
	d.AdministrativeChanges = append([]AdministrativeChange(nil), r.d.AdministrativeChanges...)
	d.Reconciliation = cloneRun(r.d.Reconciliation)
	if d.Availability == "" {
		d.Availability = AvailabilityUp
	}
	if d.AdministrativeAvailabilityStatus == "" {
		d.AdministrativeAvailabilityStatus = AdministrativeOperational
	}
	return d
}

// InMaintenance reports whether an administrator put the resource in maintenance.
func (r ResourceState) InMaintenance() bool {
	return r.d.AdministrativeAvailabilityStatus == AdministrativeMaintenance
}

// Availability returns the current availability (up for a resource never reported on).
func (r ResourceState) Availability() Availability {
	if r.d.Availability == "" {
		return AvailabilityUp
	}
	return r.d.Availability
}

// AvailabilityChanged records a change of a resource's availability.
type AvailabilityChanged struct {
	Resource string       `json:"resource"`
	Status   Availability `json:"status"`
	Reason   string       `json:"reason,omitempty"`
	Time     time.Time    `json:"time"`
}

// EventType names the event in the log.
func (AvailabilityChanged) EventType() string { return "AvailabilityChanged" }

// EventTime returns when the change happened.
func (e AvailabilityChanged) EventTime() time.Time { return e.Time }

// DecideAvailability answers a report of the resource's availability: an event when it changes,
// nothing when it is the same.
func DecideAvailability(r ResourceState, resource string, status Availability, reason string, now time.Time) ([]Event, error) {
	switch status {
	case AvailabilityUp, AvailabilityDown, AvailabilityBroken:
	default:
		return nil, fmt.Errorf("%w: availability %q (want up, down or broken)", ErrInvalidCommand, status)
	}
	if !ValidToken(resource) {
		return nil, fmt.Errorf("%w: resource %q", ErrUnknownResource, resource)
	}
	if r.Availability() == status {
		return nil, nil
	}
	return []Event{AvailabilityChanged{Resource: resource, Status: status, Reason: reason, Time: now}}, nil
}

// AdministrativeAvailabilityChanged records that an administrator put the resource in
// maintenance or back in operation.
type AdministrativeAvailabilityChanged struct {
	Resource string               `json:"resource"`
	Status   AdministrativeStatus `json:"status"`
	Reason   string               `json:"reason,omitempty"`
	Time     time.Time            `json:"time"`
}

// EventType names the event in the log.
func (AdministrativeAvailabilityChanged) EventType() string {
	return "AdministrativeAvailabilityChanged"
}

// EventTime returns when the change happened.
func (e AdministrativeAvailabilityChanged) EventTime() time.Time { return e.Time }

// DecideAdministrative answers an administrator's request to put the resource in maintenance or
// back in operation: an event when the state changes, nothing when it is already so (idempotent).
func DecideAdministrative(r ResourceState, resource string, status AdministrativeStatus, reason string, now time.Time) ([]Event, error) {
	switch status {
	case AdministrativeOperational, AdministrativeMaintenance:
	default:
		return nil, fmt.Errorf("%w: administrative state %q (want operational or maintenance)", ErrInvalidCommand, status)
	}
	if !ValidToken(resource) {
		return nil, fmt.Errorf("%w: resource %q", ErrUnknownResource, resource)
	}
	if r.Data().AdministrativeAvailabilityStatus == status {
		return nil, nil
	}
	return []Event{AdministrativeAvailabilityChanged{Resource: resource, Status: status, Reason: reason, Time: now}}, nil
}

// EvolveResource applies an AvailabilityChanged or AdministrativeAvailabilityChanged event.
func EvolveResource(r ResourceState, e Event) ResourceState {
	d := r.Data()
	switch x := e.(type) {
	case AvailabilityChanged:
		d.Resource, d.Availability = x.Resource, x.Status
		d.Changes = append(d.Changes, AvailabilityChange{Status: x.Status, Reason: x.Reason, Time: x.Time})
		if n := len(d.Changes); n > AvailabilityHistory {
			d.Changes = d.Changes[n-AvailabilityHistory:]
		}
	case AdministrativeAvailabilityChanged:
		d.Resource, d.AdministrativeAvailabilityStatus = x.Resource, x.Status
		d.AdministrativeChanges = append(d.AdministrativeChanges, AdministrativeChange{Status: x.Status, Reason: x.Reason, Time: x.Time})
		if n := len(d.AdministrativeChanges); n > AvailabilityHistory {
			d.AdministrativeChanges = d.AdministrativeChanges[n-AvailabilityHistory:]
		}
	default:
		if !evolveReconciliation(&d, e) {
			return r
		}
	}
	d.Version++
	return ResourceState{d: d}
}
