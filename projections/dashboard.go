package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Dashboard keeps per-resource counts of the projection (shadows by lifecycle state, pending
// operations by execution status, the retry backlog, recent failures) current by watching the
// shadow bucket, and tells subscribers when they change. Each service instance runs its own.
// Safe for concurrent use.
type Dashboard struct {
	log *slog.Logger

	mu      sync.RWMutex
	shadows map[string]shadowSummary // key -> summary
	subs    map[chan struct{}]struct{}
	ready   chan struct{}
}

// shadowSummary is what the dashboard keeps of one shadow: a few words, not the shadow.
type shadowSummary struct {
	resource  string
	lifecycle domain.Lifecycle
	statuses  []domain.ExecutionStatus // of unfinished operations
	retries   int                      // unfinished operations postponed for retry
	failures  []time.Time              // failed attempts and fatal completions still visible
}

// ResourceCounts is the dashboard's view of one resource.
type ResourceCounts struct {
	Resource         string                         `json:"resource"`
	Shadows          int                            `json:"shadows"`
	ByLifecycle      map[domain.Lifecycle]int       `json:"byLifecycle"`
	PendingByStatus  map[domain.ExecutionStatus]int `json:"pendingByStatus"`
	RetryBacklog     int                            `json:"retryBacklog"`
	FailuresLastHour int                            `json:"failuresLastHour"`
}

// NewDashboard starts watching the bucket.
func NewDashboard(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*Dashboard, error) {
	if log == nil {
		log = slog.Default()
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: watch %s: %w", kv.Bucket(), err)
	}
	d := &Dashboard{log: log.WithGroup("dashboard"), shadows: map[string]shadowSummary{}, subs: map[chan struct{}]struct{}{}, ready: make(chan struct{})}
	go d.run(ctx, w)
	return d, nil
}

func (d *Dashboard) run(ctx context.Context, w jetstream.KeyWatcher) {
	follow(ctx, w, func(e jetstream.KeyValueEntry) {
		d.apply(e)
		select {
		case <-d.ready: // after the initial load, every change is news
			d.notify()
		default:
		}
	}, func() {
		close(d.ready)
		d.notify()
	})
}

func (d *Dashboard) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		d.mu.Lock()
		delete(d.shadows, key)
		d.mu.Unlock()
		return
	}
	// Only what the summary needs: decoding whole shadows (attributes and all) on every update
	// was a tenth of the service's CPU under load.
	var s struct {
		Resource          string           `json:"resource"`
		LifecycleState    domain.Lifecycle `json:"lifecycleState"`
		PendingOperations []struct {
			Type                 domain.OperationType   `json:"type"`
			ExecutionStatus      domain.ExecutionStatus `json:"executionStatus"`
			ResultStatus         domain.ResultStatus    `json:"resultStatus"`
			LastAttemptTimestamp time.Time              `json:"lastAttemptTimestamp"`
			CompletionTimestamp  time.Time              `json:"completionTimestamp"`
			LastError            *struct{}              `json:"lastError"`
		} `json:"pendingOperations"`
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		d.log.Error("undecodable shadow in projection", "key", key, "err", err)
		return
	}
	sum := shadowSummary{resource: s.Resource, lifecycle: s.LifecycleState}
	for _, p := range s.PendingOperations {
		if p.LastError != nil && !p.LastAttemptTimestamp.IsZero() {
			sum.failures = append(sum.failures, p.LastAttemptTimestamp)
		}
		if p.ExecutionStatus == domain.StatusCompleted {
			if p.ResultStatus == domain.ResultFatalError {
				sum.failures = append(sum.failures, p.CompletionTimestamp)
			}
			continue
		}
		sum.statuses = append(sum.statuses, p.ExecutionStatus)
		if p.Type == domain.TypeRetry && p.ExecutionStatus == domain.StatusExecuting {
			sum.retries++
		}
	}
	d.mu.Lock()
	d.shadows[key] = sum
	d.mu.Unlock()
}

// notify wakes every subscriber without blocking (a subscriber that has not read yet keeps one
// pending wake-up: updates coalesce).
func (d *Dashboard) notify() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for ch := range d.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives a value after changes, and a function to stop.
func (d *Dashboard) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}
}

// Counts returns every resource's counts at now (failures in the hour before now), sorted by
// resource name. It waits for the initial load of the bucket.
func (d *Dashboard) Counts(ctx context.Context, now time.Time) ([]ResourceCounts, error) {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	by := map[string]*ResourceCounts{}
	hourAgo := now.Add(-time.Hour)
	for _, s := range d.shadows {
		rc := by[s.resource]
		if rc == nil {
			rc = &ResourceCounts{Resource: s.resource, ByLifecycle: map[domain.Lifecycle]int{}, PendingByStatus: map[domain.ExecutionStatus]int{}}
			by[s.resource] = rc
		}
		rc.Shadows++
		rc.ByLifecycle[s.lifecycle]++
		for _, st := range s.statuses {
			rc.PendingByStatus[st]++
		}
		rc.RetryBacklog += s.retries
		for _, f := range s.failures {
			if f.After(hourAgo) {
				rc.FailuresLastHour++
			}
		}
	}
	out := make([]ResourceCounts, 0, len(by))
	for _, rc := range by {
		out = append(out, *rc)
	}
	slices.SortFunc(out, func(a, b ResourceCounts) int { return strings.Compare(a.Resource, b.Resource) })
	return out, nil
}
