package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Read-only views for `shadowbridge verify`: what the index holds and which timers are armed,
// read without changing anything.

// IndexEntry is one entry of the index bucket: an operation (Kind "operation": OperationID ->
// Resource, ShadowID), an identifier claim (Kind "claim": Key -> Holder), or a request record
// (Kind "request").
type IndexEntry struct {
	Key                             string
	Kind                            string
	OperationID, Resource, ShadowID string
	Holder                          Holder
	// Refusal is a request record's recorded refusal (Kind "request"), nil if it has none.
	Refusal *Refusal
}

// RequestKey is the index key of a request id's record (the id is hashed, so a checker compares
// keys, not ids).
func RequestKey(resource, requestID string) string { return requestKey(resource, requestID) }

// ClaimKey is the index key of an identifier claim (the value is hashed, so a checker compares
// keys, not values).
func ClaimKey(c domain.Claim) string { return claimKey(c) }

// IndexEntries calls fn for every entry of the index bucket as it is now (deleted keys are
// skipped). Read-only.
func (s *Store) IndexEntries(ctx context.Context, fn func(IndexEntry) error) error {
	kv, err := s.js.KeyValue(ctx, s.cfg.Index)
	if err != nil {
		return fmt.Errorf("eventstore: bucket %s: %w", s.cfg.Index, unavailable(err))
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("eventstore: read %s: %w", s.cfg.Index, unavailable(err))
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("eventstore: index watch closed")
			}
			if e == nil {
				return nil // the initial values are done
			}
			ie := IndexEntry{Key: e.Key()}
			switch {
			case strings.HasPrefix(e.Key(), "op."):
				ie.Kind, ie.OperationID = "operation", strings.TrimPrefix(e.Key(), "op.")
				ie.Resource, ie.ShadowID, _ = strings.Cut(string(e.Value()), ".")
			case strings.HasPrefix(e.Key(), "id."):
				ie.Kind, ie.Holder = "claim", parseHolder(e.Value())
				ie.Resource, _, _ = strings.Cut(strings.TrimPrefix(e.Key(), "id."), ".")
				ie.ShadowID = ie.Holder.ShadowID
			case strings.HasPrefix(e.Key(), "req."):
				ie.Kind = "request"
				ie.Resource, _, _ = strings.Cut(strings.TrimPrefix(e.Key(), "req."), ".")
				var rr RequestRecord
				if json.Unmarshal(e.Value(), &rr) == nil {
					ie.ShadowID, ie.OperationID, ie.Refusal = rr.ShadowID, rr.OperationID, rr.Refused
				}
			default:
				ie.Kind = "unknown"
			}
			if err := fn(ie); err != nil {
				return err
			}
		}
	}
}

// ArmedTimer returns when the shadow's timer is scheduled to fire, and false if none is armed.
func (s *Store) ArmedTimer(ctx context.Context, resource, shadowID string) (time.Time, bool, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, s.TimerSubject(resource, shadowID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("eventstore: timer of %s: %w", shadowID, unavailable(err))
	}
	at, ok := strings.CutPrefix(m.Header.Get(headerSchedule), "@at ")
	if !ok {
		return time.Time{}, false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("eventstore: timer of %s: schedule %q: %w", shadowID, at, err)
	}
	return t, true, nil
}

// AckFloor returns the stream sequence up to which the durable consumer name has acknowledged
// every record (0 if the consumer does not exist). Read-only.
func (s *Store) AckFloor(ctx context.Context, name string) (uint64, error) {
	c, err := s.js.Consumer(ctx, s.cfg.Stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: consumer %s: %w", name, unavailable(err))
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventstore: consumer %s: %w", name, unavailable(err))
	}
	return info.AckFloor.Stream, nil
}
