package service

import (
	"context"

	"shadowbridge/bridge"
	"shadowbridge/domain"
)

// Delivered records that the transport accepted an attempt (used by the dispatcher); the
// resource is up.
func (s *Service) Delivered(ctx context.Context, resource, shadowID, operationID string, attempt int, reference string, known *bridge.Known) error {
	if err := faults.hit(FaultBeforeOutcome); err != nil {
		return err
	}
	err := s.record(ctx, resource, shadowID, known, func(res domain.Resource) domain.Command {
		return domain.RecordDelivery{Resource: res, OperationID: operationID, Attempt: attempt, Reference: reference}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(resource, "sent")
		s.noteAvailability(ctx, resource, domain.AvailabilityUp, "")
	}
	return err
}

// Postponed records that the dispatcher held an attempt back without contacting the target (the
// resource is in maintenance): the operation waits again and no attempt is counted.
func (s *Service) Postponed(ctx context.Context, resource, shadowID, operationID string, attempt int, reason string, known *bridge.Known) error {
	err := s.record(ctx, resource, shadowID, known, func(res domain.Resource) domain.Command {
		return domain.RecordPostponement{Resource: res, OperationID: operationID, Attempt: attempt, Reason: reason}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(resource, "postponed")
	}
	return err
}

// lookup returns the configured resource with its current administrative state, so that every
// decision sees maintenance.

// Failed records a failed attempt (used by the dispatcher); a communication error makes the
// resource down, a configuration or security error broken.
func (s *Service) Failed(ctx context.Context, resource, shadowID, operationID string, attempt int, category domain.Category, message string, notSent bool, known *bridge.Known) error {
	err := s.record(ctx, resource, shadowID, known, func(res domain.Resource) domain.Command {
		return domain.RecordFailure{Resource: res, OperationID: operationID, Attempt: attempt,
			Error: domain.OperationError{Category: category, Message: message}, NotSent: notSent}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(resource, "failed")
		switch category {
		case domain.CategoryCommunication:
			s.noteAvailability(ctx, resource, domain.AvailabilityDown, message)
		case domain.CategoryConfiguration, domain.CategorySecurity:
			s.noteAvailability(ctx, resource, domain.AvailabilityBroken, message)
		}
	}
	return err
}

func (s *Service) record(ctx context.Context, resource, shadowID string, known *bridge.Known, mk func(domain.Resource) domain.Command) error {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return err
	}
	cmd := mk(res)
	now := s.now()
	_, err = s.UpdateFrom(ctx, resource, shadowID, "", known, func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, cmd, now)
	})
	return err
}
