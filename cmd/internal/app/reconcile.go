package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
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

// projectionKeys walks a resource's shadow ids from the projection's keys (headers only, a
// bounded window at a time: memory does not grow with the number of shadows).
type projectionKeys struct {
	store  *eventstore.Store
	bucket string
}

func (p projectionKeys) ShadowIDs(ctx context.Context, resource string, fn func(string) error) error {
	prefix := "$KV." + p.bucket + "." + resource + "."
	err := p.store.LastPerSubject(ctx, "KV_"+p.bucket, prefix+"*", func(r *eventstore.Record) error {
		return fn(strings.TrimPrefix(r.Subject, prefix))
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: projection keys: %w", domain.CategoryCommunication, err)
	}
	return err
}

var _ service.ShadowLister = projectionKeys{}

// seenMarks are the runs' seen marks in ReconBucket. Marks are published without waiting for
// each answer (Flush waits for them all): a page's accounts cost one round trip less each.
type seenMarks struct {
	store      *eventstore.Store
	replicated bool
	js         jetstream.JetStream
	mu         *sync.Mutex
	// pending are the marks published and not yet confirmed.
	pending *[]jetstream.PubAckFuture
}

func openSeenMarks(ctx context.Context, store *eventstore.Store, replicas int, memory bool) (seenMarks, error) {
	js := store.JetStream()
	storage := jetstream.FileStorage
	if memory {
		storage = jetstream.MemoryStorage
	}
	_, err := eventstore.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: ReconBucket, History: 1, TTL: 24 * time.Hour,
		Replicas: max(replicas, 1), Storage: storage, Description: "shadowbridge: the shadows each reconciliation run's pages named"})
	if err != nil {
		return seenMarks{}, fmt.Errorf("bucket %s: %w", ReconBucket, err)
	}
	return seenMarks{store: store, replicated: replicas > 1, js: js, mu: &sync.Mutex{}, pending: new([]jetstream.PubAckFuture)}, nil
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

// Seen reads the marks with batched direct gets; on a replicated bucket a mark not found is
// confirmed with the leader (a replica a moment behind must not make a seen shadow missing).
func (s seenMarks) Seen(ctx context.Context, runID string, shadowIDs []string) ([]bool, error) {
	subjects := make([]string, len(shadowIDs))
	for i, id := range shadowIDs {
		subjects[i] = "$KV." + ReconBucket + "." + runID + "." + id
	}
	recs, err := s.store.LastMany(ctx, "KV_"+ReconBucket, subjects)
	if err != nil {
		return nil, fmt.Errorf("%w: seen marks: %w", domain.CategoryCommunication, err)
	}
	seen := make([]bool, len(shadowIDs))
	for i, r := range recs {
		if seen[i] = r != nil; !seen[i] && s.replicated {
			r, err := s.store.LeaderLast(ctx, "KV_"+ReconBucket, subjects[i])
			if err != nil {
				return nil, fmt.Errorf("%w: seen mark: %w", domain.CategoryCommunication, err)
			}
			seen[i] = r != nil
		}
	}
	return seen, nil
}

var _ service.SeenMarks = seenMarks{}
