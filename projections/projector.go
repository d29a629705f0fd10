// Package projections builds shadowbridge's read models from the event log: the shadow projection
// in KV PROV_SHADOWS (the JSON of CONTRACT.md, watched by dashboards) and the pending-operations
// index behind prov.query.pending. Every write is guarded by the shadow's version and the KV
// revision, so the projection is idempotent under redelivery, safe with several projector
// instances, and rebuildable from the stream at any time.
package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Source is what the projections read from the event log.
type Source interface {
	Subscribe(ctx context.Context, name string, o eventstore.SubscribeOptions, fn func(context.Context, []*eventstore.Record) error) error
	LastPerShadow(ctx context.Context, fn func(*eventstore.Record) error) (uint64, error)
	Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
}

// Config names the projection's resources.
type Config struct {
	Bucket   string // "PROV_SHADOWS"
	Durable  string // "PROV_PROJECTOR"
	Replicas int
	Memory   bool
	// Writers bounds the concurrent KV writes of one batch that read the bucket first (removals,
	// and writes whose expected revision was not the bucket's); the others go out at once, as
	// asynchronous publishes (default 32).
	Writers int
	// Attach opens the bucket as it exists instead of creating or updating it (client verbs
	// such as rebuild must never change what the service made, e.g. its replicas).
	Attach bool
}

// DefaultConfig returns the contract's names.
func DefaultConfig() Config {
	return Config{Bucket: "PROV_SHADOWS", Durable: "PROV_PROJECTOR", Replicas: 1, Writers: 32}
}

// Projector keeps KV PROV_SHADOWS equal to the last state of every shadow in the log.
// Run it in one or more processes; it is safe for concurrent use.
type Projector struct {
	cfg Config
	src Source
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	log *slog.Logger

	mu    sync.Mutex
	known map[string]kvVersion // key -> what this projector last saw in the bucket
}

type kvVersion struct {
	revision uint64
	version  int64
}

// OpenBucket creates or updates the shadow bucket (idempotent), or with cfg.Attach opens it as it
// is.
func OpenBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	if cfg.Attach {
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("projections: bucket %s does not exist on this NATS: start shadowbridge serve (or dev) first", cfg.Bucket)
		}
		if err != nil {
			return nil, fmt.Errorf("projections: bucket %s: %w", cfg.Bucket, err)
		}
		return kv, nil
	}
	if err := eventstore.CheckReplicas(ctx, js, "KV_"+cfg.Bucket, cfg.Replicas); err != nil {
		return nil, err
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := eventstore.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "shadowbridge shadow projection (JSON per CONTRACT.md); key <resource>.<shadowId>",
		History:     1,
		Storage:     storage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("projections: bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// NewProjector opens the bucket and returns a projector reading from src.
func NewProjector(ctx context.Context, js jetstream.JetStream, src Source, cfg Config, log *slog.Logger) (*Projector, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = 32
	}
	if log == nil {
		log = slog.Default()
	}
	kv, err := OpenBucket(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	return &Projector{cfg: cfg, src: src, js: js, kv: kv, log: log.WithGroup("projector"), known: map[string]kvVersion{}}, nil
}

// Lag returns how many records the projection has not applied yet: those its durable consumer
// has not delivered plus those delivered but not acknowledged (shared by every instance).
func (p *Projector) Lag(ctx context.Context, stream string) (uint64, error) {
	c, err := p.js.Consumer(ctx, stream, p.cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// Not created yet: everything in the stream is still to project.
		st, err := p.js.Stream(ctx, stream)
		if err != nil {
			return 0, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.Msgs, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// stateOf is the state a record holds. A record that cannot be decoded (not ours, published on
// a shadow's subject) must neither stop the projection nor hide the shadow: its state is then the
// shadow's last good commit's, as the store loads it (and reports the record).
// ok is false when there is nothing to project (no good commit before it).
func (p *Projector) stateOf(ctx context.Context, r *eventstore.Record) (st domain.Shadow, ok bool, err error) {
	st, err = r.State()
	if err == nil || !errors.Is(err, eventstore.ErrCorrupt) {
		return st, err == nil, err
	}
	st, _, err = p.src.Load(ctx, r.Resource, r.ShadowID)
	return st, err == nil && st.Created(), err
}

// Key returns the projection key of a shadow.
func Key(resource, shadowID string) string { return resource + "." + shadowID }

// Run follows the log through the durable consumer until ctx ends. Records already projected
// (after a crash between projection and acknowledgement) are skipped by version.
func (p *Projector) Run(ctx context.Context) error {
	return p.src.Subscribe(ctx, p.cfg.Durable, eventstore.SubscribeOptions{Batch: 512, Logger: p.log}, p.Apply)
}

// Apply projects a batch of records: the last state of each shadow in the batch is written.
func (p *Projector) Apply(ctx context.Context, recs []*eventstore.Record) error {
	last := make(map[string]*eventstore.Record, len(recs))
	for _, r := range recs {
		if r.ShadowID == "" {
			continue
		}
		k := Key(r.Resource, r.ShadowID)
		if prev, ok := last[k]; !ok || r.Seq > prev.Seq {
			last[k] = r
		}
	}
	states := make(map[string]domain.Shadow, len(last))
	for k, r := range last {
		st, ok, err := p.stateOf(ctx, r)
		if err != nil {
			return err
		}
		if ok {
			states[k] = st
		}
	}
	return p.writeAll(ctx, states)
}

// writeAll stores the states of one batch. What the projector knows about a key (its last
// revision here, or nothing for a shadow it has not written: most often a new one) lets it
// publish every write of the batch at once, each expecting that revision; a write whose
// expectation fails (another projector wrote, or the key exists after a restart) and every
// removal go through write, which reads the bucket first.
func (p *Projector) writeAll(ctx context.Context, states map[string]domain.Shadow) error {
	type inflight struct {
		key     string
		version int64
		f       jetstream.PubAckFuture
	}
	var (
		sent []inflight
		slow []string
	)
	for k, st := range states {
		p.mu.Lock()
		kn, cached := p.known[k]
		p.mu.Unlock()
		switch {
		case st.Expired():
			slow = append(slow, k)
			continue
		case cached && kn.version >= st.Version():
			continue
		}
		val, err := encodeShadow(st)
		if err != nil {
			return fmt.Errorf("projections: encode %s: %w", k, err)
		}
		m := nats.NewMsg("$KV." + p.cfg.Bucket + "." + k)
		m.Data = val
		f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(kn.revision))
		if err != nil {
			slow = append(slow, k)
			continue
		}
		sent = append(sent, inflight{key: k, version: st.Version(), f: f})
	}
	// An answer that never comes (lost without a disconnect, which would fail the future) must
	// not hold the projection: past the wait, what is not answered yet is written again the
	// careful way.
	wctx, cancel := context.WithTimeout(ctx, asyncWriteWait)
	defer cancel()
	for _, w := range sent {
		select {
		case ack := <-w.f.Ok():
			p.remember(w.key, kvVersion{revision: ack.Sequence, version: w.version})
			continue
		case <-w.f.Err():
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		p.forget(w.key)
		slow = append(slow, w.key)
	}
	sem := make(chan struct{}, p.cfg.Writers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, k := range slow {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := p.write(ctx, k, states[k]); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// asyncWriteWait bounds the wait for the answers of one batch's writes (a variable for tests).
var asyncWriteWait = 10 * time.Second

// remember and forget keep what this projector knows of a key in the bucket.
func (p *Projector) remember(key string, kn kvVersion) {
	p.mu.Lock()
	p.known[key] = kn
	p.mu.Unlock()
}

func (p *Projector) forget(key string) {
	p.mu.Lock()
	delete(p.known, key)
	p.mu.Unlock()
}

// encodeShadow is the shadow's JSON straight from its own encoder, on the shadow itself: no copy
// of it, and not through json.Marshal, which would check and compact the output once more.
func encodeShadow(st domain.Shadow) (val []byte, err error) {
	err = st.View(func(v any) (err error) {
		val, err = v.(*domain.ShadowData).MarshalJSON()
		return err
	})
	return val, err
}

// write stores st under key unless the bucket already holds that version or a newer one.
func (p *Projector) write(ctx context.Context, key string, st domain.Shadow) error {
	version := st.Version()
	var (
		val []byte // encoded once, when there is something to write
		err error
	)
	p.mu.Lock()
	kn, cached := p.known[key]
	p.mu.Unlock()
	for range 32 {
		if !cached {
			e, err := p.kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				kn = kvVersion{}
			case err != nil:
				return fmt.Errorf("projections: read %s: %w", key, err)
			default:
				var v struct {
					Version int64 `json:"version"`
				}
				_ = json.Unmarshal(e.Value(), &v)
				kn = kvVersion{revision: e.Revision(), version: v.Version}
			}
		}
		if kn.revision != 0 && kn.version >= version {
			return nil
		}
		if st.Expired() { // a dead shadow past its retention leaves the projection
			if kn.revision == 0 {
				return nil
			}
			err := p.kv.Delete(ctx, key, jetstream.LastRevision(kn.revision))
			if err == nil {
				p.forget(key)
				return nil
			}
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
				return fmt.Errorf("projections: remove %s: %w", key, err)
			}
			cached = false
			continue
		}
		if val == nil {
			if val, err = encodeShadow(st); err != nil {
				return fmt.Errorf("projections: encode %s: %w", key, err)
			}
		}
		var rev uint64
		if kn.revision == 0 {
			rev, err = p.kv.Create(ctx, key, val)
		} else {
			rev, err = p.kv.Update(ctx, key, val, kn.revision)
		}
		if err == nil {
			p.remember(key, kvVersion{revision: rev, version: version})
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("projections: write %s: %w", key, err)
		}
		cached = false // someone else wrote it: look again
	}
	return fmt.Errorf("projections: write %s: too much contention", key)
}

// Progress reports a rebuild's progress.
type Progress struct {
	Shadows int    // shadows rebuilt so far
	Seq     uint64 // the stream position the read has reached (last records come in stream order)
	Last    uint64 // the stream sequence the rebuild covers: every event up to it is reflected
	Phase   string // "read" or "done"
}

// Rebuild recreates the projection of every shadow from the log: the last commit of each shadow
// holds its state (checked against the fold of its events by the event store's contract), so
// only those are read, and they are written in batches. It may run while the projector runs:
// both write only newer versions. progress (may be nil) is called now and then. Shadows in the
// bucket that the log does not know are removed.
func (p *Projector) Rebuild(ctx context.Context, progress func(Progress)) (Progress, error) {
	p.mu.Lock()
	p.known = map[string]kvVersion{} // trust the bucket, not the cache, during a rebuild
	p.mu.Unlock()
	var pr Progress
	seen := map[string]bool{}
	batch := map[string]domain.Shadow{}
	flush := func() error {
		err := p.writeAll(ctx, batch)
		clear(batch)
		return err
	}
	upto, err := p.src.LastPerShadow(ctx, func(r *eventstore.Record) error {
		if r.ShadowID == "" {
			return nil
		}
		st, ok, err := p.stateOf(ctx, r)
		if err != nil || !ok {
			return err
		}
		k := Key(r.Resource, r.ShadowID)
		if st.Expired() {
			return nil // not kept: prune removes it if the bucket still has it
		}
		seen[k] = true
		batch[k] = st
		pr.Shadows++
		if len(batch) >= 1024 {
			if err := flush(); err != nil {
				return err
			}
			if progress != nil {
				progress(Progress{Shadows: pr.Shadows, Seq: r.Seq, Phase: "read"})
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return pr, err
	}
	pr.Last, pr.Seq, pr.Phase = upto, upto, "done"
	if err := p.prune(ctx, seen); err != nil {
		return pr, err
	}
	if progress != nil {
		progress(pr)
	}
	return pr, nil
}

// prune deletes projection entries of shadows the log does not have.
func (p *Projector) prune(ctx context.Context, keep map[string]bool) error {
	lister, err := p.kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("projections: list keys: %w", err)
	}
	var stale []string
	for k := range lister.Keys() {
		if !keep[k] {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		// A shadow created while the rebuild read the log is not stale: the service keeps
		// serving during a rebuild. Only keys the log does not back (or backs as expired) go.
		if resource, id, ok := strings.Cut(k, "."); ok {
			st, _, err := p.src.Load(ctx, resource, id)
			if err != nil {
				return fmt.Errorf("projections: prune %s: %w", k, err)
			}
			if st.Created() && !st.Data().Expired {
				continue
			}
		}
		if err := p.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("projections: prune %s: %w", k, err)
		}
	}
	return nil
}
