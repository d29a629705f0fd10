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
//
// A record a crashed instance had taken comes back after AckWait, possibly after newer records
// of its shadow whose timer events are applied already: its cancel would purge their schedule
// and leave the shadow's due work with no timer. A cancel is therefore skipped when the shadow
// has a newer record (a schedule left in place fires once and finds nothing due; the firing
// re-arms whatever is due later). An older TimerSet is still applied: a newer record without
// timer events relies on it, and its early firing re-arms the right time.
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
			last, err := s.LastRecord(ctx, r.Subject)
			if err != nil {
				return err
			}
			if last != nil && last.Seq > r.Seq {
				continue // stale: the shadow moved on
			}
			if err := s.CancelTimer(ctx, r.Resource, r.ShadowID); err != nil {
				return err
			}
			count("cancelled")
		}
	}
	return nil
}
