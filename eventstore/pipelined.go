package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Await waits for the outcome of work a handler started without waiting (an asynchronous
// publish): nil once it is stored. A nil Await means the work is already done.
type Await func(ctx context.Context) error

// PipelineWindow is how many records a worker of SubscribePipelined has started and not yet
// acknowledged: the asynchronous publishes one worker keeps in flight.
const PipelineWindow = 32

// SubscribePipelined is SubscribeSharded for handlers that publish asynchronously: fn starts the
// record's work and returns an Await instead of waiting, so a worker keeps up to PipelineWindow
// records in flight. Records are acknowledged in order, each once its Await returned nil; records
// of one subject stay on one worker, and their publishes leave in log order on one connection,
// which JetStream stores in that order. When an Await fails, that record and every later one the
// worker holds are done again, in order and one at a time (fn then its Await), until they succeed:
// a later record's publish is never left in front of an earlier one's retry. fn calls settle
// before work that must not overtake the worker's publishes in flight (a purge is an API
// request, not a publish, and is not ordered with them); settle returns once they are stored.
// Guarantees otherwise those of SubscribeSharded: at least once, in log order per subject.
func (s *Store) SubscribePipelined(ctx context.Context, name string, o SubscribeOptions, fn func(ctx context.Context, r *Record, settle func() error) (Await, error)) error {
	sz := shardSizes{ackPending: 2 * PipelineWindow, pull: PipelineWindow, queue: 2 * PipelineWindow}
	return s.sharded(ctx, name, o, sz, func(queue <-chan jetstream.Msg, o SubscribeOptions, slot *busySlot) {
		s.pipelineWorker(ctx, name, o, queue, fn, slot)
	})
}

type started struct {
	m     jetstream.Msg
	await Await
}

func (s *Store) pipelineWorker(ctx context.Context, name string, o SubscribeOptions, queue <-chan jetstream.Msg, fn func(context.Context, *Record, func() error) (Await, error), slot *busySlot) {
	var held []started
	// whole runs fn and its Await to the end: a record done again, or one whose fn failed.
	whole := func(ctx context.Context, r *Record) error {
		aw, err := fn(ctx, r, func() error { return nil })
		if err == nil && aw != nil {
			err = aw(ctx)
		}
		return err
	}
	settle := func() error {
		for i, h := range held {
			err := error(nil)
			if h.await != nil {
				err = h.await(ctx)
			}
			if err != nil {
				if ctx.Err() != nil {
					held = held[:0]
					return ctx.Err() // not acknowledged: redelivered to the next subscriber
				}
				o.Logger.Warn("record failed, doing it and the later ones again", "consumer", name, "subject", h.m.Subject(), "records", len(held)-i, "err", err)
				for _, again := range held[i:] {
					s.processOne(ctx, name, again.m, o, whole, slot)
				}
				held = held[:0]
				return nil
			}
			_ = h.m.Ack()
		}
		held = held[:0]
		return nil
	}
	for m := range queue {
		if ctx.Err() != nil {
			continue // not acknowledged: redelivered to the next subscriber
		}
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			continue
		}
		rec := s.newRecord(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
		rec.Deliveries = md.NumDelivered
		aw, err := fn(ctx, rec, settle)
		if err != nil {
			_ = settle()
			s.processOne(ctx, name, m, o, whole, slot) // retried in place, with backoff
			continue
		}
		if aw == nil && len(held) == 0 {
			_ = m.Ack()
			continue
		}
		held = append(held, started{m, aw})
		if len(held) >= PipelineWindow || len(queue) == 0 {
			_ = settle()
		}
	}
	_ = settle()
}

// publishTimeout bounds the wait for an asynchronous publish's acknowledgement, well within the
// default AckWait (10 s): records held in a pipeline window have no lease kept alive.
const publishTimeout = 4 * time.Second

// awaitPub is the Await of an asynchronous publish.
func awaitPub(f jetstream.PubAckFuture, what string) Await {
	return func(ctx context.Context) error {
		t := time.NewTimer(publishTimeout)
		defer t.Stop()
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return fmt.Errorf("eventstore: %s: %w", what, unavailable(err))
		case <-t.C:
			return fmt.Errorf("eventstore: %s: %w", what, unavailable(errors.New("no acknowledgement")))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ArmTimerAsync is ArmTimer without waiting for the server: the Await returns once the
// schedule is stored. Arming of one shadow from one connection is stored in publish order.
func (s *Store) ArmTimerAsync(resource, shadowID string, at time.Time) (Await, error) {
	f, err := s.js.PublishMsgAsync(s.timerMsg(resource, shadowID, at))
	if err != nil {
		return nil, fmt.Errorf("eventstore: arm timer %s: %w", shadowID, unavailable(err))
	}
	return awaitPub(f, "arm timer "+shadowID), nil
}

// ApplyTimers arms or cancels the shadow's timer as a record's timer events say (the timer
// armer's handler for SubscribePipelined), calling count("armed") once an arming is stored and
// count("cancelled") after a cancel. Arming is an asynchronous publish (the returned Await waits
// for it); a cancel is a purge, made once the worker's earlier arming is stored (settle), so that
// it cannot overtake it. A record without timer events, or one that cannot be decoded (the
// projector reports those), does nothing.
func (s *Store) ApplyTimers(ctx context.Context, r *Record, settle func() error, count func(string)) (Await, error) {
	if !r.Has("TimerSet") && !r.Has("TimerCleared") {
		return nil, nil
	}
	evs, err := r.Events()
	if err != nil {
		return nil, nil
	}
	var armed Await
	for _, e := range evs {
		switch x := e.(type) {
		case domain.TimerSet:
			aw, err := s.ArmTimerAsync(r.Resource, r.ShadowID, x.At)
			if err != nil {
				return nil, err
			}
			armed = func(ctx context.Context) error {
				if err := aw(ctx); err != nil {
					return err
				}
				count("armed")
				return nil
			}
		case domain.TimerCleared:
			if armed != nil {
				if err := armed(ctx); err != nil {
					return nil, err
				}
				armed = nil
			}
			if err := settle(); err != nil {
				return nil, err
			}
			if err := s.CancelTimer(ctx, r.Resource, r.ShadowID); err != nil {
				return nil, err
			}
			count("cancelled")
		}
	}
	return armed, nil
}
