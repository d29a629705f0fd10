// Package eventstore is the JetStream event log of shadowbridge: one stream, PROV_EVENTS, with a
// subject per shadow (prov.evt.<resource>.<shadowId>). Each decision is stored as ONE message
// holding all its events and the shadow they produced (atomic without batch cost), appended with
// optimistic concurrency on the subject's last sequence. The package knows NATS and msgpack; it
// knows nothing of projections or transports.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Errors callers test with errors.Is.
var (
	// ErrConflict: the shadow changed since it was loaded; load, decide and append again.
	ErrConflict = errors.New("eventstore: concurrent update of the shadow")
	// ErrCorrupt: a stored message cannot be decoded by this build.
	ErrCorrupt = errors.New("eventstore: undecodable record")
	// ErrUnavailable: NATS or JetStream did not answer; nothing was written (or the write's
	// outcome is unknown and a retry with the same request id is safe).
	ErrUnavailable = fmt.Errorf("eventstore: %w", domain.CategoryCommunication)
	// ErrTooLarge: the commit (the decision and the shadow it leaves) is larger than one NATS
	// message may be. Permanent for that decision: a retry gets the same answer.
	ErrTooLarge = fmt.Errorf("eventstore: shadow too large: %w", domain.ErrLimit)
)

// headerRoom is what a commit's headers may take beside its payload.
const headerRoom = 4 << 10

// HeaderEventType carries the event types of a commit (one header value per event), so that
// consumers can skip commits without decoding them.
const HeaderEventType = "Prov-Event-Type"

// Config names the JetStream resources. DefaultConfig returns the contract's names.
type Config struct {
	Prefix   string // subject prefix, "prov"
	Stream   string // "PROV_EVENTS"
	Index    string // KV bucket for request ids, operation ids and identifier claims, "PROV_INDEX"
	Replicas int    // 1 for dev; 3 in a cluster
	// DuplicateWindow is JetStream's Nats-Msg-Id window. Idempotency beyond it comes from the
	// durable request records in the index bucket.
	DuplicateWindow time.Duration
	// Storage is file storage unless Memory is set (tests and benchmarks may use memory).
	Memory bool
	// Now is the clock that ages identifier claims (default: time.Now).
	Now func() time.Time
	// Skipped, when set, is told of every record a reader of this store passed over because it
	// cannot be decoded (a record that is not ours, published on one of the stream's subjects):
	// reader names who skipped it ("load", "history", "projector", ...). It may be called from
	// many goroutines, and again for the same record.
	Skipped func(reader, subject string, seq uint64, err error)
}

// DefaultConfig returns the contract's names with R1 file storage.
func DefaultConfig() Config {
	return Config{Prefix: "prov", Stream: "PROV_EVENTS", Index: "PROV_INDEX", Replicas: 1, DuplicateWindow: 2 * time.Minute}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if !domain.ValidToken(c.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q must match [A-Za-z0-9_-]+", c.Prefix))
	}
	if !domain.ValidToken(c.Stream) {
		errs = append(errs, fmt.Errorf("stream name %q must match [A-Za-z0-9_-]+", c.Stream))
	}
	if !domain.ValidToken(c.Index) {
		errs = append(errs, fmt.Errorf("index bucket %q must match [A-Za-z0-9_-]+", c.Index))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d must be 1..5", c.Replicas))
	}
	if c.DuplicateWindow <= 0 {
		errs = append(errs, errors.New("duplicate window must be positive"))
	}
	return errors.Join(errs...)
}

// Store is the JetStream event store. It is safe for concurrent use by many goroutines and many
// processes: all coordination happens in JetStream (expected sequences, KV revisions).
type Store struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	index
	unit
	// timerRace, when set (tests only), runs between reading a shadow's schedule and writing it,
	// so a test can put another instance's write in exactly that moment.
	timerRace func(op string)
	schedules scheduleCache
}

// newStore wires a store's index and unit of work.
func newStore(cfg Config, nc *nats.Conn, js jetstream.JetStream, stream jetstream.Stream, kv jetstream.KeyValue) *Store {
	s := &Store{cfg: cfg, nc: nc, js: js, stream: stream}
	ix := kvIndex{kv: kv, bucket: cfg.Index, store: s}
	if cfg.Replicas > 1 {
		ix.leader = func(ctx context.Context, key string) (*Record, error) {
			return s.leaderLast(ctx, "KV_"+cfg.Index, "$KV."+cfg.Index+"."+key)
		}
	}
	s.index = index{kv: ix}
	s.unit = unit{log: s, ix: &s.index, now: s.now}
	return s
}

func (s *Store) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// Open creates or updates the stream and the index bucket (idempotent) and returns the store.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eventstore: config: %w", err)
	}
	if err := checkServerVersion(nc.ConnectedServerVersion(), nc.ConnectedUrlRedacted()); err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	for _, name := range []string{cfg.Stream, "KV_" + cfg.Index} {
		if err := CheckReplicas(ctx, js, name, cfg.Replicas); err != nil {
			return nil, err
		}
	}
	p := cfg.Prefix
	stream, err := EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:              cfg.Stream,
		Description:       "shadowbridge provisioning events, timers and timer firings",
		Subjects:          []string{p + ".evt.>", p + ".res.>", p + ".timer.>", p + ".due.>"},
		Storage:           storage,
		Replicas:          cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Duplicates:        cfg.DuplicateWindow,
		AllowDirect:       true,
		AllowMsgSchedules: true,
		MaxMsgSize:        -1,
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: create stream %s: %w", cfg.Stream, unavailable(err))
	}
	kvStorage := jetstream.FileStorage
	if cfg.Memory {
		kvStorage = jetstream.MemoryStorage
	}
	idx, err := EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Index,
		Description: "shadowbridge: request ids, operation ids, identifier claims",
		History:     1,
		Storage:     kvStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: create bucket %s: %w", cfg.Index, unavailable(err))
	}
	return newStore(cfg, nc, js, stream, idx), nil
}

// ErrReplicas: an existing stream or bucket has another number of replicas than configured.
var ErrReplicas = fmt.Errorf("eventstore: replicas differ from the configuration: %w", domain.CategoryConfiguration)

// CheckReplicas returns ErrReplicas when the stream (a KV bucket's is "KV_<bucket>") exists with
// another number of replicas than want. shadowbridge never scales existing data up or down by
// itself (a scale-down loses copies, a scale-up on a busy cluster moves a lot of data): the
// operator does, or fixes nats.replicas. A stream that does not exist yet is fine.
func CheckReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) error {
	if want <= 0 {
		want = 1
	}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("eventstore: stream %s: %w", stream, unavailable(err))
	}
	if have := s.CachedInfo().Config.Replicas; have != want {
		return fmt.Errorf("%w: stream %s has %d replica(s) and nats.replicas is %d; shadowbridge does not change the replicas of existing data: scale it with `nats stream edit %s --replicas %d`, or set nats.replicas: %d",
			ErrReplicas, stream, have, want, stream, want, have)
	}
	return nil
}

// Attach returns a store over the stream and index bucket that exist, without creating or
// changing them: what client verbs use (audit, rebuild, history), so that against a cluster they
// never ask for other replicas or another dedup window than the service made. cfg names them
// (its Prefix and names); the rest is read from the stream.
func Attach(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("eventstore: stream %s does not exist on this NATS: start shadowbridge serve (or dev) first", cfg.Stream)
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: stream %s: %w", cfg.Stream, unavailable(err))
	}
	info := stream.CachedInfo()
	if !slices.Contains(info.Config.Subjects, cfg.Prefix+".evt.>") {
		return nil, fmt.Errorf("eventstore: stream %s holds %v, not the prefix %q's events (check --prefix)", cfg.Stream, info.Config.Subjects, cfg.Prefix)
	}
	cfg.Replicas, cfg.DuplicateWindow, cfg.Memory = info.Config.Replicas, info.Config.Duplicates, info.Config.Storage == jetstream.MemoryStorage
	idx, err := js.KeyValue(ctx, cfg.Index)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("eventstore: bucket %s does not exist on this NATS: start shadowbridge serve (or dev) first", cfg.Index)
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: bucket %s: %w", cfg.Index, unavailable(err))
	}
	return newStore(cfg, nc, js, stream, idx), nil
}

// Config returns the store's configuration.
func (s *Store) Config() Config { return s.cfg }

// JetStream returns the JetStream context the store uses (for components that share it).
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Subject returns the event subject of a shadow.
func (s *Store) Subject(resource, shadowID string) string {
	return s.cfg.Prefix + ".evt." + resource + "." + shadowID
}

// Commit is one decision to append.
type Commit struct {
	Resource string
	ShadowID string
	// ExpectedSeq is the stream sequence of the shadow's last commit when it was loaded, 0 for a
	// shadow that has none. The append fails with ErrConflict if the shadow moved on.
	ExpectedSeq uint64
	Events      []domain.Event
	// State is the shadow after the events.
	State domain.Shadow
	// RequestID is the request id of the command decided (stored in the commit: the evidence a
	// retry after a crash looks for; see RequestRecord).
	RequestID string

	// msg is the commit encoded by prepare (the unit of work checks the size before it writes
	// anything to the index, and the append reuses the encoding).
	msg *nats.Msg
}

// AppendResult tells where a commit landed.
type AppendResult struct {
	Seq uint64
}

// prepare encodes c ahead of its append and checks that it fits one message (ErrTooLarge).
func (s *Store) prepare(c *Commit) error {
	m, _, err := s.commitMsg(*c)
	if err != nil {
		return err
	}
	c.msg = m
	return nil
}

func (s *Store) commitMsg(c Commit) (*nats.Msg, []jetstream.PublishOpt, error) {
	if c.msg != nil {
		return c.msg, []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(c.ExpectedSeq)}, nil
	}
	if !domain.ValidToken(c.Resource) || !domain.ValidID(c.ShadowID) {
		return nil, nil, fmt.Errorf("eventstore: append: bad resource %q or shadow id %q", c.Resource, c.ShadowID)
	}
	if len(c.Events) == 0 {
		return nil, nil, errors.New("eventstore: append: a commit needs at least one event")
	}
	data, err := encodeCommit(c.RequestID, c.Events, c.State)
	if err != nil {
		return nil, nil, fmt.Errorf("eventstore: append: %w", err)
	}
	if limit := s.nc.MaxPayload(); limit > 0 && int64(len(data))+headerRoom > limit {
		return nil, nil, fmt.Errorf("%w: the decision on shadow %s would be stored as %d bytes, over the %d bytes NATS carries in one message (max_payload)",
			ErrTooLarge, c.ShadowID, len(data), limit-headerRoom)
	}
	m := nats.NewMsg(s.Subject(c.Resource, c.ShadowID))
	m.Data = data
	for _, e := range c.Events {
		m.Header.Add(HeaderEventType, e.EventType())
	}
	return m, []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(c.ExpectedSeq)}, nil
}

// Append stores the commit synchronously. Errors: ErrConflict (reload and decide again),
// ErrUnavailable (NATS down or timed out).
func (s *Store) Append(ctx context.Context, c Commit) (AppendResult, error) {
	m, opts, err := s.commitMsg(c)
	if err != nil {
		return AppendResult{}, err
	}
	ack, err := s.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		return AppendResult{}, appendErr(err)
	}
	return AppendResult{Seq: ack.Sequence}, nil
}

// PendingAppend is an append in flight (see AppendAsync).
type PendingAppend struct{ f jetstream.PubAckFuture }

// Wait returns the outcome of the append, with the same errors as Append.
func (p PendingAppend) Wait(ctx context.Context) (AppendResult, error) {
	select {
	case ack := <-p.f.Ok():
		return AppendResult{Seq: ack.Sequence}, nil
	case err := <-p.f.Err():
		return AppendResult{}, appendErr(err)
	case <-ctx.Done():
		return AppendResult{}, fmt.Errorf("eventstore: append: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// AppendAsync starts an append without waiting for JetStream's answer, so that many commits
// (of different shadows) can be in flight at once. Each one is still checked against its
// expected sequence.
func (s *Store) AppendAsync(c Commit) (PendingAppend, error) {
	m, opts, err := s.commitMsg(c)
	if err != nil {
		return PendingAppend{}, err
	}
	f, err := s.js.PublishMsgAsync(m, opts...)
	if err != nil {
		return PendingAppend{}, appendErr(err)
	}
	return PendingAppend{f: f}, nil
}

func appendErr(err error) error {
	if isWrongLastSeq(err) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return fmt.Errorf("eventstore: append: %w", unavailable(err))
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

// unavailable marks infrastructure failures as communication errors while keeping the cause.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return err // the server answered: not an availability problem
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Record is one stored commit. Its events and state are decoded on demand, so consumers that
// need only one of them (history: events; projection: state) do not pay for the other.
type Record struct {
	Seq      uint64
	Subject  string
	Resource string
	ShadowID string
	Time     time.Time
	Types    []string // event types, from the header
	// Deliveries is how many times a durable consumer has handed this record out (1 the first
	// time; more after a crash or a missed acknowledgement); 0 outside durable consumers.
	Deliveries uint64
	// Replayed is true for a record a durable consumer hands out although it was stored before
	// the consumer was made (made for the first time on an existing log, or again after it was
	// deleted): the record may be long past, and its state is not the shadow's current one, so a
	// reader that acts on it (the dispatcher) looks at the shadow as it is now. False outside
	// durable consumers.
	Replayed  bool
	data      []byte
	wc        *wireCommit
	kvDeleted bool // a KV delete or purge marker (leader reads of the index)
}

func (s *Store) newRecord(subject string, seq uint64, tm time.Time, h nats.Header, data []byte) *Record {
	// UTC: nats.go gives the stored time in the local zone, and a record must read the same
	// (audit, JSON) wherever it is read.
	r := &Record{Seq: seq, Subject: subject, Time: tm.UTC(), data: data, Types: h.Values(HeaderEventType)}
	for _, kind := range []string{".evt.", ".due."} {
		if rest, ok := strings.CutPrefix(subject, s.cfg.Prefix+kind); ok {
			r.Resource, r.ShadowID, _ = strings.Cut(rest, ".")
		}
	}
	return r
}

// Has reports whether the commit holds an event of the given type (header only, no decoding).
func (r *Record) Has(eventType string) bool {
	for _, t := range r.Types {
		if t == eventType {
			return true
		}
	}
	return false
}

func (r *Record) decode() (*wireCommit, error) {
	if r.wc == nil {
		wc, err := decodeCommit(r.data)
		if err != nil {
			return nil, fmt.Errorf("record %d (%s): %w", r.Seq, r.Subject, err)
		}
		r.wc = &wc
	}
	return r.wc, nil
}

// DecisionTime returns when the record's decision was made (its first event's time), zero for a
// record without events. It reads that one field, not the events, unless they are decoded already.
func (r *Record) DecisionTime() (time.Time, error) {
	if r.wc == nil {
		if t, ok, err := readDecisionTime(r.data); err != nil || ok {
			return t, err
		}
	}
	ev, err := r.Events()
	if err != nil || len(ev) == 0 {
		return time.Time{}, err
	}
	return ev[0].EventTime(), nil
}

// Events decodes the commit's events. Not safe for concurrent use on one Record.
func (r *Record) Events() ([]domain.Event, error) {
	wc, err := r.decode()
	if err != nil {
		return nil, err
	}
	ev, err := decodeEvents(*wc)
	if err != nil {
		return nil, fmt.Errorf("record %d (%s): %w", r.Seq, r.Subject, err)
	}
	return ev, nil
}

// State decodes the shadow as it was after this commit. Not safe for concurrent use on one Record.
func (r *Record) State() (domain.Shadow, error) {
	wc, err := r.decode()
	if err != nil {
		return domain.Shadow{}, err
	}
	st, err := decodeState(wc.State)
	if err != nil {
		return domain.Shadow{}, fmt.Errorf("record %d (%s): %w", r.Seq, r.Subject, err)
	}
	return st, nil
}

// StateSummary reads the object class and the operations (change type, request id) of the
// commit's state without decoding the rest: what history and audit show.
func (r *Record) StateSummary() (StateSummary, error) {
	wc, err := r.decode()
	if err != nil {
		return StateSummary{}, err
	}
	s, err := readStateSummary(wc.State)
	if err != nil {
		return StateSummary{}, fmt.Errorf("record %d (%s): %w", r.Seq, r.Subject, err)
	}
	return s, nil
}

// RawState returns the msgpack-encoded state without decoding it (for bulk rebuilds that keep
// only the last state of each shadow).
func (r *Record) RawState() ([]byte, error) {
	wc, err := r.decode()
	if err != nil {
		return nil, err
	}
	return wc.State, nil
}

// DecodeState decodes a state returned by RawState.
func DecodeState(raw []byte) (domain.Shadow, error) { return decodeState(raw) }

// RequestID returns the request id of the command that made this commit ("" if none).
func (r *Record) RequestID() (string, error) {
	wc, err := r.decode()
	if err != nil {
		return "", err
	}
	return wc.RequestID, nil
}

// Load returns the current shadow and the sequence of its last commit (0 and the zero shadow if
// it has none): one direct get of the subject's last message, whatever the size of the log.
func (s *Store) Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error) {
	return s.loadLast(ctx, s.Subject(resource, shadowID))
}

// LoadByID is Load when the resource is not known (queries by shadow id).
func (s *Store) LoadByID(ctx context.Context, shadowID string) (domain.Shadow, uint64, error) {
	if !domain.ValidID(shadowID) {
		return domain.Shadow{}, 0, nil
	}
	return s.loadLast(ctx, s.cfg.Prefix+".evt.*."+shadowID)
}

func (s *Store) loadLast(ctx context.Context, subject string) (domain.Shadow, uint64, error) {
	r, err := s.LastRecord(ctx, subject)
	return s.stateOf(ctx, r, err)
}

// stateOf is the shadow a record holds and its sequence (the empty shadow for no record). A
// record that cannot be decoded (not ours) does not stand for the shadow: the state is its last
// good commit's, with the bad record's sequence, so the next decision is appended after it.
func (s *Store) stateOf(ctx context.Context, r *Record, err error) (domain.Shadow, uint64, error) {
	if err != nil || r == nil {
		return domain.Shadow{}, 0, err
	}
	st, err := r.State()
	if err == nil {
		return st, r.Seq, nil
	}
	if !errors.Is(err, ErrCorrupt) {
		return domain.Shadow{}, 0, err
	}
	s.skipped("load", r, err)
	good, err := s.lastGood(ctx, r, func(g *Record) bool { _, err := g.State(); return err == nil })
	if err != nil {
		return domain.Shadow{}, 0, err
	}
	if good != nil {
		st, _ = good.State()
	}
	return st, r.Seq, nil
}

// lastGood returns the last record before bad on bad's subject that ok accepts, nil if none. It
// reads the subject's history: it runs only while a record that is not ours is the last of its
// subject, until the next decision is stored after it.
func (s *Store) lastGood(ctx context.Context, bad *Record, ok func(*Record) bool) (*Record, error) {
	var good *Record
	err := s.replay(ctx, []string{bad.Subject}, 1, bad.Seq, func(r *Record) error {
		if r.Seq < bad.Seq && ok(r) {
			good = r
		}
		return nil
	})
	return good, err
}

// skipped reports a record passed over because it cannot be decoded (Config.Skipped).
func (s *Store) skipped(reader string, r *Record, err error) {
	if s.cfg.Skipped != nil {
		s.cfg.Skipped(reader, r.Subject, r.Seq, err)
	}
}

// Skip reports a record a consumer of this store passed over because it cannot be decoded, so
// that every reader's skips are counted in one place (Config.Skipped).
func (s *Store) Skip(reader string, r *Record, err error) { s.skipped(reader, r, err) }

// LastRecord returns the last record on subject (wildcards allowed), or nil if there is none.
//
// It reads with a direct get, which any replica of a replicated stream may answer, a moment
// behind the leader; "none" is therefore confirmed with the leader, so that a shadow stored a
// moment ago is never reported missing.
func (s *Store) LastRecord(ctx context.Context, subject string) (*Record, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		if s.cfg.Replicas <= 1 {
			return nil, nil
		}
		return s.leaderLast(ctx, s.cfg.Stream, subject)
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: load %s: %w", subject, unavailable(err))
	}
	return s.newRecord(m.Subject, m.Sequence, m.Time, m.Header, m.Data), nil
}

// leaderLast reads the last message on subject from the stream's leader (the JetStream API's
// message get, not a direct get): read-after-write on a replicated stream. nil if none.
func (s *Store) leaderLast(ctx context.Context, stream, subject string) (*Record, error) {
	r, _, err := s.leaderLastWithHeader(ctx, stream, subject)
	return r, err
}

// leaderLastWithHeader is leaderLast that also returns the message's headers.
func (s *Store) leaderLastWithHeader(ctx context.Context, stream, subject string) (*Record, nats.Header, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, nil, fmt.Errorf("eventstore: load %s: %w", subject, unavailable(err))
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Hdrs    []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, nil, fmt.Errorf("eventstore: load %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == 10037: // no message found
		return nil, nil, nil
	case resp.Error != nil:
		return nil, nil, fmt.Errorf("eventstore: load %s: %w", subject, unavailable(errors.New(resp.Error.Description)))
	case resp.Message == nil:
		return nil, nil, fmt.Errorf("eventstore: load %s: empty answer", subject)
	}
	h := nats.Header{}
	if len(resp.Message.Hdrs) > 0 {
		if h, err = nats.DecodeHeadersMsg(resp.Message.Hdrs); err != nil {
			return nil, nil, fmt.Errorf("eventstore: load %s: headers: %w", subject, err)
		}
	}
	r := s.newRecord(resp.Message.Subject, resp.Message.Seq, resp.Message.Time, h, resp.Message.Data)
	op := h.Get("KV-Operation")
	r.kvDeleted = op == "DEL" || op == "PURGE"
	return r, h, nil
}

// loadFresh is Load from the stream's leader: after a conflict, a direct get could still show
// the state the conflict was about.
func (s *Store) loadFresh(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error) {
	if s.cfg.Replicas <= 1 {
		return s.Load(ctx, resource, shadowID)
	}
	r, err := s.leaderLast(ctx, s.cfg.Stream, s.Subject(resource, shadowID))
	return s.stateOf(ctx, r, err)
}

// RecordAt returns the record with the given stream sequence.
func (s *Store) RecordAt(ctx context.Context, seq uint64) (*Record, error) {
	m, err := s.stream.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("eventstore: get %d: %w", seq, unavailable(err))
	}
	return s.newRecord(m.Subject, m.Sequence, m.Time, m.Header, m.Data), nil
}

// LastSeq returns the stream's last sequence (0 when empty).
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventstore: stream info: %w", unavailable(err))
	}
	return info.State.LastSeq, nil
}

// ResourceSubject returns the subject of a resource's own events (availability).
func (s *Store) ResourceSubject(resource string) string { return s.cfg.Prefix + ".res." + resource }

// LoadResource returns a resource's state and the sequence of its last commit (0 if none).
func (s *Store) LoadResource(ctx context.Context, resource string) (domain.ResourceState, uint64, error) {
	r, err := s.LastRecord(ctx, s.ResourceSubject(resource))
	if err != nil {
		return domain.ResourceState{}, 0, err
	}
	st, seq, err := resourceOf(r)
	if err == nil || !errors.Is(err, ErrCorrupt) {
		return st, seq, err
	}
	// Not ours: the resource's state is its last good commit's, and the next decision is
	// appended after the bad record.
	s.skipped("load", r, err)
	good, err := s.lastGood(ctx, r, func(g *Record) bool { _, _, err := resourceOf(g); return err == nil })
	if err != nil {
		return domain.ResourceState{}, 0, err
	}
	st, _, _ = resourceOf(good)
	return st, r.Seq, nil
}

// resourceOf decodes a resource's commit (nil: a resource with none).
func resourceOf(r *Record) (domain.ResourceState, uint64, error) {
	if r == nil {
		return domain.ResourceState{}, 0, nil
	}
	wc, err := r.decode()
	if err != nil {
		return domain.ResourceState{}, 0, err
	}
	var d domain.ResourceData
	if err := unmarshal(wc.State, &d); err != nil {
		return domain.ResourceState{}, 0, fmt.Errorf("%w: resource state: %w", ErrCorrupt, err)
	}
	return domain.RestoreResource(d), r.Seq, nil
}

// encodeResourceCommit checks and encodes a decision about a resource.
func encodeResourceCommit(resource string, events []domain.Event, state domain.ResourceState) ([]byte, error) {
	if !domain.ValidToken(resource) || len(events) == 0 {
		return nil, fmt.Errorf("eventstore: append resource %q: bad resource or no events", resource)
	}
	data, err := encodeCommitWith("", events, func(w *writer) error { return w.e.Encode(state.Data()) })
	if err != nil {
		return nil, fmt.Errorf("eventstore: append resource: %w", err)
	}
	return data, nil
}

// AppendResource stores a decision about a resource with the same optimistic concurrency as
// Append (ErrConflict when the resource moved on since expectedSeq).
func (s *Store) AppendResource(ctx context.Context, resource string, expectedSeq uint64, events []domain.Event, state domain.ResourceState) (AppendResult, error) {
	data, err := encodeResourceCommit(resource, events, state)
	if err != nil {
		return AppendResult{}, err
	}
	m := nats.NewMsg(s.ResourceSubject(resource))
	m.Data = data
	for _, e := range events {
		m.Header.Add(HeaderEventType, e.EventType())
	}
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expectedSeq))
	if err != nil {
		return AppendResult{}, appendErr(err)
	}
	return AppendResult{Seq: ack.Sequence}, nil
}

// Timer headers of JetStream message schedules (nats-server 2.12+).
const (
	headerSchedule       = "Nats-Schedule"
	headerScheduleTarget = "Nats-Schedule-Target"
)

// TimerSubject is where a shadow's retry timer is scheduled; DueSubject is where it fires.
func (s *Store) TimerSubject(resource, shadowID string) string {
	return s.cfg.Prefix + ".timer." + resource + "." + shadowID
}

// DueSubject is where a shadow's timer lands when it fires.
func (s *Store) DueSubject(resource, shadowID string) string {
	return s.cfg.Prefix + ".due." + resource + "." + shadowID
}

// ArmerWorkers is how many shadows' timers the service's timer armer applies at once (one
// shadow on one worker, in log order): each arming is a synchronous publish, so this is how many
// are in flight.
const ArmerWorkers = 128

// FiringWorkers is how many fired timers the service handles at once (one shadow on one worker):
// 1M timers due over a minute need about 17k firings a second, which 16 workers did not keep up
// with (lateness p99 3.3 s against 0.7 s for raw schedules; 1.9-2.2 s with 128).
const FiringWorkers = 128

// ArmTimer schedules the shadow's timer at at (a JetStream message schedule in PROV_EVENTS:
// both the schedule and its firing stay in the log). Arming again replaces the pending one; a
// time in the past fires at once. The server checks schedules every 250 ms at most, so a timer
// fires up to that much late. Idempotent. It names no commit, so it replaces whatever is armed
// and any decision's arming replaces it: the timer armer uses ArmTimerFor.
func (s *Store) ArmTimer(ctx context.Context, resource, shadowID string, at time.Time) error {
	if _, err := s.js.PublishMsg(ctx, s.timerMsg(resource, shadowID, at)); err != nil {
		return fmt.Errorf("eventstore: arm timer %s: %w", shadowID, unavailable(err))
	}
	return nil
}

// timerMsg is the schedule of a shadow's timer at at.
func (s *Store) timerMsg(resource, shadowID string, at time.Time) *nats.Msg {
	m := nats.NewMsg(s.TimerSubject(resource, shadowID))
	// Nanoseconds: whole seconds would fire up to a second early.
	m.Header.Set(headerSchedule, "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(headerScheduleTarget, s.DueSubject(resource, shadowID))
	m.Data = []byte(at.UTC().Format(time.RFC3339Nano))
	return m
}

// CancelTimer removes the shadow's pending timer, if any, whichever decision armed it (the timer
// armer uses CancelTimerFor). Idempotent.
func (s *Store) CancelTimer(ctx context.Context, resource, shadowID string) error {
	err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.TimerSubject(resource, shadowID)))
	if err != nil {
		return fmt.Errorf("eventstore: cancel timer %s: %w", shadowID, unavailable(err))
	}
	return nil
}

// JetStreamConn returns the NATS connection the store uses.
func (s *Store) JetStreamConn() *nats.Conn { return s.nc }

// Payload returns the raw message body (for records that are not commits, such as timer firings).
func (r *Record) Payload() []byte { return r.data }
