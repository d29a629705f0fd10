package storetest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Populate fills the store's stream with shadows*perShadow valid commits, interleaved round-robin
// so that each shadow's commits are spread over the whole stream (the worst case for reading one
// shadow by scanning). It publishes asynchronously for speed and returns the shadow ids.
func Populate(ctx context.Context, s *eventstore.Store, res domain.Resource, shadows, perShadow int) ([]string, error) {
	return populate(ctx, s, res, shadows, perShadow, false)
}

// PopulateTimed is Populate with every commit decided the moment before it is published (each
// has its own decision time, a moment before its stored time, as in a live log), for queries
// by time. Slower: every commit is encoded, and a round's commits are stored before the next
// round's are decided.
func PopulateTimed(ctx context.Context, s *eventstore.Store, res domain.Resource, shadows, perShadow int) ([]string, error) {
	return populate(ctx, s, res, shadows, perShadow, true)
}

func populate(ctx context.Context, s *eventstore.Store, res domain.Resource, shadows, perShadow int, timed bool) ([]string, error) {
	ids := make([]string, shadows)
	bodies := make([][]byte, shadows)
	var types []string // the commits' event types (every commit holds the same ones)
	for i := range ids {
		ids[i] = NewID()
		ev, err := domain.Decide(domain.Shadow{}, domain.Add{Resource: res, ShadowID: ids[i], OperationID: NewID(),
			ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {fmt.Sprint("user", i)}, "shoeSize": {int64(42)}}}, time.Now())
		if err != nil {
			return nil, err
		}
		if bodies[i], err = eventstore.EncodeCommit("", ev, domain.Fold(domain.Shadow{}, ev)); err != nil {
			return nil, err
		}
		if i == 0 {
			for _, e := range ev {
				types = append(types, e.EventType())
			}
		}
	}
	js := s.JetStream()
	var pending []jetstream.PubAckFuture
	flush := func() error {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	for round := range perShadow {
		for i, id := range ids {
			m := nats.NewMsg(s.Subject(res.Name(), id))
			m.Data = bodies[i]
			if timed {
				ev, err := domain.Decide(domain.Shadow{}, domain.Add{Resource: res, ShadowID: id, OperationID: NewID(),
					ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {fmt.Sprint("user", i)}, "round": {int64(round)}}}, time.Now())
				if err != nil {
					return nil, err
				}
				if m.Data, err = eventstore.EncodeCommit("", ev, domain.Fold(domain.Shadow{}, ev)); err != nil {
					return nil, err
				}
			}
			for _, typ := range types {
				m.Header.Add(eventstore.HeaderEventType, typ)
			}
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				return nil, err
			}
			pending = append(pending, f)
			// Below nats.go's limit of 4,000 unacknowledged async publishes: past it a publish
			// stalls, and fails after 200 ms on a busy machine.
			if len(pending) >= 1024 {
				if err := flush(); err != nil {
					return nil, fmt.Errorf("round %d: %w", round, err)
				}
			}
		}
		if timed {
			// A live shadow's next commit is decided only once its last one is stored.
			if err := flush(); err != nil {
				return nil, fmt.Errorf("round %d: %w", round, err)
			}
		}
	}
	return ids, flush()
}
