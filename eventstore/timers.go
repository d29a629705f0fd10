package eventstore

import (
	"context"

	"shadowbridge/domain"
)

// ApplyTimers arms or cancels the shadow's timer as a record's timer events say (the timer
// armer's handler), calling count("armed") or count("cancelled") once each is done. Each is
// synchronous: the armer acknowledges a record only once its schedule is stored, and a worker
// applies a shadow's records one after the other, so its schedules are stored in log order.
// A record without timer events, or one that cannot be decoded (the projector reports those),
// does nothing.
func (s *Store) ApplyTimers(ctx context.Context, r *Record, count func(string)) error {
	if !r.Has("TimerSet") && !r.Has("TimerCleared") {
		return nil
	}
	evs, err := r.Events()
	if err != nil {
		return nil
	}
	for _, e := range evs {
		switch x := e.(type) {
		case domain.TimerSet:
			if err := s.ArmTimer(ctx, r.Resource, r.ShadowID, x.At); err != nil {
				return err
			}
			count("armed")
		case domain.TimerCleared:
			if err := s.CancelTimer(ctx, r.Resource, r.ShadowID); err != nil {
				return err
			}
			count("cancelled")
		}
	}
	return nil
}
