package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// The index bucket (PROV_INDEX) holds what the log cannot answer by subject:
//
//	req.<resource>.<h(requestId)>          -> RequestRecord (idempotency beyond the dedup window)
//	op.<operationId>                        -> "<resource>.<shadowId>" (confirmations name only the operation)
//	id.<resource>.<kind>.<h(class,attr,v)>  -> shadowId (identifier claims and lookups)
//
// Every write is a compare-and-set on the key's revision, so several service instances stay
// correct without locks of their own.

// indexKV is what the index needs of a key-value bucket: JetStream's (kvIndex) or the in-memory
// store's. Errors are JetStream's sentinels (ErrKeyNotFound, ErrKeyExists,
// ErrKeyRevisionMismatch), whoever implements it.
type indexKV interface {
	Get(ctx context.Context, key string) (indexEntry, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// DeleteIf removes the key if its revision is still revision (ErrKeyRevisionMismatch if not).
	DeleteIf(ctx context.Context, key string, revision uint64) error
	// GetMany reads many keys at once, in the order of keys (nil where absent).
	GetMany(ctx context.Context, keys []string) ([]*indexEntry, error)
	// Latest reads key as the bucket's leader holds it: every write acknowledged before the call
	// is seen (a KV get may be answered by a replica a moment behind). Absent, it returns nil and
	// the revision of the key's delete marker (0 if none: Create writes it; else Update at that
	// revision does).
	Latest(ctx context.Context, key string) (*indexEntry, uint64, error)
}

type indexEntry struct {
	value    []byte
	revision uint64
	created  time.Time
}

func (e indexEntry) Value() []byte      { return e.value }
func (e indexEntry) Revision() uint64   { return e.revision }
func (e indexEntry) Created() time.Time { return e.created }

// kvIndex is indexKV on a JetStream KV bucket. leader, when set (a replicated bucket), reads a
// key from the bucket's leader: a KV get is a direct get that a replica a moment behind may
// answer, so "not found" is confirmed there (a confirmation arriving right after its operation
// was indexed must find it).
type kvIndex struct {
	kv     jetstream.KeyValue
	leader func(ctx context.Context, key string) (*Record, error)
	// bucket and store serve GetMany's batched direct gets on the bucket's stream.
	bucket string
	store  *Store
}

func (k kvIndex) Get(ctx context.Context, key string) (indexEntry, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) && k.leader != nil {
		r, lerr := k.leader(ctx, key)
		if lerr != nil {
			return indexEntry{}, lerr
		}
		if r == nil || r.kvDeleted {
			return indexEntry{}, err
		}
		return entryOf(r), nil
	}
	if err != nil {
		return indexEntry{}, err
	}
	return indexEntry{value: e.Value(), revision: e.Revision(), created: e.Created()}, nil
}

func (k kvIndex) Latest(ctx context.Context, key string) (*indexEntry, uint64, error) {
	if k.leader == nil { // one replica: a get is the leader's answer
		e, err := k.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		return &e, 0, nil
	}
	r, err := k.leader(ctx, key)
	switch {
	case err != nil:
		return nil, 0, err
	case r == nil:
		return nil, 0, nil
	case r.kvDeleted:
		return nil, r.Seq, nil
	}
	e := entryOf(r)
	return &e, 0, nil
}

// entryOf is a key's value as read from the bucket's stream.
func entryOf(r *Record) indexEntry {
	return indexEntry{value: r.data, revision: r.Seq, created: r.Time}
}

func (k kvIndex) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return k.kv.Put(ctx, key, value)
}

func (k kvIndex) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	return k.kv.Create(ctx, key, value)
}

func (k kvIndex) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return k.kv.Update(ctx, key, value, revision)
}

func (k kvIndex) DeleteIf(ctx context.Context, key string, revision uint64) error {
	return k.kv.Purge(ctx, key, jetstream.LastRevision(revision))
}

// index answers what the log cannot answer by subject (the layout above). Store and Memory
// share it over their own buckets.
type index struct {
	kv  indexKV
	ops opCache // operations this process indexed: a confirmation finds its shadow without a read
}

// opCache remembers, in two generations of at most opCacheSize entries each, where the
// operations this process indexed belong. An operation's entry never changes once written, so a
// hit is always right; a miss reads the bucket.
type opCache struct {
	mu        sync.Mutex
	cur, prev map[string]string
}

const opCacheSize = 1 << 16

func (c *opCache) get(op string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[op]; ok {
		return v, true
	}
	v, ok := c.prev[op]
	return v, ok
}

func (c *opCache) put(op, where string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= opCacheSize {
		c.prev, c.cur = c.cur, make(map[string]string, 1024)
	}
	c.cur[op] = where
}

// ErrIdentifierTaken is returned by Claim; errors.As to *TakenError for the owner.
var ErrIdentifierTaken = domain.ErrIdentifierTaken

// Holder is who holds an identifier claim: the shadow, and the request id of the command that
// claimed it (empty when there was none). A retry of the same request may take over a claim
// whose shadow was never stored (a crash between claim and append).
type Holder struct {
	ShadowID  string
	RequestID string
}

func (h Holder) value() []byte {
	if h.RequestID == "" {
		return []byte(h.ShadowID)
	}
	return []byte(h.ShadowID + " " + h.RequestID)
}

func parseHolder(v []byte) Holder {
	id, req, _ := strings.Cut(string(v), " ")
	return Holder{ShadowID: id, RequestID: req}
}

// TakenError names the shadow holding a claimed identifier.
type TakenError struct {
	Claim domain.Claim
	Owner string
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("%s %q=%v is already used by shadow %s", e.Claim.Kind, e.Claim.Attribute, e.Claim.Value, e.Owner)
}

// Unwrap makes errors.Is(err, domain.ErrIdentifierTaken) and the already-exists category work.
func (e *TakenError) Unwrap() error { return domain.ErrIdentifierTaken }

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// valueKey is a type-tagged form of an attribute value, so "42" and 42 are different identifiers.
func valueKey(v any) string { return fmt.Sprintf("%T:%v", v, v) }

func claimKey(c domain.Claim) string {
	return "id." + c.Resource + "." + string(c.Kind) + "." + hash(c.ObjectClass, c.Attribute, valueKey(c.Value))
}

// Owner returns the shadow holding the identifier, or "" if none, as the index's leader holds it:
// a command or a notification addressed by identifier must not go to a holder that has just
// released it (a replica a moment behind still showed it).
func (s *index) Owner(ctx context.Context, c domain.Claim) (string, error) {
	e, _, err := s.kv.Latest(ctx, claimKey(c))
	if err != nil {
		return "", fmt.Errorf("eventstore: lookup identifier: %w", unavailable(err))
	}
	if e == nil {
		return "", nil
	}
	return parseHolder(e.value).ShadowID, nil
}

// Claim reserves an identifier for h. Secondary identifiers are exclusive: if another shadow
// holds it, stale(owner, claimedAt) decides whether that claim may be taken over (the owner died,
// or never got its add stored); otherwise the error is a *TakenError. Primary identifiers are
// recorded for lookups and simply overwritten. Claim is idempotent for the same shadow.
func (s *index) Claim(ctx context.Context, c domain.Claim, h Holder, stale func(ctx context.Context, owner Holder, claimedAt time.Time) (bool, error)) error {
	key := claimKey(c)
	shadowID := h.ShadowID
	if c.Kind == domain.PrimaryIdentifier {
		if _, err := s.kv.Put(ctx, key, h.value()); err != nil {
			return fmt.Errorf("eventstore: claim: %w", unavailable(err))
		}
		return nil
	}
	// The holder is read from the leader: a replica a moment behind could show a claim since
	// released (or taken over) and the identifier would be refused as taken, for good.
	var deleted uint64
	for range 16 {
		_, err := s.createAt(ctx, key, h.value(), deleted)
		if err == nil {
			return nil
		}
		if !casFailed(err) {
			return fmt.Errorf("eventstore: claim: %w", unavailable(err))
		}
		e, del, err := s.kv.Latest(ctx, key)
		if err != nil {
			return fmt.Errorf("eventstore: claim: %w", unavailable(err))
		}
		if e == nil {
			deleted = del // released meanwhile
			continue
		}
		owner := parseHolder(e.value)
		if owner.ShadowID == shadowID {
			return nil
		}
		ok, err := stale(ctx, owner, e.created)
		if err != nil {
			return err
		}
		if !ok {
			return &TakenError{Claim: c, Owner: owner.ShadowID}
		}
		if _, err := s.kv.Update(ctx, key, h.value(), e.revision); err == nil {
			return nil
		} else if !casFailed(err) {
			return fmt.Errorf("eventstore: claim: %w", unavailable(err))
		}
	}
	// Not a refusal (that would be the request's answer for good): the identifier's fate is not
	// known yet, and a retry finds out.
	return fmt.Errorf("eventstore: claim: %w: too much contention on %v", ErrUnavailable, c.Value)
}

// casFailed tells a compare-and-set that lost (another write came first) from a store failure.
func casFailed(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err)
}

// Release frees an identifier if shadowID still holds it.
func (s *index) Release(ctx context.Context, c domain.Claim, shadowID string) error {
	key := claimKey(c)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("eventstore: release: %w", unavailable(err))
	}
	if parseHolder(e.Value()).ShadowID != shadowID {
		return nil
	}
	err = s.kv.DeleteIf(ctx, key, e.Revision())
	if err != nil && !casFailed(err) {
		return fmt.Errorf("eventstore: release: %w", unavailable(err))
	}
	return nil
}

// PutOperation records which shadow an operation belongs to. Written before the commit that
// creates the operation, so that a confirmation can never arrive before its index entry.
func (s *index) PutOperation(ctx context.Context, operationID, resource, shadowID string) error {
	if _, err := s.kv.Put(ctx, "op."+operationID, []byte(resource+"."+shadowID)); err != nil {
		return fmt.Errorf("eventstore: index operation: %w", unavailable(err))
	}
	s.ops.put(operationID, resource+"."+shadowID)
	return nil
}

// LookupOperation returns the resource and shadow of an operation; ok is false if unknown.
func (s *index) LookupOperation(ctx context.Context, operationID string) (resource, shadowID string, ok bool, err error) {
	if !domain.ValidID(operationID) {
		return "", "", false, nil
	}
	if where, ok := s.ops.get(operationID); ok {
		resource, shadowID, _ = strings.Cut(where, ".")
		return resource, shadowID, true, nil
	}
	e, err := s.kv.Get(ctx, "op."+operationID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("eventstore: lookup operation: %w", unavailable(err))
	}
	resource, shadowID, _ = strings.Cut(string(e.Value()), ".")
	return resource, shadowID, true, nil
}

// RequestRecord is the durable record of a request id. It is written twice: pending (no Reply)
// before the decision is appended, naming the shadow and operation the decision creates, and done
// (with the Reply) after. A retry that finds it pending after a crash looks for the commit in that
// shadow's history (the commit carries the request id) and either answers from it or decides
// again with the same ids; so a request id is answered once and decided once for as long as its
// shadow's history exists, long after JetStream's Nats-Msg-Id window.
type RequestRecord struct {
	// Fingerprint identifies the request body, so that a reused request id with a different
	// request is refused instead of silently answered with the old reply.
	Fingerprint string          `json:"fingerprint"`
	Reply       json.RawMessage `json:"reply,omitempty"`
	Seq         uint64          `json:"seq,omitempty"`
	ShadowID    string          `json:"shadowId,omitempty"`
	OperationID string          `json:"operationId,omitempty"`
	// Refused, instead of Reply, completes the record of a request refused because of the state
	// it met (domain.IsRefusal): the refusal is its answer for good, even once the state would
	// allow it.
	Refused *Refusal `json:"refused,omitempty"`
	// Revision is the record's KV revision as read or reserved (not stored): completing a
	// reservation made by the same caller then costs one write.
	Revision uint64 `json:"-"`
	// Since is when the record was last written, by the store's clock (not stored): while
	// pending, how long ago its attempt reserved it.
	Since time.Time `json:"-"`
}

// Refusal is the recorded answer of a refused request: its error's category and message.
type Refusal struct {
	Category domain.Category `json:"category"`
	Message  string          `json:"message"`
}

// Err is the refusal as the error it was first answered with.
func (r *Refusal) Err() error { return &domain.Error{Category: r.Category, Message: r.Message} }

// Pending reports whether the record was reserved and not yet completed with a reply or a refusal.
func (r *RequestRecord) Pending() bool { return len(r.Reply) == 0 && r.Refused == nil }

// RefuseRequest completes the record of a request id with a refusal, r naming the ids the refused
// attempt decided with: it creates the record when there is none, and completes a reservation
// only when it names those ids and, when r.Revision is set (the refused attempt's own
// reservation), only while it is still at that revision: once another attempt took it over, that
// attempt's decision is the answer. Whatever happens,
// it returns the record in place afterwards, which is the request's answer: the refusal, the
// reply of an attempt that completed first, or the reservation of another attempt (whose ids the
// caller adopts); written says whether that is r.
func (s *index) RefuseRequest(ctx context.Context, resource, requestID string, r RequestRecord) (rec *RequestRecord, written bool, err error) {
	r.Reply, r.Seq = nil, 0
	b, err := json.Marshal(r)
	if err != nil {
		return nil, false, err
	}
	key := requestKey(resource, requestID)
	for range 16 {
		cur, rev, err := s.getRequest(ctx, resource, requestID)
		if err != nil {
			return nil, false, err
		}
		var nrev uint64
		switch {
		case cur == nil:
			nrev, err = s.createAt(ctx, key, b, rev)
		case !cur.Pending() || cur.ShadowID != r.ShadowID || cur.OperationID != r.OperationID,
			r.Revision != 0 && rev != r.Revision: // another attempt took the reservation over (TakeOverRequest)
			cur.Revision = rev
			return cur, false, nil
		default:
			nrev, err = s.kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			r.Revision = nrev
			return &r, true, nil
		}
		if !casFailed(err) {
			return nil, false, fmt.Errorf("eventstore: record refusal: %w", unavailable(err))
		}
	}
	return nil, false, fmt.Errorf("eventstore: record refusal: %w: too much contention", ErrUnavailable)
}

func requestKey(resource, requestID string) string { return "req." + resource + "." + hash(requestID) }

// GetRequest returns the record of a request id, or nil.
func (s *index) GetRequest(ctx context.Context, resource, requestID string) (*RequestRecord, error) {
	r, rev, err := s.getRequest(ctx, resource, requestID)
	if r != nil {
		r.Revision = rev
	}
	return r, err
}

// getRequest reads the record of a request id from the bucket's leader: a decision follows from
// what it says, and a replica a moment behind could show a reservation since dropped or
// completed (an attempt then decided again what was already answered: the cluster scenario
// answered a request 409 and then, from a stale read, carried it out). It returns the record and
// its revision, or nil and the revision to create it at (see createAt).
func (s *index) getRequest(ctx context.Context, resource, requestID string) (*RequestRecord, uint64, error) {
	e, deleted, err := s.kv.Latest(ctx, requestKey(resource, requestID))
	if err != nil {
		return nil, 0, fmt.Errorf("eventstore: lookup request: %w", unavailable(err))
	}
	if e == nil {
		return nil, deleted, nil
	}
	var r RequestRecord
	if err := json.Unmarshal(e.value, &r); err != nil {
		return nil, 0, fmt.Errorf("%w: request record: %w", ErrCorrupt, err)
	}
	r.Since = e.created
	return &r, e.revision, nil
}

// createAt writes the first value of key, or the first since its delete marker at revision
// deleted: a compare-and-set either way (ErrKeyExists or a revision mismatch if another write
// came first). Update at the marker's revision rather than Create: nats.go's Create looks for the
// marker with a get that a replica may answer, and a stale one makes it report the key as
// existing.
func (s *index) createAt(ctx context.Context, key string, value []byte, deleted uint64) (uint64, error) {
	if deleted == 0 {
		return s.kv.Create(ctx, key, value)
	}
	return s.kv.Update(ctx, key, value, deleted)
}

// ReserveRequest writes r as the pending record of a request id (created is true), unless the id
// has a record already: then it returns that record and writes nothing. The caller decides with
// the returned record's ids when they differ from its own (a concurrent or earlier attempt of the
// request).
func (s *index) ReserveRequest(ctx context.Context, resource, requestID string, r RequestRecord) (rec *RequestRecord, created bool, err error) {
	r.Reply, r.Seq = nil, 0
	b, err := json.Marshal(r)
	if err != nil {
		return nil, false, err
	}
	var deleted uint64
	for range 16 {
		rev, err := s.createAt(ctx, requestKey(resource, requestID), b, deleted)
		if err == nil {
			r.Revision = rev
			return &r, true, nil
		}
		if !casFailed(err) {
			return nil, false, fmt.Errorf("eventstore: reserve request: %w", unavailable(err))
		}
		cur, rev, err := s.getRequest(ctx, resource, requestID)
		if err != nil {
			return nil, false, err
		}
		if cur != nil {
			cur.Revision = rev
			return cur, false, nil
		}
		deleted = rev // dropped meanwhile: try again after its delete marker
	}
	// Not a refusal: nothing is decided, and a retry (503) decides.
	return nil, false, fmt.Errorf("eventstore: reserve request: %w: too much contention", ErrUnavailable)
}

// TakeOverRequest makes the pending record r (as read, with its Revision) this caller's: it
// writes it again, unchanged, at r's revision, so that the attempt that wrote it, if it is slow
// rather than dead, can no longer complete it with an answer of its own (RefuseRequest refuses
// a reservation that moved on). It returns the record in place afterwards: r at its new
// revision, or what another attempt wrote first (the caller judges it again).
func (s *index) TakeOverRequest(ctx context.Context, resource, requestID string, r RequestRecord) (*RequestRecord, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	rev, err := s.kv.Update(ctx, requestKey(resource, requestID), b, r.Revision)
	if err == nil {
		r.Revision, r.Since = rev, time.Time{}
		return &r, nil
	}
	if !casFailed(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("eventstore: take over request: %w", unavailable(err))
	}
	cur, rev, err := s.getRequest(ctx, resource, requestID)
	if err != nil || cur == nil {
		return nil, err
	}
	cur.Revision = rev
	return cur, nil
}

// DropRequest removes the pending record of a request id whose decision was refused before
// anything was appended (an identifier taken, say), so that nothing of it stays behind. A
// completed record, or one naming other ids, is left alone.
func (s *index) DropRequest(ctx context.Context, resource, requestID string, r RequestRecord) error {
	cur, rev, err := s.getRequest(ctx, resource, requestID)
	if err != nil || cur == nil || !cur.Pending() || cur.OperationID != r.OperationID {
		return err
	}
	err = s.kv.DeleteIf(ctx, requestKey(resource, requestID), rev)
	if err != nil && !casFailed(err) {
		return fmt.Errorf("eventstore: drop request: %w", unavailable(err))
	}
	return nil
}

// PutRequest completes the record of a request id with its reply. The first reply wins: a
// completed record is left unchanged.
func (s *index) PutRequest(ctx context.Context, resource, requestID string, r RequestRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := requestKey(resource, requestID)
	if r.Revision > 0 {
		// Completing the caller's own reservation: nobody else writes a reserved record but
		// another attempt of the same request, and that one writes the same reply.
		if _, err := s.kv.Update(ctx, key, b, r.Revision); err == nil {
			return nil
		}
	}
	for range 16 {
		cur, rev, err := s.getRequest(ctx, resource, requestID)
		if err != nil {
			return err
		}
		switch {
		case cur == nil:
			_, err = s.createAt(ctx, key, b, rev)
		case !cur.Pending():
			return nil
		default:
			_, err = s.kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		if !casFailed(err) {
			return fmt.Errorf("eventstore: record request: %w", unavailable(err))
		}
	}
	return fmt.Errorf("eventstore: record request: %w: too much contention", ErrUnavailable)
}
