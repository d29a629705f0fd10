package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// PendingIndex is an in-memory index of the shadows with unfinished operations, kept current by
// watching the shadow bucket. Each service instance runs its own. Safe for concurrent use.
type PendingIndex struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu      sync.RWMutex
	pending map[string][]byte // key -> shadow JSON, only while it has unfinished work
	ready   chan struct{}
	err     error
}

// NewPendingIndex starts watching the bucket; Pending waits until the initial values are loaded.
func NewPendingIndex(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*PendingIndex, error) {
	if log == nil {
		log = slog.Default()
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: watch %s: %w", kv.Bucket(), err)
	}
	ix := newPendingIndex(kv, log)
	go follow(ctx, w, ix.apply, ix.loaded)
	return ix, nil
}

func newPendingIndex(kv jetstream.KeyValue, log *slog.Logger) *PendingIndex {
	return &PendingIndex{kv: kv, log: log.WithGroup("pending"), pending: map[string][]byte{}, ready: make(chan struct{})}
}

func (ix *PendingIndex) loaded() { close(ix.ready) }

// Watch starts the read models an instance keeps in memory, the pending index and the dashboard,
// on one watch of the shadow bucket: each change is delivered to the instance once, not once per
// read model. Both are current up to the same change; they stop when ctx ends.
func Watch(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*PendingIndex, *Dashboard, error) {
	if log == nil {
		log = slog.Default()
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("projections: watch %s: %w", kv.Bucket(), err)
	}
	ix, d := newPendingIndex(kv, log), newDashboard(log)
	go follow(ctx, w, func(e jetstream.KeyValueEntry) {
		// One decode for both read models.
		var s *entryFields
		if e.Operation() == jetstream.KeyValuePut {
			f, err := decodeEntry(e.Value())
			if err != nil {
				log.Error("undecodable shadow in projection", "key", e.Key(), "err", err)
				return
			}
			s = &f
		}
		ix.applyDecoded(e.Key(), e.Value(), s)
		d.applyDecoded(e.Key(), s)
		d.changed()
	}, func() {
		ix.loaded()
		d.loaded()
	})
	return ix, d, nil
}

// follow applies every entry the watcher delivers until ctx ends or the watcher closes, and calls
// loaded once, after the bucket's values at the start (or on the way out, so waiters never hang).
// It stops the watcher when done.
func follow(ctx context.Context, w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry), loaded func()) {
	defer func() { _ = w.Stop() }()
	loadedOnce := sync.OnceFunc(loaded)
	defer loadedOnce()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				loadedOnce()
				continue
			}
			apply(e)
		}
	}
}

func (ix *PendingIndex) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		ix.applyDecoded(e.Key(), nil, nil)
		return
	}
	s, err := decodeEntry(e.Value())
	if err != nil {
		ix.log.Error("undecodable shadow in projection", "key", e.Key(), "err", err)
		return
	}
	ix.applyDecoded(e.Key(), e.Value(), &s)
}

// applyDecoded keeps or drops a shadow (s nil: it left the bucket); only the execution statuses
// matter here, the whole shadow (value) is decoded when queried.
func (ix *PendingIndex) applyDecoded(key string, value []byte, s *entryFields) {
	has := false
	if s != nil {
		for _, p := range s.PendingOperations {
			has = has || p.ExecutionStatus != domain.StatusCompleted
		}
	}
	ix.mu.Lock()
	if has {
		ix.pending[key] = value
	} else {
		delete(ix.pending, key)
	}
	ix.mu.Unlock()
}

// Ready reports whether the index has loaded the bucket's values as they were when it started.
func (ix *PendingIndex) Ready() bool {
	select {
	case <-ix.ready:
		return true
	default:
		return false
	}
}

// Pending returns the shadows with unfinished operations, of one resource or of all ("").
// The order is by resource, then shadow id.
func (ix *PendingIndex) Pending(ctx context.Context, resource string) ([]domain.ShadowData, error) {
	return ix.PendingN(ctx, resource, 0)
}

// Count returns how many shadows of the resource ("" = all) have unfinished operations, without
// decoding them.
func (ix *PendingIndex) Count(resource string) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for k := range ix.pending {
		if r, _, _ := strings.Cut(k, "."); resource == "" || r == resource {
			n++
		}
	}
	return n
}

// PendingN is Pending limited to the first limit shadows (0: all); only those are decoded, so a
// dashboard can show a page of a large backlog cheaply.
func (ix *PendingIndex) PendingN(ctx context.Context, resource string, limit int) ([]domain.ShadowData, error) {
	p, err := ix.PendingPage(ctx, resource, "", limit)
	return p.Shadows, err
}

// PendingPage is one page of Pending: at most limit shadows (0: all) whose "<resource>.<shadowId>"
// sorts after the cursor after ("" = from the start). Next is the cursor of the following page
// ("" when this is the last), Total the number of pending shadows of the resource now. Pages
// follow the sort order, so a shadow that stays pending is seen once while paging; one that
// becomes pending meanwhile may be missed, as with any snapshot-free listing.
func (ix *PendingIndex) PendingPage(ctx context.Context, resource, after string, limit int) (PendingPage, error) {
	select {
	case <-ix.ready:
	case <-ctx.Done():
		return PendingPage{}, fmt.Errorf("projections: pending index still loading: %w", ctx.Err())
	}
	type entry struct {
		resource, id string
		v            []byte
	}
	ix.mu.RLock()
	list := make([]entry, 0, len(ix.pending))
	for k, v := range ix.pending {
		r, id, _ := strings.Cut(k, ".")
		if resource == "" || r == resource {
			list = append(list, entry{r, id, v})
		}
	}
	ix.mu.RUnlock()
	slices.SortFunc(list, func(a, b entry) int {
		if c := strings.Compare(a.resource, b.resource); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	page := PendingPage{Total: len(list)}
	if after != "" {
		ar, aid, _ := strings.Cut(after, ".")
		i, _ := slices.BinarySearchFunc(list, entry{ar, aid, nil}, func(e, t entry) int {
			if c := strings.Compare(e.resource, t.resource); c != 0 {
				return c
			}
			return strings.Compare(e.id, t.id)
		})
		for i < len(list) && list[i].resource == ar && list[i].id == aid {
			i++
		}
		list = list[i:]
	}
	if limit > 0 && len(list) > limit {
		list = list[:limit]
		last := list[len(list)-1]
		page.Next = last.resource + "." + last.id
	}
	page.Shadows, page.JSON = make([]domain.ShadowData, 0, len(list)), make([]json.RawMessage, 0, len(list))
	for _, e := range list {
		var d domain.ShadowData
		if err := json.Unmarshal(e.v, &d); err != nil {
			return PendingPage{}, fmt.Errorf("projections: pending: %w", err)
		}
		page.Shadows, page.JSON = append(page.Shadows, d), append(page.JSON, e.v)
	}
	return page, nil
}

// PendingPage is a page of the pending shadows (see PendingIndex.PendingPage).
type PendingPage struct {
	Shadows []domain.ShadowData `json:"shadows"`
	Total   int                 `json:"total"`
	Next    string              `json:"next,omitempty"`
	// JSON holds each of Shadows as the projection stores it (what a reply can carry as it is,
	// instead of encoding the shadow again).
	JSON []json.RawMessage `json:"-"`
}
