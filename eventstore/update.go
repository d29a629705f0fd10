package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"shadowbridge/domain"
)

// Fault points of the unit of work: the places where a crash leaves part of it written. Update
// calls UpdateOptions.Fault there, so tests can stop it as a crash would.
const (
	// FaultAfterReserve: the request id's pending record is written, nothing appended.
	FaultAfterReserve = "after-reserve"
	// FaultAfterIndex: the reservation, the claims and the operation-index entries are written,
	// nothing appended.
	FaultAfterIndex = "after-index"
	// FaultAfterAppend: the decision is appended, the request's reply not recorded yet.
	FaultAfterAppend = "after-append"
)

// UpdateOptions is one unit of work on a shadow (see Store.Update).
type UpdateOptions struct {
	Resource, ShadowID string
	// RequestID, when set, goes into the commit.
	RequestID string
	// Known, when set, is the state the caller already has: the first attempt skips the load and
	// appends with Known's sequence expected, so a stale Known costs one conflict, never an update.
	Known *Known
	// Reserve, when set, is the request id's pending record, written after the decision and
	// before anything else. If another attempt of the request reserved it first, Update returns
	// an *AdoptError naming that attempt's ids. Once reserved, Reserve.Revision is the record's
	// revision, for completing it with the reply or, after a refusal, the refusal.
	Reserve *RequestRecord
	// Decide returns the events to record for the current state (none: nothing to do). It must
	// be pure: it can run several times.
	Decide func(domain.Shadow) ([]domain.Event, error)
	// Fault, when set, is called at the fault points; an error stops the work there.
	Fault func(point string) error
}

// Known is a shadow's state and the sequence of the commit it comes from.
type Known struct {
	State domain.Shadow
	Seq   uint64
}

// UpdateResult is what a unit of work did.
type UpdateResult struct {
	Shadow domain.Shadow // the state after the decision (before it, when nothing was recorded)
	Events []domain.Event
	Seq    uint64
}

// AdoptError says that the request id is reserved by another attempt of the same request (a
// concurrent twin, or an attempt that crashed): decide again with its ids; or that the request
// was answered meanwhile (Record is not Pending): that answer is the reply.
type AdoptError struct{ Record *RequestRecord }

func (e *AdoptError) Error() string {
	return fmt.Sprintf("eventstore: request reserved by another attempt, for operation %s", e.Record.OperationID)
}

// reserve writes the request id's pending record for o's decision (made), or makes an earlier
// attempt's record with the same ids this attempt's (TakeOverRequest), and sets
// o.Reserve.Revision. An *AdoptError says another attempt's ids or an answer are in place;
// again, that the record taken over was dropped meanwhile.
func (u *unit) reserve(ctx context.Context, o UpdateOptions) (made, again bool, err error) {
	cur, made, err := u.ix.ReserveRequest(ctx, o.Resource, o.RequestID, *o.Reserve)
	if err != nil {
		return false, false, err
	}
	// Another attempt's ids, or a request already answered (refused or completed) while this
	// attempt waited: the record is the answer; deciding over it would replace it.
	if adopt := adoptable(cur, o.Reserve); adopt != nil {
		return false, false, adopt
	}
	if !made {
		// An earlier attempt's reservation, decided again with its ids (it looked dead): taken
		// over, so that its late answer, if it was only slow, cannot land over ours.
		if cur, err = u.ix.TakeOverRequest(ctx, o.Resource, o.RequestID, *cur); err != nil {
			return false, false, err
		}
		if cur == nil {
			return false, true, nil
		}
		if adopt := adoptable(cur, o.Reserve); adopt != nil {
			return false, false, adopt
		}
	}
	o.Reserve.Revision = cur.Revision
	return made, false, nil
}

// adoptable returns the AdoptError an attempt reserving mine meets in the record cur: another
// attempt's ids, or an answer (nil: cur is mine to decide with).
func adoptable(cur, mine *RequestRecord) *AdoptError {
	if cur.OperationID != mine.OperationID || cur.ShadowID != mine.ShadowID || !cur.Pending() {
		return &AdoptError{Record: cur}
	}
	return nil
}

// maxUpdateAttempts bounds the conflicts one update lives through. Updates of one shadow in one
// process queue on a lock, so conflicts come only from other processes.
const maxUpdateAttempts = 64

// StaleClaimAge is how old an identifier claim must be before a claim whose owner never stored
// its decision may be taken over (a crash between claim and append).
const StaleClaimAge = 30 * time.Second

// Update is the unit of work on one shadow: load it (or start from Known), decide, reserve the
// request id, claim the identifiers the new state holds, index its new operations, append the
// decision with the loaded sequence expected, release what the state no longer holds; on a
// concurrent update, start over from the fresh state. Updates of one shadow made through one
// Store run one at a time (a burst on one account queues instead of failing); across processes
// optimistic concurrency decides, with jittered backoff between attempts.
//
// Safe for concurrent use. Errors: the decision's own, ErrConflict after maxUpdateAttempts,
// ErrUnavailable (the append's outcome may be unknown: a retry with the same request id is safe),
// *TakenError for an identifier held by another shadow, *AdoptError (see Reserve).
func (u *unit) Update(ctx context.Context, o UpdateOptions) (_ UpdateResult, err error) {
	unlock, err := u.locks.lock(ctx, o.Resource+"."+o.ShadowID)
	if err != nil {
		return UpdateResult{}, err
	}
	defer unlock()
	// created: this call wrote the reservation; maybeStored: something written for the decision
	// may be stored (an append or an index write whose outcome is unknown). A reservation this
	// call made for a decision that failed and surely left nothing is dropped (a retry decides
	// afresh), unless the decision was refused for the state it met (domain.IsRefusal): the
	// caller records that refusal over the reservation, as the request's answer for good.
	// Otherwise it stays, and a retry of the request decides again with its ids (an identifier it
	// may have claimed is then its own, not "taken" by a shadow that never was). A fault stops
	// the work as a crash would: nothing is cleaned up.
	reserved, created, maybeStored, crashed := false, false, false, false
	defer func() {
		if err != nil && created && !maybeStored && !crashed && !domain.IsRefusal(err) {
			_ = u.ix.DropRequest(context.WithoutCancel(ctx), o.Resource, o.RequestID, *o.Reserve)
		}
	}()
	fault := func(point string) error {
		if o.Fault == nil {
			return nil
		}
		err := o.Fault(point)
		crashed = err != nil
		return err
	}
	known := o.Known
	freshTried := false
	for attempt := range maxUpdateAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return UpdateResult{}, err
			}
		}
		var (
			st  domain.Shadow
			seq uint64
		)
		switch {
		case known != nil:
			st, seq, known = known.State, known.Seq, nil
		case attempt > 0: // after a conflict (or a not-found): what the leader has, not a replica a moment behind
			if st, seq, err = u.log.loadFresh(ctx, o.Resource, o.ShadowID); err != nil {
				return UpdateResult{}, err
			}
		default:
			if st, seq, err = u.log.Load(ctx, o.Resource, o.ShadowID); err != nil {
				return UpdateResult{}, err
			}
		}
		events, err := o.Decide(st)
		if errors.Is(err, domain.CategoryNotFound) && !freshTried {
			// The shadow or its operation may be missing only from a replica a moment behind (a
			// direct get): decide again once on the leader's state before saying "not found".
			freshTried = true
			continue
		}
		if err != nil || len(events) == 0 {
			return UpdateResult{Shadow: st, Seq: seq}, err
		}
		if o.Reserve != nil && !reserved {
			made, again, err := u.reserve(ctx, o)
			if again {
				continue // the reservation taken over was dropped meanwhile: reserve again
			}
			if err != nil {
				return UpdateResult{}, err
			}
			reserved, created = true, made
			if err := fault(FaultAfterReserve); err != nil {
				return UpdateResult{}, err
			}
		}
		next := domain.Fold(st, events)
		commit := Commit{Resource: o.Resource, ShadowID: o.ShadowID, ExpectedSeq: seq, Events: events, State: next, RequestID: o.RequestID}
		if err := u.log.prepare(&commit); err != nil {
			return UpdateResult{}, err // refused before anything is written
		}
		claimed, err := u.index(ctx, o.Resource, o.RequestID, st, next)
		if err == nil {
			err = fault(FaultAfterIndex)
		}
		if err != nil {
			var taken *TakenError
			if !errors.As(err, &taken) {
				maybeStored = true // an index write may have landed though its answer was lost
			}
			return UpdateResult{}, err
		}
		res, err := u.log.Append(ctx, commit)
		if errors.Is(err, ErrConflict) {
			u.undoClaims(ctx, o.ShadowID, o.RequestID, claimed)
			continue
		}
		if err != nil {
			if errors.Is(err, ErrUnavailable) {
				// Maybe stored: the claims and the reservation stay (a stale claim is taken
				// over once its owner is known not to hold it; a retry finds the commit).
				maybeStored = true
			} else {
				u.undoClaims(ctx, o.ShadowID, o.RequestID, claimed)
			}
			return UpdateResult{}, err
		}
		maybeStored = true
		if err := fault(FaultAfterAppend); err != nil {
			return UpdateResult{}, err
		}
		u.releaseAll(ctx, o.ShadowID, minus(st.Claims(), next.Claims()))
		return UpdateResult{Shadow: next, Events: events, Seq: res.Seq}, nil
	}
	return UpdateResult{}, fmt.Errorf("%w: shadow %s: gave up after %d concurrent updates", ErrConflict, o.ShadowID, maxUpdateAttempts)
}

// UpdateResource is Update for a resource's own state (availability, maintenance): load, decide,
// append with the subject's sequence expected, start over on a conflict. It returns the resulting
// state and whether events were stored.
func (u *unit) UpdateResource(ctx context.Context, resource string, decide func(domain.ResourceState) ([]domain.Event, error)) (domain.ResourceState, []domain.Event, error) {
	unlock, err := u.locks.lock(ctx, "resource "+resource)
	if err != nil {
		return domain.ResourceState{}, nil, err
	}
	defer unlock()
	for attempt := range maxUpdateAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return domain.ResourceState{}, nil, err
			}
		}
		cur, seq, err := u.log.LoadResource(ctx, resource)
		if err != nil {
			return cur, nil, err
		}
		ev, err := decide(cur)
		if err != nil || len(ev) == 0 {
			return cur, nil, err
		}
		next := cur
		for _, e := range ev {
			next = domain.EvolveResource(next, e)
		}
		_, err = u.log.AppendResource(ctx, resource, seq, ev, next)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return cur, nil, err
		}
		return next, ev, nil
	}
	return domain.ResourceState{}, nil, fmt.Errorf("%w: resource %s: gave up after %d concurrent updates", ErrConflict, resource, maxUpdateAttempts)
}

// backoff waits a little before the attempt-th try after a conflict: up to 1 ms, doubling to
// 50 ms, jittered, so that processes racing for one shadow spread out.
func backoff(ctx context.Context, attempt int) error {
	d := min(time.Millisecond<<min(attempt-1, 6), 50*time.Millisecond)
	t := time.NewTimer(rand.N(d) + time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func minus(a, b []domain.Claim) []domain.Claim {
	var out []domain.Claim
	for _, c := range a {
		if !slices.Contains(b, c) {
			out = append(out, c)
		}
	}
	return out
}

// index writes what must be in the index before next is appended: first a claim for each
// identifier next holds and st does not, then an operation-index entry for each new operation.
// Claims go first so that a refused decision (an identifier taken) writes nothing; the writes of
// each phase go out together. On failure the claims made are released and the first claim error
// (a *TakenError for a taken identifier) is returned. It returns the claims made.
func (u *unit) index(ctx context.Context, resource, requestID string, st, next domain.Shadow) ([]domain.Claim, error) {
	claims := minus(next.Claims(), st.Claims())
	errs := together(len(claims), func(i int) error {
		return u.ix.Claim(ctx, claims[i], Holder{ShadowID: next.ID()}, u.isStale(claims[i]))
	})
	var done []domain.Claim
	var first error
	for i, err := range errs {
		if err == nil {
			done = append(done, claims[i])
		} else if first == nil {
			first = err
		}
	}
	if first != nil {
		u.undoClaims(ctx, next.ID(), requestID, done)
		return nil, first
	}
	var ops []string
	for id := range next.OperationStatuses() {
		if !st.HasOperation(id) {
			ops = append(ops, id)
		}
	}
	for _, err := range together(len(ops), func(i int) error { return u.ix.PutOperation(ctx, ops[i], resource, next.ID()) }) {
		if err != nil {
			u.undoClaims(ctx, next.ID(), requestID, done)
			return nil, err
		}
	}
	return done, nil
}

// together runs fn(0..n-1) concurrently (inline for one) and returns their errors by index.
func together(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	if n == 1 {
		errs[0] = fn(0)
		return errs
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errs
}

// isStale decides whether another shadow's claim may be taken over: its owner is dead; or the
// owner does not hold the identifier (a claim left by a crash or a refused append) and the claim
// is old enough that no decision can still be on its way. (A retry of a request after a crash
// reuses the reserved shadow id, so its own earlier claim is simply its own.)
func (u *unit) isStale(c domain.Claim) func(context.Context, Holder, time.Time) (bool, error) {
	return func(ctx context.Context, owner Holder, claimedAt time.Time) (bool, error) {
		st, _, err := u.log.LoadByID(ctx, owner.ShadowID)
		if err != nil {
			return false, err
		}
		if st.Created() && st.Dead() {
			return true, nil
		}
		if st.Created() && slices.Contains(st.Claims(), domain.Claim{Kind: c.Kind, Resource: st.Resource(), ObjectClass: st.ObjectClass(), Attribute: c.Attribute, Value: c.Value}) {
			return false, nil
		}
		return u.now().Sub(claimedAt) > StaleClaimAge, nil
	}
}

// undoClaims frees the claims a failed attempt made, except what must stay: with a request id,
// every attempt of the request decides for the same shadow, so a twin attempt on another
// instance may have stored a decision holding these very claims (its claim was this one, by
// idempotence): they stay, and a stale one is taken over later. Without one, only the claims the
// shadow's stored state (the leader's) does not hold are freed: a concurrent decision that
// stored the same identifier keeps it.
func (u *unit) undoClaims(ctx context.Context, shadowID, requestID string, claims []domain.Claim) {
	if requestID != "" || len(claims) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	st, _, err := u.log.loadFresh(ctx, resourceOfClaims(claims), shadowID)
	if err != nil {
		return // not knowing, keep them: a stale claim is taken over later
	}
	u.releaseAll(ctx, shadowID, minus(claims, st.Claims()))
}

func resourceOfClaims(claims []domain.Claim) string { return claims[0].Resource }

// releaseAll frees claims. Not fatal when it fails: a claim its owner no longer holds is taken
// over once it is stale.
func (u *unit) releaseAll(ctx context.Context, shadowID string, claims []domain.Claim) {
	for _, c := range claims {
		_ = u.ix.Release(ctx, c, shadowID)
	}
}

// unitStore is what the unit of work reads and appends: the JetStream store or the in-memory one.
type unitStore interface {
	Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
	LoadByID(ctx context.Context, shadowID string) (domain.Shadow, uint64, error)
	Append(ctx context.Context, c Commit) (AppendResult, error)
	// prepare checks (and may encode) a commit before the unit of work writes to the index.
	prepare(c *Commit) error
	// loadFresh is Load with read-after-write (from a replicated stream's leader).
	loadFresh(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
	LoadResource(ctx context.Context, resource string) (domain.ResourceState, uint64, error)
	AppendResource(ctx context.Context, resource string, expectedSeq uint64, events []domain.Event, state domain.ResourceState) (AppendResult, error)
}

// unit is the unit of work over a store and its index; Store and Memory embed one, so both offer
// Update and UpdateResource with the same rules.
type unit struct {
	log   unitStore
	ix    *index
	now   func() time.Time
	locks keyedLocks // one unit of work per shadow at a time in this process
}

// keyedLocks serializes work per key (a shadow) inside one process. Entries live only while
// someone holds or waits for them. Waiting ends with the caller's context: a stop (or a request's
// deadline) must not queue behind a holder whose store calls are slow.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	held    chan struct{} // a token while someone holds the key
	waiters int
}

// lock takes key's lock, or returns ctx's error (with its unlock already done) if ctx ends first.
func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{held: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.waiters++
	k.mu.Unlock()
	leave := func() {
		k.mu.Lock()
		if l.waiters--; l.waiters == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("%w: waiting for %s: %w", ErrUnavailable, key, ctx.Err())
	}
}
