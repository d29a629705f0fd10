package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Memory is an event store in process memory with the same contract as Store (storetest.Run):
// the same commits, optimistic concurrency, index, request records, unit of work and durable
// subscriptions, without NATS. For fast unit tests of the logic above the store; nothing
// survives the process. Safe for concurrent use.
type Memory struct {
	cfg Config
	index
	unit

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every append: wakes followers
	records   []*Record     // every record, in sequence order (index = seq-1)
	bySubject map[string][]*Record
	subjectOf map[string]string // shadow id -> its event subject
	durables  map[string]*memDurable
}

var (
	_ unitStore = (*Memory)(nil)
	_ unitStore = (*Store)(nil)
)

// NewMemory returns an empty in-memory store with cfg's prefix and clock.
func NewMemory(cfg Config) *Memory {
	m := &Memory{cfg: cfg, changed: make(chan struct{}), bySubject: map[string][]*Record{}, subjectOf: map[string]string{},
		durables: map[string]*memDurable{}, index: index{kv: &memKV{entries: map[string]indexEntry{}, now: cfgNow(cfg)}}}
	m.unit = unit{log: m, ix: &m.index, now: cfgNow(cfg)}
	return m
}

func cfgNow(cfg Config) func() time.Time {
	if cfg.Now != nil {
		return cfg.Now
	}
	return time.Now
}

func (m *Memory) subject(resource, shadowID string) string {
	return m.cfg.Prefix + ".evt." + resource + "." + shadowID
}

// append stores data on subject if its last sequence is expected.
func (m *Memory) append(subject string, expected uint64, types []string, data []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var last uint64
	if rs := m.bySubject[subject]; len(rs) > 0 {
		last = rs[len(rs)-1].Seq
	}
	if last != expected {
		return 0, fmt.Errorf("%w: last sequence of %s is %d, not %d", ErrConflict, subject, last, expected)
	}
	seq := uint64(len(m.records) + 1)
	r := &Record{Seq: seq, Subject: subject, Time: cfgNow(m.cfg)().UTC(), data: data, Types: types}
	if rest, ok := strings.CutPrefix(subject, m.cfg.Prefix+".evt."); ok {
		r.Resource, r.ShadowID, _ = strings.Cut(rest, ".")
		m.subjectOf[r.ShadowID] = subject
	}
	m.records = append(m.records, r)
	m.bySubject[subject] = append(m.bySubject[subject], r)
	close(m.changed)
	m.changed = make(chan struct{})
	return seq, nil
}

// Append stores one decision, as Store.Append does.
func (m *Memory) Append(ctx context.Context, c Commit) (AppendResult, error) {
	if !domain.ValidToken(c.Resource) || !domain.ValidID(c.ShadowID) {
		return AppendResult{}, fmt.Errorf("eventstore: append: bad resource %q or shadow id %q", c.Resource, c.ShadowID)
	}
	if len(c.Events) == 0 {
		return AppendResult{}, errors.New("eventstore: append: a commit needs at least one event")
	}
	data, err := m.encode(c)
	if err != nil {
		return AppendResult{}, err
	}
	seq, err := m.append(m.subject(c.Resource, c.ShadowID), c.ExpectedSeq, eventTypes(c.Events), data)
	return AppendResult{Seq: seq}, err
}

// memoryMaxPayload is NATS' default max_payload: the in-memory store refuses what a default
// server would.
const memoryMaxPayload = 1 << 20

func (m *Memory) encode(c Commit) ([]byte, error) {
	data, err := encodeCommit(c.RequestID, c.Events, c.State)
	if err != nil {
		return nil, fmt.Errorf("eventstore: append: %w", err)
	}
	if len(data)+headerRoom > memoryMaxPayload {
		return nil, fmt.Errorf("%w: the decision on shadow %s would be stored as %d bytes, over the %d bytes allowed in one message",
			ErrTooLarge, c.ShadowID, len(data), memoryMaxPayload-headerRoom)
	}
	return data, nil
}

func (m *Memory) loadFresh(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error) {
	return m.Load(ctx, resource, shadowID)
}

func (m *Memory) prepare(c *Commit) error {
	_, err := m.encode(*c)
	return err
}

func eventTypes(events []domain.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.EventType()
	}
	return out
}

// handOut returns a reader's own copy of a stored record: a Record caches what it decoded and
// is not safe for concurrent use, as JetStream's deliveries are each a record of their own.
func handOut(r *Record) *Record {
	c := *r
	c.wc = nil
	return &c
}

func (m *Memory) last(subject string) *Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rs := m.bySubject[subject]; len(rs) > 0 {
		return handOut(rs[len(rs)-1])
	}
	return nil
}

// Load returns the shadow as its last commit left it, and that commit's sequence (0: none).
func (m *Memory) Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error) {
	r := m.last(m.subject(resource, shadowID))
	if r == nil {
		return domain.Shadow{}, 0, nil
	}
	st, err := r.State()
	return st, r.Seq, err
}

// LoadByID is Load for a shadow known by its id alone.
func (m *Memory) LoadByID(ctx context.Context, shadowID string) (domain.Shadow, uint64, error) {
	m.mu.Lock()
	subject, ok := m.subjectOf[shadowID]
	m.mu.Unlock()
	if !ok {
		return domain.Shadow{}, 0, nil
	}
	r := m.last(subject)
	st, err := r.State()
	return st, r.Seq, err
}

// History returns every record of one shadow in order.
func (m *Memory) History(ctx context.Context, shadowID string) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	subject, ok := m.subjectOf[shadowID]
	if !ok {
		return nil, nil
	}
	out := make([]*Record, 0, len(m.bySubject[subject]))
	for _, r := range m.bySubject[subject] {
		out = append(out, handOut(r))
	}
	return out, nil
}

// isEvent reports whether a record is a shadow's commit (not a resource's).
func (m *Memory) isEvent(r *Record) bool { return strings.HasPrefix(r.Subject, m.cfg.Prefix+".evt.") }

// Replay calls fn for every event record from sequence from up to the last one at the call.
func (m *Memory) Replay(ctx context.Context, from uint64, fn func(*Record) error) (uint64, error) {
	m.mu.Lock()
	recs := append([]*Record(nil), m.records...)
	m.mu.Unlock()
	last := uint64(len(recs))
	for _, r := range recs {
		if r.Seq < from || !m.isEvent(r) {
			continue
		}
		if err := fn(handOut(r)); err != nil {
			return last, err
		}
	}
	return last, nil
}

// next waits for the first event record at or after seq, or ctx's end.
func (m *Memory) next(ctx context.Context, seq uint64, filter string) (*Record, error) {
	for {
		m.mu.Lock()
		for ; seq <= uint64(len(m.records)); seq++ {
			if r := m.records[seq-1]; strings.HasPrefix(r.Subject, filter) {
				m.mu.Unlock()
				return handOut(r), nil
			}
		}
		wait := m.changed
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait:
		}
	}
}

// Follow calls fn for every event record from sequence from on, until ctx ends (then nil) or fn
// fails.
func (m *Memory) Follow(ctx context.Context, from uint64, fn func(*Record) error) error {
	seq := max(from, 1)
	for {
		r, err := m.next(ctx, seq, m.cfg.Prefix+".evt.")
		if err != nil {
			return nil
		}
		if err := fn(r); err != nil {
			return err
		}
		seq = r.Seq + 1
	}
}

// memDurable is a durable subscription's position: every record before next is delivered, and
// acked holds the acknowledged ones.
type memDurable struct {
	mu     sync.Mutex
	acked  map[uint64]bool
	floor  uint64 // every record below it is acknowledged
	before uint64 // the last record stored when it was made: those up to it are Replayed
}

func (m *Memory) durable(name string) *memDurable {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.durables[name]
	if !ok {
		d = &memDurable{acked: map[uint64]bool{}, floor: 1, before: uint64(len(m.records))}
		m.durables[name] = d
	}
	return d
}

func (d *memDurable) ack(seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acked[seq] = true
	for d.acked[d.floor] {
		delete(d.acked, d.floor)
		d.floor++
	}
}

func (d *memDurable) done(seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return seq < d.floor || d.acked[seq]
}

func (d *memDurable) start() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.floor
}

func filterOf(o SubscribeOptions, prefix string) string {
	if o.Filter == "" {
		return prefix + ".evt."
	}
	return strings.TrimSuffix(o.Filter, ">")
}

// Subscribe delivers batches of up to o.Batch records in order to fn through the durable name; a
// failed batch is delivered again, an acknowledged one never (a later subscriber of the same name
// starts after it). It returns nil when ctx ends.
func (m *Memory) Subscribe(ctx context.Context, name string, o SubscribeOptions, fn func(context.Context, []*Record) error) error {
	if o.Batch <= 0 {
		o.Batch = 512
	}
	d, filter := m.durable(name), filterOf(o, m.cfg.Prefix)
	seq := d.start()
	for {
		r, err := m.next(ctx, seq, filter)
		if err != nil {
			return nil
		}
		batch := []*Record{r}
		m.mu.Lock()
		for s := r.Seq + 1; s <= uint64(len(m.records)) && len(batch) < o.Batch; s++ {
			if rr := m.records[s-1]; strings.HasPrefix(rr.Subject, filter) && !d.done(s) {
				batch = append(batch, handOut(rr))
			}
		}
		m.mu.Unlock()
		if d.done(r.Seq) {
			seq = r.Seq + 1
			continue
		}
		for _, b := range batch {
			b.Replayed = b.Seq <= d.before
		}
		for fn(ctx, batch) != nil {
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return nil
			}
		}
		for _, b := range batch {
			d.ack(b.Seq)
		}
		seq = batch[len(batch)-1].Seq + 1
	}
}

// SubscribeSharded delivers records one at a time to o.Workers workers, each shadow's records to
// one worker in order, retrying a record until fn succeeds, then acknowledging it. It returns
// nil when ctx ends.
func (m *Memory) SubscribeSharded(ctx context.Context, name string, o SubscribeOptions, fn func(context.Context, *Record) error) error {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	d, filter := m.durable(name), filterOf(o, m.cfg.Prefix)
	queues := make([]chan *Record, o.Workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan *Record, 16)
		wg.Go(func() {
			for r := range queues[i] {
				for fn(ctx, r) != nil {
					if sleepCtx(ctx, 50*time.Millisecond) != nil {
						break
					}
				}
				if ctx.Err() == nil {
					d.ack(r.Seq)
				}
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	seq := d.start()
	for {
		r, err := m.next(ctx, seq, filter)
		if err != nil {
			return nil
		}
		seq = r.Seq + 1
		if d.done(r.Seq) {
			continue
		}
		r.Replayed = r.Seq <= d.before
		select {
		case queues[shard(r.Subject, len(queues))] <- r:
		case <-ctx.Done():
			return nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// LoadResource returns a resource's state and the sequence of its last commit.
func (m *Memory) LoadResource(ctx context.Context, resource string) (domain.ResourceState, uint64, error) {
	return resourceOf(m.last(m.cfg.Prefix + ".res." + resource))
}

// AppendResource stores a decision about a resource, with optimistic concurrency.
func (m *Memory) AppendResource(ctx context.Context, resource string, expectedSeq uint64, events []domain.Event, state domain.ResourceState) (AppendResult, error) {
	data, err := encodeResourceCommit(resource, events, state)
	if err != nil {
		return AppendResult{}, err
	}
	seq, err := m.append(m.cfg.Prefix+".res."+resource, expectedSeq, eventTypes(events), data)
	return AppendResult{Seq: seq}, err
}

// memKV is the index bucket in memory, with JetStream's revision and error semantics.
type memKV struct {
	mu      sync.Mutex
	rev     uint64
	entries map[string]indexEntry
	now     func() time.Time
}

func (k *memKV) Get(_ context.Context, key string) (indexEntry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.entries[key]
	if !ok {
		return indexEntry{}, jetstream.ErrKeyNotFound
	}
	return e, nil
}

func (k *memKV) Latest(ctx context.Context, key string) (*indexEntry, uint64, error) {
	e, err := k.Get(ctx, key)
	if err != nil {
		return nil, 0, nil // deleted keys are gone: Create writes them again
	}
	return &e, 0, nil
}

func (k *memKV) set(key string, value []byte) uint64 {
	k.rev++
	k.entries[key] = indexEntry{value: append([]byte(nil), value...), revision: k.rev, created: k.now()}
	return k.rev
}

func (k *memKV) Put(_ context.Context, key string, value []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.set(key, value), nil
}

func (k *memKV) Create(_ context.Context, key string, value []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.entries[key]; ok {
		return 0, jetstream.ErrKeyExists
	}
	return k.set(key, value), nil
}

func (k *memKV) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.entries[key]; !ok || e.revision != revision {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	return k.set(key, value), nil
}

func (k *memKV) DeleteIf(_ context.Context, key string, revision uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e, ok := k.entries[key]; !ok || e.revision != revision {
		return jetstream.ErrKeyRevisionMismatch
	}
	delete(k.entries, key)
	return nil
}

// CommitAsOf returns the shadow's last commit decided at or before t, or nil (see
// Store.CommitAsOf).
func (m *Memory) CommitAsOf(ctx context.Context, shadowID string, t time.Time) (*Record, error) {
	recs, err := m.History(ctx, shadowID)
	if err != nil {
		return nil, err
	}
	return asOfIn(recs, t)
}
