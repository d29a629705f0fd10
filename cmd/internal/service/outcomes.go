package service

import (
	"context"

	"shadowbridge/bridge"
	"shadowbridge/domain"
)

// Delivered records that the transport accepted an attempt (used by the dispatcher); the
// resource is up.
func (s *Service) Delivered(ctx context.Context, a bridge.Attempt, reference string) error {
	if err := faults.hit(FaultBeforeOutcome); err != nil {
		return err
	}
	err := s.record(ctx, a, func(res domain.Resource) domain.Command {
		return domain.RecordDelivery{Resource: res, OperationID: a.OperationID, Attempt: a.Number, Reference: reference}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(a.Resource, "sent")
		s.noteAvailability(ctx, a.Resource, domain.AvailabilityUp, "")
	}
	return err
}

// Postponed records that the dispatcher held an attempt back without contacting the target (the
// resource is in maintenance): the operation waits again and no attempt is counted.
func (s *Service) Postponed(ctx context.Context, a bridge.Attempt, reason string) error {
	err := s.record(ctx, a, func(res domain.Resource) domain.Command {
		return domain.RecordPostponement{Resource: res, OperationID: a.OperationID, Attempt: a.Number, Reason: reason}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(a.Resource, "postponed")
	}
	return err
}

// Failed records a failed attempt (used by the dispatcher); a communication error makes the
// resource down, a configuration or security error broken.
func (s *Service) Failed(ctx context.Context, a bridge.Attempt, f bridge.Failure) error {
	err := s.record(ctx, a, func(res domain.Resource) domain.Command {
		return domain.RecordFailure{Resource: res, OperationID: a.OperationID, Attempt: a.Number,
			Error: domain.OperationError{Category: f.Category, Message: f.Message}, NotSent: f.NotSent}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(a.Resource, "failed")
		switch f.Category {
		case domain.CategoryCommunication:
			s.noteAvailability(ctx, a.Resource, domain.AvailabilityDown, f.Message)
		case domain.CategoryConfiguration, domain.CategorySecurity:
			s.noteAvailability(ctx, a.Resource, domain.AvailabilityBroken, f.Message)
		}
	}
	return err
}

// record decides the command mk makes (with the resource as it is now, maintenance included) on
// the attempt's shadow, starting from the state the dispatcher saw.
func (s *Service) record(ctx context.Context, a bridge.Attempt, mk func(domain.Resource) domain.Command) error {
	res, err := s.lookup(ctx, a.Resource)
	if err != nil {
		return err
	}
	cmd := mk(res)
	now := s.now()
	_, err = s.UpdateFrom(ctx, a.Resource, a.ShadowID, "", a.Known, func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, cmd, now)
	})
	return err
}
