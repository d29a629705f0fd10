package service

import (
	"context"
	"fmt"
	"time"

	"shadowbridge/domain"
)

// InMaintenance reports whether the resource is administratively in maintenance, as recorded in
// its events at most adminTTL ago. When the state cannot be read it keeps the last state seen
// (operational if none): commands fail on their own when the store is unreachable.
func (s *Service) InMaintenance(ctx context.Context, resource string) bool {
	s.adminMu.Lock()
	seen, ok := s.admin[resource]
	s.adminMu.Unlock()
	if ok && s.now().Sub(seen.at) < adminTTL {
		return seen.maintenance
	}
	st, _, err := s.store.LoadResource(ctx, resource)
	if err != nil {
		s.log.Warn("administrative state not read; keeping the last one seen", "resource", resource, "err", err)
		return seen.maintenance
	}
	s.noteAdmin(resource, st.InMaintenance())
	return st.InMaintenance()
}

func (s *Service) noteAdmin(resource string, maintenance bool) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.admin == nil {
		s.admin = map[string]adminSeen{}
	}
	s.admin[resource] = adminSeen{maintenance: maintenance, at: s.now()}
}

// SetMaintenance puts the resource in maintenance or back in operation (midPoint's
// administrativeAvailabilityStatus) and returns its state. Idempotent: the same state twice
// records one event. Other instances see the change within adminTTL. Ending maintenance releases
// the operations that waited (in the background; the sweep does it too should this process die).
func (s *Service) SetMaintenance(ctx context.Context, resource string, on bool, reason string) (domain.ResourceData, error) {
	if _, err := s.catalog.Lookup(resource); err != nil {
		return domain.ResourceData{}, fmt.Errorf("maintenance: %w", err)
	}
	status := domain.AdministrativeOperational
	if on {
		status = domain.AdministrativeMaintenance
	}
	st, changed, err := s.UpdateResource(ctx, resource, func(cur domain.ResourceState) ([]domain.Event, error) {
		ev, err := domain.DecideAdministrative(cur, resource, status, reason, s.now())
		if err != nil {
			return nil, fmt.Errorf("maintenance: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return domain.ResourceData{}, err
	}
	s.noteAdmin(resource, on)
	if changed {
		s.log.Info("administrative state changed", "resource", resource, "status", status, "reason", reason)
	}
	if changed && !on {
		s.background(resourceRefreshTimeout, func(rctx context.Context) {
			// Twice: other instances see the end of maintenance up to adminTTL later, and an
			// attempt they hold back meanwhile is stored after the first look.
			for i, wait := range []time.Duration{0, 2 * adminTTL} {
				select {
				case <-time.After(wait):
				case <-rctx.Done():
					return
				}
				if n, err := s.Refresh(rctx, resource, "", false); err != nil {
					s.log.Warn("release after maintenance failed; the sweep will release", "resource", resource, "err", err)
				} else if i == 0 || n > 0 {
					s.log.Info("maintenance over: waiting operations released", "resource", resource, "shadows", n)
				}
			}
		})
	}
	d := st.Data()
	d.Resource = resource
	if d.Changes == nil {
		d.Changes = []domain.AvailabilityChange{}
	}
	return d, nil
}

// Reachable records that a probe reached the resource's system: a resource that was down is up
// again, and with retryOnRecovery its postponed operations are retried at once.
func (s *Service) Reachable(ctx context.Context, resource string) {
	s.noteAvailability(ctx, resource, domain.AvailabilityUp, "probe reached the target")
}

// resourceRefreshTimeout bounds a resource-wide refresh in the background (the release after
// maintenance, the retry on recovery). Generous: tens of thousands of shadows can wait for a
// resource, and what a refresh cut short leaves waits for the sweep (a minute by default) or
// for its own timer (operationRetryPeriod, 30 minutes by default). A minute was too short
// for 10,000 postponed operations under the race detector on two busy cores.
const resourceRefreshTimeout = 10 * time.Minute

// recoveryRelook is when the retry on recovery looks at the waiting shadows a second time.
const recoveryRelook = 5 * time.Second

// availTTL bounds how long this instance trusts its memory of a resource's availability (another
// instance may have recorded a change meanwhile).
const availTTL = 2 * time.Second

// noteAvailability records a change of availability unless this instance saw the same status
// very recently. Failures are logged: availability is a report, not part of an operation.
func (s *Service) noteAvailability(ctx context.Context, resource string, status domain.Availability, reason string) {
	// One call at a time records a status: every outcome of a busy resource reports it, and
	// all of them queuing for the resource's lock when the memory expired made a convoy that
	// held the dispatcher's workers.
	s.availMu.Lock()
	seen, ok := s.avail[resource]
	if ok && seen.status == status && (seen.recording || s.now().Sub(seen.at) < availTTL) {
		s.availMu.Unlock()
		return
	}
	s.avail[resource] = availSeen{status: status, at: seen.at, recording: true}
	s.availMu.Unlock()
	changed, err := s.setAvailability(ctx, resource, status, reason)
	if err != nil {
		s.availMu.Lock()
		if cur := s.avail[resource]; cur.recording && cur.status == status {
			s.avail[resource] = seen // the next report tries again
		}
		s.availMu.Unlock()
		s.log.Warn("availability not recorded", "resource", resource, "status", status, "err", err)
		return
	}
	if changed {
		if status == domain.AvailabilityUp {
			s.log.Info("resource available again", "resource", resource, "reason", reason)
		} else {
			s.log.Warn("resource unavailable: its operations wait for a retry", "resource", resource, "status", status, "reason", reason)
		}
	}
	if changed && status == domain.AvailabilityUp {
		if res, err := s.catalog.Lookup(resource); err == nil && res.Consistency().RetryOnRecovery {
			// Beyond midPoint: the resource is back, retry what waits for it now. In the
			// background: the outcome being recorded must not wait for a sweep of the resource.
			s.background(resourceRefreshTimeout, func(rctx context.Context) {
				// Twice: the waiting shadows are listed from the projection, which can trail the
				// log after an outage (an attempt that failed a moment before the recovery would
				// wait for its retry period, 30 minutes by default); the second look is after it
				// has caught up.
				for _, wait := range []time.Duration{0, recoveryRelook} {
					select {
					case <-time.After(wait):
					case <-rctx.Done():
						return
					}
					if n, err := s.Refresh(rctx, resource, "", true); err != nil {
						s.log.Warn("retry on recovery failed; timers and the sweep will retry", "resource", resource, "err", err)
					} else if n > 0 {
						s.log.Info("resource up again: postponed operations retried", "resource", resource, "shadows", n)
					}
				}
			})
		}
	}
	s.availMu.Lock()
	s.avail[resource] = availSeen{status: status, at: s.now()}
	s.availMu.Unlock()
}

// SetAvailability records the resource's availability if it changed (idempotent, safe across
// instances: optimistic concurrency on the resource's subject).
func (s *Service) SetAvailability(ctx context.Context, resource string, status domain.Availability, reason string) error {
	if _, err := s.setAvailability(ctx, resource, status, reason); err != nil {
		return err
	}
	s.availMu.Lock()
	s.avail[resource] = availSeen{status: status, at: s.now()} // a report of another status is not skipped
	s.availMu.Unlock()
	return nil
}

// setAvailability is SetAvailability that also tells whether this call recorded a change.
func (s *Service) setAvailability(ctx context.Context, resource string, status domain.Availability, reason string) (bool, error) {
	_, changed, err := s.UpdateResource(ctx, resource, func(cur domain.ResourceState) ([]domain.Event, error) {
		return domain.DecideAvailability(cur, resource, status, reason, s.now())
	})
	return changed, err
}

// UpdateResource runs one unit of work on a resource's own state (eventstore.Store.UpdateResource)
// and returns the resulting state and whether events were stored.
func (s *Service) UpdateResource(ctx context.Context, resource string, decide func(domain.ResourceState) ([]domain.Event, error)) (domain.ResourceState, bool, error) {
	st, ev, err := s.store.UpdateResource(ctx, resource, decide)
	for _, e := range ev {
		s.metrics.EventsAppended.Inc(e.EventType())
	}
	return st, len(ev) > 0, err
}

// ResourceState returns a resource's availability and its recent changes.
func (s *Service) ResourceState(ctx context.Context, resource string) (domain.ResourceData, error) {
	if _, err := s.catalog.Lookup(resource); err != nil {
		return domain.ResourceData{}, err
	}
	st, _, err := s.store.LoadResource(ctx, resource)
	if err != nil {
		return domain.ResourceData{}, err
	}
	d := st.Data()
	d.Resource = resource
	if d.Changes == nil {
		d.Changes = []domain.AvailabilityChange{}
	}
	return d, nil
}
