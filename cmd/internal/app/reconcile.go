package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// ReconBucket holds the reconciliation runs' seen marks (<run>.<shadow>), kept a day.
const ReconBucket = "PROV_RECON"

// lister sends a reconciliation run's list request through the resource's target.
type lister struct{ a *App }

func (l lister) List(ctx context.Context, resource, objectClass, runID string) error {
	t, ok := l.a.targets[resource]
	if !ok {
		return fmt.Errorf("%w: resource %s has no target", domain.CategoryConfiguration, resource)
	}
	_, err := t.Send(ctx, bridge.Request{Resource: resource, OperationID: runID, Attempt: 1,
		Body: domain.TargetRequest{Operation: domain.OperationList, ObjectClass: objectClass}})
	return err
}

var _ service.Lister = lister{}

// projectionKeys walks a resource's shadow ids from the projection's keys.
type projectionKeys struct{ kv jetstream.KeyValue }

func (p projectionKeys) ShadowIDs(ctx context.Context, resource string, fn func(string) error) error {
	keys, err := p.kv.ListKeysFiltered(ctx, resource+".*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: projection keys: %w", domain.CategoryCommunication, err)
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		if err := fn(strings.TrimPrefix(k, resource+".")); err != nil {
			return err
		}
	}
	return nil
}

var _ service.ShadowLister = projectionKeys{}

// seenMarks are the runs' seen marks in ReconBucket. Marks are published without waiting for
// each answer (Flush waits for them all): a page's accounts cost one round trip less each.
type seenMarks struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
	mu *sync.Mutex
	// pending are the marks published and not yet confirmed.
	pending *[]jetstream.PubAckFuture
}

func openSeenMarks(ctx context.Context, js jetstream.JetStream, replicas int, memory bool) (seenMarks, error) {
	storage := jetstream.FileStorage
	if memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ReconBucket, History: 1, TTL: 24 * time.Hour,
		Replicas: max(replicas, 1), Storage: storage, Description: "shadowbridge: the shadows each reconciliation run's pages named"})
	if err != nil {
		return seenMarks{}, fmt.Errorf("bucket %s: %w", ReconBucket, err)
	}
	return seenMarks{kv: kv, js: js, mu: &sync.Mutex{}, pending: new([]jetstream.PubAckFuture)}, nil
}

func (s seenMarks) MarkSeen(ctx context.Context, runID, shadowID string) error {
	f, err := s.js.PublishAsync("$KV."+ReconBucket+"."+runID+"."+shadowID, nil)
	if err != nil {
		return fmt.Errorf("%w: seen mark: %w", domain.CategoryCommunication, err)
	}
	s.mu.Lock()
	*s.pending = append(*s.pending, f)
	s.mu.Unlock()
	return nil
}

// Flush waits until every mark published so far is stored.
func (s seenMarks) Flush(ctx context.Context) error {
	s.mu.Lock()
	pending := *s.pending
	*s.pending = nil
	s.mu.Unlock()
	for _, f := range pending {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("%w: seen mark: %w", domain.CategoryCommunication, err)
		case <-ctx.Done():
			return fmt.Errorf("%w: seen marks: %w", domain.CategoryCommunication, ctx.Err())
		}
	}
	return nil
}

func (s seenMarks) Seen(ctx context.Context, runID, shadowID string) (bool, error) {
	_, err := s.kv.Get(ctx, runID+"."+shadowID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: seen mark: %w", domain.CategoryCommunication, err)
	}
	return true, nil
}

var _ service.SeenMarks = seenMarks{}
