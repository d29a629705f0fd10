package eventstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strings"
	"testing"
	"time"

	"shadowbridge/domain"

	"github.com/nats-io/nats.go/jetstream"
)

// lostAnswers is an index whose claims are stored but answered with an error, as when NATS goes
// away between storing a write and answering it.
type lostAnswers struct {
	indexKV
	lose func(key string) bool
}

func (l *lostAnswers) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := l.indexKV.Create(ctx, key, value)
	if err == nil && l.lose(key) {
		return 0, ErrUnavailable
	}
	return rev, err
}

// A request whose claim was stored though its answer was lost keeps its reservation: the retry
// decides again with the first attempt's ids, for which the claim is its own. (Dropping the
// reservation made the retry pick a new shadow and find the login "taken" by a shadow that
// never was: a 409 to a request that had only failed with 503, found by the chaos soak.)
func TestLostClaimAnswerKeepsTheReservation(t *testing.T) {
	ctx := t.Context()
	m := NewMemory(DefaultConfig())
	lost := 0
	m.index.kv = &lostAnswers{indexKV: m.index.kv, lose: func(key string) bool {
		if strings.HasPrefix(key, "id.") && lost == 0 {
			lost++
			return true
		}
		return false
	}}
	res, err := domain.NewResource("demo", []domain.ObjectClass{{Name: "AccountObjectClass", SecondaryIdentifier: "login", PrimaryIdentifier: "uid"}}, domain.DefaultConsistency(), true)
	if err != nil {
		t.Fatal(err)
	}
	attempt := func(shadowID, opID string) (UpdateResult, *RequestRecord, error) {
		rec := &RequestRecord{Fingerprint: "f", ShadowID: shadowID, OperationID: opID}
		out, err := m.Update(ctx, UpdateOptions{Resource: "demo", ShadowID: shadowID, RequestID: "req-1", Reserve: rec,
			Decide: func(st domain.Shadow) ([]domain.Event, error) {
				return domain.Decide(st, domain.Add{Resource: res, ShadowID: shadowID, OperationID: opID, RequestID: "req-1",
					ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"jack"}}}, m.now())
			}})
		return out, rec, err
	}
	first, firstOp := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	if _, _, err := attempt(first, firstOp); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first attempt: %v, want ErrUnavailable", err)
	}
	rec, err := m.GetRequest(ctx, "demo", "req-1")
	if err != nil || rec == nil || rec.ShadowID != first || rec.OperationID != firstOp {
		t.Fatalf("reservation after a lost claim answer: %+v %v, want the first attempt's", rec, err)
	}
	// The retry (new ids, as a service instance makes them) is told to adopt the first ones...
	_, _, err = attempt("33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444")
	var adopt *AdoptError
	if !errors.As(err, &adopt) || adopt.Record.ShadowID != first {
		t.Fatalf("retry with new ids: %v, want to adopt %s", err, first)
	}
	// ...and with them it is decided, the claim being its own.
	out, _, err := attempt(first, firstOp)
	if err != nil || !out.Shadow.Created() {
		t.Fatalf("retry with the first ids: %+v %v", out, err)
	}
	if owner, err := m.Owner(ctx, domain.Claim{Kind: domain.SecondaryIdentifier, Resource: "demo", ObjectClass: "AccountObjectClass", Attribute: "login", Value: "jack"}); err != nil || owner != first {
		t.Fatalf("login held by %q (%v), want %s", owner, err, first)
	}
}

// countingGets counts the reads of an index bucket.
type countingGets struct {
	indexKV
	gets int
}

func (c *countingGets) Get(ctx context.Context, key string) (indexEntry, error) {
	c.gets++
	return c.indexKV.Get(ctx, key)
}

// An operation this process indexed is looked up without reading the bucket (a confirmation of
// it saves a round trip); others are read, and a cached entry survives one generation turn.
func TestOperationLookupsOfThisProcessReadNothing(t *testing.T) {
	ctx := t.Context()
	m := NewMemory(DefaultConfig())
	kv := &countingGets{indexKV: m.index.kv}
	ix := &index{kv: kv}
	op, other := "55555555-5555-4555-8555-555555555555", "66666666-6666-4666-8666-666666666666"
	if err := ix.PutOperation(ctx, op, "demo", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := (&index{kv: m.index.kv}).PutOperation(ctx, other, "demo", "s2"); err != nil { // another process
		t.Fatal(err)
	}
	if r, sh, ok, err := ix.LookupOperation(ctx, op); err != nil || !ok || r != "demo" || sh != "s1" || kv.gets != 0 {
		t.Fatalf("own operation: %s %s %v %v, %d reads", r, sh, ok, err, kv.gets)
	}
	if r, sh, ok, err := ix.LookupOperation(ctx, other); err != nil || !ok || r != "demo" || sh != "s2" || kv.gets != 1 {
		t.Fatalf("another process's operation: %s %s %v %v, %d reads", r, sh, ok, err, kv.gets)
	}
	for i := range opCacheSize { // a full generation of newer operations
		ix.ops.put(fmt.Sprint("op-", i), "demo.x")
	}
	if _, sh, ok, _ := ix.LookupOperation(ctx, op); !ok || sh != "s1" || kv.gets != 1 {
		t.Fatalf("after a generation: %s %v, %d reads", sh, ok, kv.gets)
	}
}

// shard is FNV-1a, as hash/fnv computes it: a pure function of the subject, so that a subject's
// records always meet the same worker.
func TestShardIsFNV1a(t *testing.T) {
	for _, subj := range []string{"", "prov.evt.demo.11111111-1111-4111-8111-111111111111", "c10.evt.x.y", "prov.due.demo.é"} {
		h := fnv.New32a()
		h.Write([]byte(subj))
		for _, n := range []int{1, 64, 128, 1000} {
			if got, want := shard(subj, n), int(h.Sum32()%uint32(n)); got != want {
				t.Fatalf("shard(%q, %d) = %d, want %d", subj, n, got, want)
			}
		}
	}
}

// A unit of work waiting for a shadow another holds gives up when its context ends (a stop
// must not queue behind a slow holder); the lock is whole afterwards and its entry goes away.
func TestKeyedLockWaitEndsWithContext(t *testing.T) {
	var k keyedLocks
	unlock, err := k.lock(t.Context(), "fs.a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := k.lock(ctx, "fs.a"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting behind a holder: %v, want ErrUnavailable and the deadline", err)
	}
	other, err := k.lock(t.Context(), "fs.b") // other keys are not held up
	if err != nil {
		t.Fatal(err)
	}
	other()
	got := make(chan struct{})
	go func() {
		u, err := k.lock(t.Context(), "fs.a")
		if err == nil {
			u()
		}
		close(got)
	}()
	unlock()
	<-got
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.locks) != 0 {
		t.Errorf("entries left: %v", k.locks)
	}
}

// laggingReplica answers gets from a copy of the bucket taken at snapshot, as a replica a moment
// behind the leader does; Latest and the writes reach the leader (the bucket itself).
type laggingReplica struct {
	indexKV
	old map[string]indexEntry
}

func (l *laggingReplica) snapshot(m *memKV) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l.old = maps.Clone(m.entries)
}

func (l *laggingReplica) Get(_ context.Context, key string) (indexEntry, error) {
	e, ok := l.old[key]
	if !ok {
		return indexEntry{}, jetstream.ErrKeyNotFound
	}
	return e, nil
}

// A request's record and an identifier's holder decide what happens next, so they are read from
// the leader: a replica still showing a reservation since refused made a retry carry the request
// out after it had been answered 409 (the cluster scenario's "answered two ways"), and one
// still showing a claim since released would refuse the identifier as taken, for good.
func TestDecisionsReadRequestsAndClaimsFromTheLeader(t *testing.T) {
	ctx := t.Context()
	m := NewMemory(DefaultConfig())
	leader := m.index.kv.(*memKV)
	replica := &laggingReplica{indexKV: leader}
	m.index.kv = replica
	pending := RequestRecord{Fingerprint: "f", ShadowID: "s1", OperationID: "o1"}
	if _, created, err := m.index.ReserveRequest(ctx, "demo", "req-1", pending); err != nil || !created {
		t.Fatalf("reserve: %v %v", created, err)
	}
	c := domain.Claim{Kind: domain.SecondaryIdentifier, Resource: "demo", ObjectClass: "AccountObjectClass", Attribute: "login", Value: "jack"}
	if err := m.index.Claim(ctx, c, Holder{ShadowID: "s1"}, nil); err != nil {
		t.Fatal(err)
	}
	replica.snapshot(leader) // the replica stops here: the reservation pending, jack held by s1
	refusal := pending
	refusal.Refused = &Refusal{Category: domain.CategoryConflict, Message: "refused"}
	if _, written, err := m.index.RefuseRequest(ctx, "demo", "req-1", refusal); err != nil || !written {
		t.Fatalf("refuse: %v %v", written, err)
	}
	if err := m.index.Release(ctx, c, "s1"); err != nil {
		t.Fatal(err)
	}
	if owner, err := m.index.Owner(ctx, c); err != nil || owner != "" {
		t.Fatalf("the released login's owner: %q %v, want none (a modify by login would reach s1)", owner, err)
	}
	rec, err := m.index.GetRequest(ctx, "demo", "req-1")
	if err != nil || rec == nil || rec.Refused == nil {
		t.Fatalf("the request's record: %+v %v, want the refusal", rec, err)
	}
	if got, created, err := m.index.ReserveRequest(ctx, "demo", "req-1", RequestRecord{Fingerprint: "f", ShadowID: "s2", OperationID: "o2"}); err != nil || created || got.Refused == nil {
		t.Fatalf("a retry's reservation: %+v created=%v %v, want the refusal", got, created, err)
	}
	never := func(context.Context, Holder, time.Time) (bool, error) { return false, nil }
	if err := m.index.Claim(ctx, c, Holder{ShadowID: "s2"}, never); err != nil {
		t.Fatalf("claiming the released login: %v, want it free", err)
	}
}

// everExisting is a bucket where every key exists and none can be read: a compare-and-set that
// never wins.
type everExisting struct{ indexKV }

func (everExisting) Create(context.Context, string, []byte) (uint64, error) {
	return 0, jetstream.ErrKeyExists
}
func (everExisting) Latest(context.Context, string) (*indexEntry, uint64, error) { return nil, 0, nil }

// Losing every compare-and-set is no refusal: the request or the identifier is not decided, the
// answer is "try again" (a refusal would be the request's answer for good).
func TestContentionIsNoRefusal(t *testing.T) {
	m := NewMemory(DefaultConfig())
	m.index.kv = everExisting{m.index.kv}
	_, _, err := m.index.ReserveRequest(t.Context(), "demo", "req-1", RequestRecord{ShadowID: "s1", OperationID: "o1"})
	if !errors.Is(err, ErrUnavailable) || domain.IsRefusal(err) {
		t.Errorf("reserve: %v, want ErrUnavailable and no refusal", err)
	}
	c := domain.Claim{Kind: domain.SecondaryIdentifier, Resource: "demo", ObjectClass: "AccountObjectClass", Attribute: "login", Value: "jack"}
	if err := m.index.Claim(t.Context(), c, Holder{ShadowID: "s1"}, nil); !errors.Is(err, ErrUnavailable) || domain.IsRefusal(err) {
		t.Errorf("claim: %v, want ErrUnavailable and no refusal", err)
	}
}
