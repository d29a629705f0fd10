// Package storetest is the contract every event store implementation must pass. Run it from the
// implementation's tests with a constructor that returns a fresh, empty store per test.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Store is what the contract exercises.
type Store interface {
	Append(ctx context.Context, c eventstore.Commit) (eventstore.AppendResult, error)
	Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
	LoadByID(ctx context.Context, shadowID string) (domain.Shadow, uint64, error)
	History(ctx context.Context, shadowID string) ([]*eventstore.Record, error)
	Replay(ctx context.Context, from uint64, fn func(*eventstore.Record) error) (uint64, error)
	Follow(ctx context.Context, from uint64, fn func(*eventstore.Record) error) error
	Subscribe(ctx context.Context, name string, o eventstore.SubscribeOptions, fn func(context.Context, []*eventstore.Record) error) error
	SubscribeSharded(ctx context.Context, name string, o eventstore.SubscribeOptions, fn func(context.Context, *eventstore.Record) error) error
	Claim(ctx context.Context, c domain.Claim, h eventstore.Holder, stale func(context.Context, eventstore.Holder, time.Time) (bool, error)) error
	Release(ctx context.Context, c domain.Claim, shadowID string) error
	Owner(ctx context.Context, c domain.Claim) (string, error)
	Owners(ctx context.Context, claims []domain.Claim) ([]string, error)
	LoadMany(ctx context.Context, resource string, shadowIDs []string) ([]eventstore.Loaded, error)
	PutOperation(ctx context.Context, operationID, resource, shadowID string) error
	LookupOperation(ctx context.Context, operationID string) (string, string, bool, error)
	GetRequest(ctx context.Context, resource, requestID string) (*eventstore.RequestRecord, error)
	ReserveRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) (*eventstore.RequestRecord, bool, error)
	DropRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) error
	PutRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) error
	RefuseRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) (*eventstore.RequestRecord, bool, error)
	LoadResource(ctx context.Context, resource string) (domain.ResourceState, uint64, error)
	AppendResource(ctx context.Context, resource string, expectedSeq uint64, events []domain.Event, state domain.ResourceState) (eventstore.AppendResult, error)
	Update(ctx context.Context, o eventstore.UpdateOptions) (eventstore.UpdateResult, error)
	CommitAsOf(ctx context.Context, shadowID string, t time.Time) (*eventstore.Record, error)
}

// NewID returns a random UUID (v4).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Resource is the resource the contract's commits use.
func Resource(t testing.TB) domain.Resource {
	r, err := domain.NewResource("demo", []domain.ObjectClass{{Name: "AccountObjectClass", SecondaryIdentifier: "login", PrimaryIdentifier: "uid"}}, domain.DefaultConsistency(), true)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Decide runs a command on the current state and appends the result; helpers for the contract.
// A conflict is retried a few times, since on a replicated stream the load may be answered by a
// replica a moment behind the leader; ErrConflict comes back if it persists.
func Decide(ctx context.Context, t testing.TB, s Store, res domain.Resource, shadowID string, cmd domain.Command) (domain.Shadow, eventstore.AppendResult, error) {
	for attempt := 0; ; attempt++ {
		st, seq, err := s.Load(ctx, res.Name(), shadowID)
		if err != nil {
			return st, eventstore.AppendResult{}, err
		}
		ev, err := domain.Decide(st, cmd, time.Now().UTC())
		if err != nil {
			t.Fatalf("decide: %v", err)
		}
		next := domain.Fold(st, ev)
		r, err := s.Append(ctx, eventstore.Commit{Resource: res.Name(), ShadowID: shadowID, ExpectedSeq: seq, Events: ev, State: next})
		if errors.Is(err, eventstore.ErrConflict) && attempt < 8 {
			time.Sleep(time.Duration(attempt+1) * time.Millisecond)
			continue
		}
		return next, r, err
	}
}

func addCmd(res domain.Resource, shadowID, login string) domain.Add {
	return domain.Add{Resource: res, ShadowID: shadowID, OperationID: NewID(), ObjectClass: "AccountObjectClass",
		Attributes: domain.Attributes{"login": {login}, "shoeSize": {int64(42)}, "ratio": {1.5}, "active": {true}}}
}

// Run runs the whole contract.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Run("AppendAndLoad", func(t *testing.T) { testAppendAndLoad(t, open(t)) })
	t.Run("OneMessagePerDecision", func(t *testing.T) { testOneMessage(t, open(t)) })
	t.Run("Conflict", func(t *testing.T) { testConflict(t, open(t)) })
	t.Run("ConcurrentNoLostUpdate", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("RequestIDIdempotent", func(t *testing.T) { testRequestID(t, open(t)) })
	t.Run("StateEqualsFoldOfEvents", func(t *testing.T) { testFold(t, open(t)) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, open(t)) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, open(t)) })
	t.Run("Follow", func(t *testing.T) { testFollow(t, open(t)) })
	t.Run("SubscribeSharded", func(t *testing.T) { testSharded(t, open(t)) })
	t.Run("Claims", func(t *testing.T) { testClaims(t, open(t)) })
	t.Run("Index", func(t *testing.T) { testIndex(t, open(t)) })
	t.Run("BadCommit", func(t *testing.T) { testBadCommit(t, open(t)) })
	t.Run("ResourceAvailability", func(t *testing.T) { testResource(t, open(t)) })
	t.Run("UnitOfWork", func(t *testing.T) { testUnitOfWork(t, open(t)) })
	t.Run("CommitAsOf", func(t *testing.T) { testCommitAsOf(t, open(t)) })
	t.Run("ManyAtOnce", func(t *testing.T) { testManyAtOnce(t, open(t)) })
}

// testManyAtOnce: LoadMany and Owners answer, in the order asked, what Load and Owner answer one
// by one: across more ids than one batch holds, with ids named twice, ids without a shadow,
// released claims and a chunk with nothing in it.
func testManyAtOnce(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	a, b := NewID(), NewID()
	for _, x := range []struct{ id, login string }{{a, "many-a"}, {b, "many-b"}} {
		if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: x.id, Known: &eventstore.Known{},
			Decide: func(st domain.Shadow) ([]domain.Event, error) {
				return domain.Decide(st, addCmd(res, x.id, x.login), time.Now())
			}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: a, Decide: func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, domain.Modify{Resource: res, OperationID: NewID(), Changes: domain.Changes{"tag": {Add: []any{"x"}}}}, time.Now())
	}}); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 2500) // the first thousand hold nothing
	for i := range ids {
		ids[i] = NewID()
	}
	ids[1005], ids[1500], ids[2499] = a, b, a
	got, err := s.LoadMany(ctx, "demo", ids)
	if err != nil || len(got) != len(ids) {
		t.Fatalf("LoadMany: %d states, %v", len(got), err)
	}
	for _, i := range []int{0, 999, 1005, 1006, 1500, 2499} {
		st, seq, err := s.Load(ctx, "demo", ids[i])
		if err != nil || got[i].Seq != seq || !reflect.DeepEqual(got[i].State, st) {
			t.Fatalf("LoadMany[%d] = seq %d, want %d as Load answers (%v)", i, got[i].Seq, seq, err)
		}
	}
	if got[1005].Seq == 0 || got[1005].Seq != got[2499].Seq || got[1500].Seq == 0 {
		t.Fatalf("LoadMany missed a shadow: %d %d %d", got[1005].Seq, got[2499].Seq, got[1500].Seq)
	}
	claim := func(login string) domain.Claim {
		return domain.Claim{Kind: domain.SecondaryIdentifier, Resource: "demo", ObjectClass: "AccountObjectClass", Attribute: "login", Value: login}
	}
	if err := s.Release(ctx, claim("many-b"), b); err != nil {
		t.Fatal(err)
	}
	owners, err := s.Owners(ctx, []domain.Claim{claim("many-a"), claim("nobody"), claim("many-b"), claim("many-a")})
	if err != nil || !reflect.DeepEqual(owners, []string{a, "", "", a}) {
		t.Fatalf("Owners = %q, %v; want [a, none, none (released), a]", owners, err)
	}
	if owners, err := s.Owners(ctx, []domain.Claim{claim("nobody")}); err != nil || !reflect.DeepEqual(owners, []string{""}) {
		t.Fatalf("Owners of nothing held = %q, %v", owners, err)
	}
}

// testUnitOfWork: concurrent updates of one shadow all land (they queue or retry, none is lost
// or refused), and a request id reserved by one attempt makes another adopt its ids.
func testUnitOfWork(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	add := func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, addCmd(res, id, "unit"), time.Now())
	}
	if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: id, Decide: add}); err != nil {
		t.Fatal(err)
	}
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: id, Decide: func(st domain.Shadow) ([]domain.Event, error) {
				return domain.Decide(st, domain.Modify{Resource: res, OperationID: NewID(), Changes: domain.Changes{"tag": {Add: []any{fmt.Sprint(i)}}}}, time.Now())
			}})
			if err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	st, _, err := s.Load(ctx, "demo", id)
	if err != nil || len(st.Data().PendingOperations) != n+1 {
		t.Fatalf("%d operations after %d concurrent updates (%v)", len(st.Data().PendingOperations), n, err)
	}
	// Two attempts of one request with different ids: the second adopts the first's.
	first := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	other := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	decideAdd := func(shadowID string) func(domain.Shadow) ([]domain.Event, error) {
		return func(st domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(st, addCmd(res, shadowID, "twin"), time.Now())
		}
	}
	if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: first.ShadowID, RequestID: "twin", Reserve: &first,
		Decide: decideAdd(first.ShadowID)}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: other.ShadowID, RequestID: "twin", Reserve: &other,
		Decide: decideAdd(other.ShadowID)})
	var adopt *eventstore.AdoptError
	if !errors.As(err, &adopt) || adopt.Record.ShadowID != first.ShadowID || adopt.Record.OperationID != first.OperationID {
		t.Fatalf("second attempt: %v, want to adopt %s", err, first.OperationID)
	}
	if st, _, _ := s.Load(ctx, "demo", other.ShadowID); st.Created() {
		t.Fatal("the second attempt stored a shadow")
	}

	testAnsweredRequests(t, s, res)

	// A refused add (its login taken) stores nothing and leaves nothing claimed.
	withLogins := func(shadowID string, logins ...any) func(domain.Shadow) ([]domain.Event, error) {
		return func(st domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(st, domain.Add{Resource: res, ShadowID: shadowID, OperationID: NewID(), ObjectClass: "AccountObjectClass",
				Attributes: domain.Attributes{"login": logins}}, time.Now())
		}
	}
	owner := NewID()
	if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: owner, Known: &eventstore.Known{}, Decide: withLogins(owner, "both")}); err != nil {
		t.Fatal(err)
	}
	loser := NewID()
	_, err = s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: loser, Known: &eventstore.Known{}, Decide: withLogins(loser, "both")})
	var taken *eventstore.TakenError
	if !errors.As(err, &taken) || taken.Owner != owner {
		t.Fatalf("add of a taken login: %v, want *TakenError naming %s", err, owner)
	}
	if st, _, _ := s.Load(ctx, "demo", loser); st.Created() {
		t.Fatal("the refused add stored a shadow")
	}

	// Concurrent adds of one login, each from the empty state: exactly one is stored.
	const racers = 12
	var won sync.Map
	for range racers {
		wg.Go(func() {
			id := NewID()
			_, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: id, Known: &eventstore.Known{}, Decide: withLogins(id, "race")})
			switch {
			case err == nil:
				won.Store(id, true)
			case !errors.As(err, new(*eventstore.TakenError)):
				t.Errorf("racing add: %v", err)
			}
		})
	}
	wg.Wait()
	winners := 0
	won.Range(func(any, any) bool { winners++; return true })
	if winners != 1 {
		t.Fatalf("%d of %d concurrent adds of one login were stored, want 1", winners, racers)
	}
}

// testAnsweredRequests: an attempt never decides over a request id's answer, nor lets a slower
// attempt answer over its own decision (see UnitOfWork).
func testAnsweredRequests(t *testing.T, s Store, res domain.Resource) {
	ctx := t.Context()
	var adopt *eventstore.AdoptError

	// An attempt deciding with the ids of a reservation that was answered meanwhile (refused, or
	// completed) must not decide: the record is the request's answer, for good. (A twin whose
	// wait for the first attempt ran out decided with its ids, the first attempt's refusal
	// landed just before its reservation, and the twin's success replaced the refusal: one
	// request answered two ways, in a chaos soak.)
	for _, answered := range []eventstore.RequestRecord{
		{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID(), Refused: &eventstore.Refusal{Category: domain.CategoryAlreadyExists, Message: "taken"}},
		{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID(), Reply: []byte(`{"shadowId":"x"}`)},
	} {
		rid := "answered-" + answered.OperationID
		if err := s.PutRequest(ctx, "demo", rid, answered); err != nil {
			t.Fatal(err)
		}
		retry := eventstore.RequestRecord{Fingerprint: "f", ShadowID: answered.ShadowID, OperationID: answered.OperationID}
		_, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: answered.ShadowID, RequestID: rid, Reserve: &retry,
			Decide: func(st domain.Shadow) ([]domain.Event, error) { // a login nobody holds: it would be stored
				return domain.Decide(st, addCmd(res, answered.ShadowID, "free-"+answered.OperationID), time.Now())
			}})
		if !errors.As(err, &adopt) || adopt.Record.Pending() {
			t.Fatalf("an attempt on an answered request id (%+v): %v, want the answer to adopt", answered, err)
		}
		if st, _, _ := s.Load(ctx, "demo", answered.ShadowID); st.Created() {
			t.Fatal("an attempt decided over the request id's answer")
		}
		if rec, err := s.GetRequest(ctx, "demo", rid); err != nil || rec.Pending() || (rec.Refused == nil) != (answered.Refused == nil) {
			t.Fatalf("the answer changed: %+v %v", rec, err)
		}
	}

	// An attempt that decides with the ids of a reservation that looked dead takes it over: the
	// attempt that made it, if it was only slow, can no longer complete it with a refusal of its
	// own (its answer would differ from the one the taking attempt gives).
	slow := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	if _, created, err := s.ReserveRequest(ctx, "demo", "slow", slow); err != nil || !created {
		t.Fatalf("reserve: %v %v", created, err)
	}
	slowRec, err := s.GetRequest(ctx, "demo", "slow")
	if err != nil || slowRec == nil {
		t.Fatalf("reservation: %+v %v", slowRec, err)
	}
	taker := eventstore.RequestRecord{Fingerprint: "f", ShadowID: slow.ShadowID, OperationID: slow.OperationID}
	if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: slow.ShadowID, RequestID: "slow", Reserve: &taker,
		Decide: func(st domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(st, addCmd(res, slow.ShadowID, "free-"+slow.OperationID), time.Now())
		}}); err != nil {
		t.Fatalf("the taking attempt: %v", err)
	}
	if taker.Revision == slowRec.Revision {
		t.Fatal("the reservation was decided again without being taken over")
	}
	late := eventstore.RequestRecord{Fingerprint: "f", ShadowID: slow.ShadowID, OperationID: slow.OperationID, Revision: slowRec.Revision,
		Refused: &eventstore.Refusal{Category: domain.CategoryAlreadyExists, Message: "taken"}}
	if cur, written, err := s.RefuseRequest(ctx, "demo", "slow", late); err != nil || written || cur.Refused != nil {
		t.Fatalf("the slow attempt's refusal over a reservation taken over: written %v, record %+v, %v", written, cur, err)
	}
}

func testAppendAndLoad(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	st, seq, err := s.Load(ctx, "demo", id)
	if err != nil || seq != 0 || st.Created() {
		t.Fatalf("load of unknown shadow: %v %d %v", st.Created(), seq, err)
	}
	want, r, err := Decide(ctx, t, s, res, id, addCmd(res, id, "jack"))
	if err != nil || r.Seq == 0 {
		t.Fatalf("append: %+v %v", r, err)
	}
	got, seq, err := s.Load(ctx, "demo", id)
	if err != nil || seq != r.Seq {
		t.Fatalf("load: seq %d (want %d) err %v", seq, r.Seq, err)
	}
	gd := got.Data()
	if gd.ShadowID != id || gd.Version != want.Version() || gd.LifecycleState != domain.LifecycleProposed {
		t.Fatalf("loaded %+v", gd)
	}
	for name, v := range map[string]any{"shoeSize": int64(42), "ratio": 1.5, "active": true, "login": "jack"} {
		if gd.Attributes[name][0] != v {
			t.Errorf("attribute %s = %#v (%T), want %#v (%T)", name, gd.Attributes[name][0], gd.Attributes[name][0], v, v)
		}
	}
	byID, seq2, err := s.LoadByID(ctx, id)
	if err != nil || seq2 != seq || byID.ID() != id {
		t.Fatalf("LoadByID: %v %d %v", byID.ID(), seq2, err)
	}
	if _, _, err := s.Load(ctx, "other", id); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := s.Load(ctx, "other", id); st.Created() {
		t.Fatal("a shadow is found under another resource")
	}
}

func testOneMessage(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	_, r, err := Decide(ctx, t, s, res, id, addCmd(res, id, "jack"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, id)
	if err != nil || len(h) != 1 {
		t.Fatalf("history: %d records, %v", len(h), err)
	}
	ev, err := h[0].Events()
	if err != nil || len(ev) != 2 || h[0].Seq != r.Seq {
		t.Fatalf("one commit with AddRequested+DispatchRequested expected: %d events %v", len(ev), err)
	}
	if !h[0].Has("DispatchRequested") || h[0].Has("OperationSent") || h[0].Resource != "demo" || h[0].ShadowID != id {
		t.Fatalf("record header/subject: %+v", h[0])
	}
}

func testConflict(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	st, r, err := Decide(ctx, t, s, res, id, addCmd(res, id, "jack"))
	if err != nil {
		t.Fatal(err)
	}
	mod := func() eventstore.Commit {
		ev, err := domain.Decide(st, domain.Modify{Resource: res, OperationID: NewID(), Changes: domain.Changes{"x": {Add: []any{"1"}}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Commit{Resource: "demo", ShadowID: id, ExpectedSeq: r.Seq, Events: ev, State: domain.Fold(st, ev)}
	}
	if _, err := s.Append(ctx, mod()); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, mod())
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("second append on a stale sequence: %v, want ErrConflict", err)
	}
	// A new shadow id whose subject already has messages conflicts too.
	_, err = s.Append(ctx, eventstore.Commit{Resource: "demo", ShadowID: id, ExpectedSeq: 0, Events: mod().Events, State: st})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append expecting an empty subject: %v, want ErrConflict", err)
	}
}

func testConcurrent(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	if _, _, err := Decide(ctx, t, s, res, id, addCmd(res, id, "jack")); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 10
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				for {
					_, _, err := Decide(ctx, t, s, res, id, domain.Modify{Resource: res, OperationID: NewID(),
						Changes: domain.Changes{"tag": {Add: []any{fmt.Sprintf("%d-%d", w, i)}}}})
					if err == nil {
						break
					}
					if !errors.Is(err, eventstore.ErrConflict) {
						t.Error(err)
						return
					}
					conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// Load reads with a direct get, which any replica of a replicated stream may answer a moment
	// behind the leader: a read right after the last append can miss it (a CI run saw 79 of 80
	// on the 3-node cluster). A lost update never shows up, however long one waits.
	mods := 0
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, _, err := s.Load(ctx, "demo", id)
		if err != nil {
			t.Fatal(err)
		}
		mods = 0
		for _, p := range st.Data().PendingOperations {
			if p.Delta.ChangeType == domain.ChangeModify {
				mods++
			}
		}
		if mods == workers*each || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if mods != workers*each {
		t.Fatalf("%d modifications stored, want %d (lost updates)", mods, workers*each)
	}
	t.Logf("%d conflicts resolved by reloading", conflicts.Load())
}

func testRequestID(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	cmd := addCmd(res, id, "jack")
	ev, _ := domain.Decide(domain.Shadow{}, cmd, time.Now())
	c := eventstore.Commit{Resource: "demo", ShadowID: id, Events: ev, State: domain.Fold(domain.Shadow{}, ev), RequestID: "req-1"}
	if _, err := s.Append(ctx, c); err != nil {
		t.Fatal(err)
	}
	// The commit carries its request id: the evidence a retry after a crash looks for.
	h, err := s.History(ctx, id)
	if err != nil || len(h) != 1 {
		t.Fatalf("history: %d records, %v", len(h), err)
	}
	if got, err := h[0].RequestID(); err != nil || got != "req-1" {
		t.Fatalf("request id of the commit: %q %v", got, err)
	}
	// Appending the same decision again is refused by optimistic concurrency, not by a dedup
	// window: the request record, not the append, answers a retry (see RequestRecord).
	if _, err := s.Append(ctx, c); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("the same commit twice: %v, want ErrConflict", err)
	}
}

func testFold(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	id := NewID()
	st, _, err := Decide(ctx, t, s, res, id, addCmd(res, id, "jack"))
	if err != nil {
		t.Fatal(err)
	}
	op, _ := st.Operation(st.Data().PendingOperations[0].ID)
	steps := []domain.Command{
		domain.RecordDelivery{Resource: res, OperationID: op.ID, Attempt: 1, Reference: op.ID},
		domain.Confirm{Resource: res, OperationID: op.ID, Result: domain.ResultSuccess, PrimaryIdentifiers: domain.Attributes{"uid": {int64(7)}}},
		domain.Modify{Resource: res, OperationID: NewID(), Changes: domain.Changes{"shoeSize": {Replace: []any{int64(43)}}}},
	}
	for _, c := range steps {
		if _, _, err := Decide(ctx, t, s, res, id, c); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	folded := domain.Shadow{}
	for _, r := range h {
		ev, err := r.Events()
		if err != nil {
			t.Fatal(err)
		}
		folded = domain.Fold(folded, ev)
		snap, err := r.State()
		if err != nil {
			t.Fatal(err)
		}
		if a, b := fmt.Sprint(folded.Data()), fmt.Sprint(snap.Data()); a != b {
			t.Fatalf("record %d: fold of events\n%s\n!= stored state\n%s", r.Seq, a, b)
		}
	}
	if len(h) != 4 {
		t.Fatalf("%d records, want 4", len(h))
	}
}

func testReplay(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	var seqs []uint64
	for i := range 5 {
		id := NewID()
		_, r, err := Decide(ctx, t, s, res, id, addCmd(res, id, fmt.Sprint("u", i)))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, r.Seq)
	}
	var got []uint64
	last, err := s.Replay(ctx, seqs[2], func(r *eventstore.Record) error { got = append(got, r.Seq); return nil })
	if err != nil || last != seqs[4] || fmt.Sprint(got) != fmt.Sprint(seqs[2:]) {
		t.Fatalf("replay from %d: %v last %d err %v", seqs[2], got, last, err)
	}
	stop := errors.New("stop")
	n := 0
	if _, err := s.Replay(ctx, 0, func(*eventstore.Record) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("callback error must stop the replay: %v after %d", err, n)
	}
	if h, err := s.History(ctx, NewID()); err != nil || len(h) != 0 {
		t.Fatalf("history of unknown shadow: %d %v", len(h), err)
	}
}

func testSubscribe(t *testing.T, s Store) {
	const ackWait = 2 * time.Second
	ctx := t.Context()
	res := Resource(t)
	const n = 20
	for i := range n {
		id := NewID()
		if _, _, err := Decide(ctx, t, s, res, id, addCmd(res, id, fmt.Sprint("u", i))); err != nil {
			t.Fatal(err)
		}
	}
	// First subscriber fails once on its first batch, then sees everything in order.
	var mu sync.Mutex
	var seen, fresh []uint64
	failed := false
	sub1, cancel1 := context.WithCancel(ctx)
	ended := running(func() error {
		return s.Subscribe(sub1, "contract", eventstore.SubscribeOptions{Batch: 7, AckWait: ackWait}, func(_ context.Context, recs []*eventstore.Record) error {
			mu.Lock()
			defer mu.Unlock()
			if !failed {
				failed = true
				return errors.New("transient")
			}
			for _, r := range recs {
				seen = append(seen, r.Seq)
				if !r.Replayed {
					fresh = append(fresh, r.Seq)
				}
			}
			return nil
		})
	})
	waitFor(t, ended, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= n })
	cancel1()
	if err := <-ended; err != nil {
		t.Fatalf("subscription: %v", err)
	}
	mu.Lock()
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("out of order or repeated after a failed batch: %v", seen)
		}
	}
	// Stored before the consumer was made: the dispatcher must not trust their state.
	if len(fresh) > 0 {
		t.Fatalf("records stored before the consumer was made not marked replayed: %v", fresh)
	}
	mu.Unlock()
	// A new subscriber on the same durable starts after what was acknowledged. The stopped
	// subscriber's last pull request can outlive it on the server for a moment (on a cluster, its
	// end crosses the routes): a record handed to it is redelivered after AckWait (Subscribe's
	// contract), so the wait allows for one redelivery.
	id := NewID()
	_, r, err := Decide(ctx, t, s, res, id, addCmd(res, id, "late"))
	if err != nil {
		t.Fatal(err)
	}
	sub2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	got := make(chan *eventstore.Record, 100)
	ended = running(func() error {
		return s.Subscribe(sub2, "contract", eventstore.SubscribeOptions{AckWait: ackWait}, func(_ context.Context, recs []*eventstore.Record) error {
			for _, r := range recs {
				got <- r
			}
			return nil
		})
	})
	select {
	case err := <-ended:
		t.Fatalf("resumed subscription ended: %v", err)
	case rec := <-got:
		if rec.Seq != r.Seq {
			t.Fatalf("resumed at %d, want %d", rec.Seq, r.Seq)
		}
		if rec.Replayed {
			t.Fatalf("record %d, stored after its consumer was made, marked replayed", rec.Seq)
		}
	case <-time.After(ackWait + 10*time.Second):
		t.Fatal("resumed subscriber got nothing")
	}
}

func testClaims(t *testing.T, s Store) {
	ctx := t.Context()
	c := domain.Claim{Kind: domain.SecondaryIdentifier, Resource: "demo", ObjectClass: "AccountObjectClass", Attribute: "login", Value: "jack"}
	a, b := NewID(), NewID()
	never := func(context.Context, eventstore.Holder, time.Time) (bool, error) { return false, nil }
	always := func(context.Context, eventstore.Holder, time.Time) (bool, error) { return true, nil }
	hold := func(id string) eventstore.Holder { return eventstore.Holder{ShadowID: id} }
	if err := s.Claim(ctx, c, hold(a), never); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, c, hold(a), never); err != nil {
		t.Fatalf("claim is idempotent for its owner: %v", err)
	}
	err := s.Claim(ctx, c, hold(b), never)
	var taken *eventstore.TakenError
	if !errors.As(err, &taken) || taken.Owner != a || !errors.Is(err, domain.CategoryAlreadyExists) {
		t.Fatalf("second claim: %v", err)
	}
	// Same value with another type is another identifier.
	c42 := c
	c42.Value = int64(42)
	cs := c
	cs.Value = "42"
	if err := s.Claim(ctx, c42, hold(a), never); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, cs, hold(b), never); err != nil {
		t.Fatalf("\"42\" and 42 must not collide: %v", err)
	}
	if err := s.Claim(ctx, c, hold(b), always); err != nil {
		t.Fatalf("stale claim is taken over: %v", err)
	}
	if o, _ := s.Owner(ctx, c); o != b {
		t.Fatalf("owner %s, want %s", o, b)
	}
	if err := s.Release(ctx, c, a); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Owner(ctx, c); o != b {
		t.Fatal("release by a non-owner freed the claim")
	}
	if err := s.Release(ctx, c, b); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Owner(ctx, c); o != "" {
		t.Fatal("released claim still owned")
	}
	if err := s.Claim(ctx, c, hold(a), never); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	// The request id travels with the claim to the stale check.
	c3 := c
	c3.Value = "with-request"
	if err := s.Claim(ctx, c3, eventstore.Holder{ShadowID: a, RequestID: "req-9"}, never); err != nil {
		t.Fatal(err)
	}
	var sawRequest string
	_ = s.Claim(ctx, c3, hold(b), func(_ context.Context, o eventstore.Holder, _ time.Time) (bool, error) {
		sawRequest = o.RequestID
		return false, nil
	})
	if sawRequest != "req-9" {
		t.Fatalf("stale check saw request %q", sawRequest)
	}
	if o, _ := s.Owner(ctx, c3); o != a {
		t.Fatalf("owner %q", o)
	}
	// Concurrent claims: exactly one wins.
	c2 := c
	c2.Value = "race"
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if s.Claim(ctx, c2, hold(NewID()), never) == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent claims won, want 1", wins.Load())
	}
}

func testIndex(t *testing.T, s Store) {
	ctx := t.Context()
	op, sh := NewID(), NewID()
	if err := s.PutOperation(ctx, op, "demo", sh); err != nil {
		t.Fatal(err)
	}
	r, id, ok, err := s.LookupOperation(ctx, op)
	if err != nil || !ok || r != "demo" || id != sh {
		t.Fatalf("lookup: %s %s %v %v", r, id, ok, err)
	}
	if _, _, ok, _ := s.LookupOperation(ctx, NewID()); ok {
		t.Fatal("unknown operation found")
	}
	if rr, err := s.GetRequest(ctx, "demo", "x"); rr != nil || err != nil {
		t.Fatalf("unknown request: %v %v", rr, err)
	}
	if err := s.PutRequest(ctx, "demo", "x", eventstore.RequestRecord{Fingerprint: "a", Reply: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRequest(ctx, "demo", "x", eventstore.RequestRecord{Fingerprint: "b", Reply: []byte(`{"n":2}`)}); err != nil {
		t.Fatal(err)
	}
	rr, err := s.GetRequest(ctx, "demo", "x")
	if err != nil || rr.Fingerprint != "a" || string(rr.Reply) != `{"n":1}` {
		t.Fatalf("first request record must win: %+v %v", rr, err)
	}
	// Reservations: the first one wins and the others get it; a completed reservation keeps its
	// reply; a dropped one is gone, but only the reserver's own pending record is ever dropped.
	mine := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	got, created, err := s.ReserveRequest(ctx, "demo", "y", mine)
	if err != nil || !created || got.OperationID != mine.OperationID || !got.Pending() {
		t.Fatalf("reserve: %+v %v %v", got, created, err)
	}
	twin := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	got2, created, err := s.ReserveRequest(ctx, "demo", "y", twin)
	if err != nil || created || got2.OperationID != mine.OperationID || got2.ShadowID != mine.ShadowID {
		t.Fatalf("second reservation must get the first: %+v %v %v", got2, created, err)
	}
	if err := s.DropRequest(ctx, "demo", "y", twin); err != nil {
		t.Fatal(err)
	}
	if rr, _ := s.GetRequest(ctx, "demo", "y"); rr == nil {
		t.Fatal("a twin dropped the reservation it did not make")
	}
	done := mine
	done.Reply, done.Revision = []byte(`{"ok":1}`), got.Revision
	if err := s.PutRequest(ctx, "demo", "y", done); err != nil {
		t.Fatal(err)
	}
	if err := s.DropRequest(ctx, "demo", "y", mine); err != nil {
		t.Fatal(err)
	}
	if rr, _ := s.GetRequest(ctx, "demo", "y"); rr == nil || rr.Pending() || string(rr.Reply) != `{"ok":1}` || rr.OperationID != mine.OperationID {
		t.Fatalf("completed reservation: %+v", rr)
	}
	if _, created, _ := s.ReserveRequest(ctx, "demo", "z", mine); !created {
		t.Fatal("reserve z")
	}
	if err := s.DropRequest(ctx, "demo", "z", mine); err != nil {
		t.Fatal(err)
	}
	if rr, _ := s.GetRequest(ctx, "demo", "z"); rr != nil {
		t.Fatalf("dropped reservation still there: %+v", rr)
	}
	testRefusals(t, s)
}

// testRefusals: a refusal completes a request id's record for good. It is created where there is
// none, completes only a reservation naming the refused attempt's ids, and never replaces a reply
// or another attempt's reservation: the record in place is returned as the answer.
func testRefusals(t *testing.T, s Store) {
	ctx := t.Context()
	refusal := func(ids eventstore.RequestRecord, msg string) eventstore.RequestRecord {
		ids.Refused = &eventstore.Refusal{Category: domain.CategoryAlreadyExists, Message: msg}
		return ids
	}
	a := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	got, written, err := s.RefuseRequest(ctx, "demo", "r1", refusal(a, "taken"))
	if err != nil || !written || got.Refused == nil || got.Pending() {
		t.Fatalf("refusal of a new request: %+v %v %v", got, written, err)
	}
	// A later refusal, or reply, of the same request id leaves the first refusal.
	if got, written, _ := s.RefuseRequest(ctx, "demo", "r1", refusal(a, "other")); written || got.Refused.Message != "taken" {
		t.Fatalf("second refusal: %+v %v", got, written)
	}
	if err := s.PutRequest(ctx, "demo", "r1", eventstore.RequestRecord{Fingerprint: "f", Reply: []byte(`{}`), ShadowID: a.ShadowID, OperationID: a.OperationID}); err != nil {
		t.Fatal(err)
	}
	rr, err := s.GetRequest(ctx, "demo", "r1")
	if err != nil || rr.Refused == nil || rr.Refused.Message != "taken" || !errors.Is(rr.Refused.Err(), domain.CategoryAlreadyExists) {
		t.Fatalf("a reply replaced the refusal: %+v %v", rr, err)
	}
	// The refused attempt's own reservation is completed with the refusal...
	res, _, err := s.ReserveRequest(ctx, "demo", "r2", a)
	if err != nil {
		t.Fatal(err)
	}
	mine := refusal(a, "taken")
	mine.Revision = res.Revision
	if got, written, err := s.RefuseRequest(ctx, "demo", "r2", mine); err != nil || !written || got.Refused == nil {
		t.Fatalf("refusal over its reservation: %+v %v %v", got, written, err)
	}
	// ...but another attempt's reservation is not: the caller adopts its ids.
	if _, _, err := s.ReserveRequest(ctx, "demo", "r3", a); err != nil {
		t.Fatal(err)
	}
	other := eventstore.RequestRecord{Fingerprint: "f", ShadowID: NewID(), OperationID: NewID()}
	got, written, err = s.RefuseRequest(ctx, "demo", "r3", refusal(other, "taken"))
	if err != nil || written || !got.Pending() || got.OperationID != a.OperationID {
		t.Fatalf("refusal over another attempt's reservation: %+v %v %v", got, written, err)
	}
}

func testBadCommit(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.Append(ctx, eventstore.Commit{Resource: "demo", ShadowID: NewID()}); err == nil {
		t.Fatal("empty commit accepted")
	}
	if _, err := s.Append(ctx, eventstore.Commit{Resource: "a.b", ShadowID: NewID(), Events: []domain.Event{domain.DeleteRequested{}}}); err == nil {
		t.Fatal("resource with a dot accepted")
	}
}

// waitFor waits up to 15 s for cond while the subscription whose result comes on ended runs:
// one that ends first fails the test with its error rather than leave it waiting out its time.
func waitFor(t *testing.T, ended <-chan error, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case err := <-ended:
			t.Fatalf("subscription ended before the condition was met: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 15s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running runs a subscription and gives its result.
func running(subscribe func() error) <-chan error {
	ended := make(chan error, 1)
	go func() { ended <- subscribe() }()
	return ended
}

func testFollow(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res := Resource(t)
	id1 := NewID()
	_, r1, err := Decide(ctx, t, s, res, id1, addCmd(res, id1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, r1.Seq, func(r *eventstore.Record) error { got <- r.Seq; return nil })
	}()
	id2 := NewID()
	_, r2, err := Decide(ctx, t, s, res, id2, addCmd(res, id2, "b")) // written after Follow started
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{r1.Seq, r2.Seq} {
		select {
		case seq := <-got:
			if seq != want {
				t.Fatalf("followed %d, want %d", seq, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("follow did not deliver %d", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow after cancel: %v", err)
	}
}

func testResource(t *testing.T, s Store) {
	ctx := t.Context()
	st, seq, err := s.LoadResource(ctx, "demo")
	if err != nil || seq != 0 || st.Availability() != domain.AvailabilityUp {
		t.Fatalf("unknown resource: %v %d %v", st.Availability(), seq, err)
	}
	ev, _ := domain.DecideAvailability(st, "demo", domain.AvailabilityDown, "connection refused", time.Now())
	next := domain.EvolveResource(st, ev[0])
	r, err := s.AppendResource(ctx, "demo", 0, ev, next)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendResource(ctx, "demo", 0, ev, next); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale append: %v", err)
	}
	got, seq, err := s.LoadResource(ctx, "demo")
	if err != nil || seq != r.Seq || got.Availability() != domain.AvailabilityDown || got.Data().Changes[0].Reason != "connection refused" {
		t.Fatalf("loaded %+v %d %v", got.Data(), seq, err)
	}
	// Resource events do not look like shadow records to shadow consumers.
	n := 0
	if _, err := s.Replay(ctx, 0, func(*eventstore.Record) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("replay of shadow events saw %d resource records: %v", n, err)
	}
}

func testSharded(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	// 10 shadows, 5 commits each, interleaved in the stream.
	var ids []string
	for i := range 10 {
		id := NewID()
		ids = append(ids, id)
		if _, _, err := Decide(ctx, t, s, res, id, addCmd(res, id, fmt.Sprint("s", i))); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		for _, id := range ids {
			if _, _, err := Decide(ctx, t, s, res, id, domain.Modify{Resource: res, OperationID: NewID(),
				Changes: domain.Changes{"x": {Add: []any{NewID()}}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	seen := map[string][]uint64{}
	failedOnce := false
	sctx, cancel := context.WithCancel(ctx)
	ended := running(func() error {
		return s.SubscribeSharded(sctx, "sharded", eventstore.SubscribeOptions{Workers: 4}, func(_ context.Context, r *eventstore.Record) error {
			mu.Lock()
			defer mu.Unlock()
			if !failedOnce {
				failedOnce = true
				return errors.New("transient")
			}
			seen[r.ShadowID] = append(seen[r.ShadowID], r.Seq)
			return nil
		})
	})
	waitFor(t, ended, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range seen {
			n += len(v)
		}
		return n >= 50
	})
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("subscription: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, seqs := range seen {
		if len(seqs) != 5 {
			t.Fatalf("shadow %s: %d records", id, len(seqs))
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("shadow %s out of order: %v", id, seqs)
			}
		}
	}
}

// testCommitAsOf: the commit "as of" a time is the last one decided at or before it, whatever
// the deciding clock: the server's own time (commits decided a moment before they are stored)
// or one far behind or ahead of it (a test clock, a skewed instance).
func testCommitAsOf(t *testing.T, s Store) {
	ctx := t.Context()
	res := Resource(t)
	now := time.Now().UTC()
	clocks := map[string]func(i int) time.Time{
		"server":  func(int) time.Time { time.Sleep(3 * time.Millisecond); return time.Now().UTC() },
		"behind":  func(i int) time.Time { return now.Add(-72*time.Hour + time.Duration(i)*time.Second) },
		"ahead":   func(i int) time.Time { return now.Add(72*time.Hour + time.Duration(i)*time.Second) },
		"onetime": func(int) time.Time { return now.Add(-time.Hour) }, // every commit decided at once
	}
	for name, clock := range clocks {
		t.Run(name, func(t *testing.T) {
			id, other := NewID(), NewID()
			var decided []time.Time
			for i := range 12 {
				for _, sid := range []string{id, other} { // another shadow's commits in between
					var cmd domain.Command = domain.Modify{Resource: res, OperationID: NewID(), Changes: domain.Changes{"n": {Replace: []any{int64(i)}}}}
					if i == 0 {
						cmd = addCmd(res, sid, "asof-"+sid)
					}
					at := clock(i)
					// Update, not Load and Append: a replica may answer the load a moment behind
					// the leader, and the conflict that costs is not what this case is about.
					if _, err := s.Update(ctx, eventstore.UpdateOptions{Resource: res.Name(), ShadowID: sid, Decide: func(st domain.Shadow) ([]domain.Event, error) {
						return domain.Decide(st, cmd, at)
					}}); err != nil {
						t.Fatal(err)
					}
					if sid == id {
						decided = append(decided, at)
					}
				}
			}
			h, err := s.History(ctx, id)
			if err != nil || len(h) != len(decided) {
				t.Fatalf("history: %d records, %v", len(h), err)
			}
			// want: index into h of the last commit decided at or before q, -1 for none.
			check := func(q time.Time, want int) {
				t.Helper()
				got, err := s.CommitAsOf(ctx, id, q)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case want < 0 && got != nil:
					t.Fatalf("as of %s: commit %d, want none", q, got.Seq)
				case want >= 0 && got == nil:
					t.Fatalf("as of %s: none, want commit %d", q, h[want].Seq)
				case want >= 0 && got.Seq != h[want].Seq:
					t.Fatalf("as of %s: commit %d, want %d", q, got.Seq, h[want].Seq)
				}
			}
			last := func(q time.Time) int {
				w := -1
				for i, d := range decided {
					if d.After(q) {
						break
					}
					w = i
				}
				return w
			}
			for i, d := range decided {
				check(d, last(d))
				check(d.Add(-time.Nanosecond), last(d.Add(-time.Nanosecond)))
				if i == len(decided)-1 {
					check(d.Add(time.Millisecond), i)
				}
			}
			check(decided[0].Add(-time.Hour), -1)
			check(now.Add(1000*time.Hour), len(decided)-1)
			if got, err := s.CommitAsOf(ctx, NewID(), now); err != nil || got != nil {
				t.Fatalf("unknown shadow: %v, %v", got, err)
			}
		})
	}
}
