package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Lister sends a resource's target the request to list its accounts for reconciliation run
// runID (the app implements it with the resource's transport).
type Lister interface {
	List(ctx context.Context, resource, objectClass, runID string) error
}

// ShadowLister walks the ids of a resource's shadows (the projection's keys), without holding
// them all: the missing-account pass of a reconciliation.
type ShadowLister interface {
	ShadowIDs(ctx context.Context, resource string, fn func(shadowID string) error) error
}

// SeenMarks remembers which shadows a reconciliation run's pages named, outside memory (a run of
// 100,000 accounts holds one page at a time).
type SeenMarks interface {
	// MarkSeen may return before the mark is stored; Flush waits for every mark made so far.
	MarkSeen(ctx context.Context, runID, shadowID string) error
	Flush(ctx context.Context) error
	// Seen reports, in the order of shadowIDs, which ones the run's pages named (marks stored
	// before the call, whoever stored them).
	Seen(ctx context.Context, runID string, shadowIDs []string) ([]bool, error)
}

// WithReconciliation gives the service what reconciliation needs.
func WithReconciliation(l Lister, shadows ShadowLister, seen SeenMarks) Option {
	return func(s *Service) { s.lister, s.shadows, s.seen = l, shadows, seen }
}

// ReconcileReply answers prov.cmd.<resource>.reconcile.
type ReconcileReply struct {
	ReconciliationID string `json:"reconciliationId"`
	State            string `json:"state"`
}

// Reconcile starts a reconciliation run of the resource (or joins the one going) and asks the
// target to list its accounts. Answered once per request id.
func (s *Service) Reconcile(ctx context.Context, resource, requestID string) (ReconcileReply, error) {
	if _, err := s.lookup(ctx, resource); err != nil {
		return ReconcileReply{}, fmt.Errorf("reconcile: %w", err)
	}
	if s.lister == nil {
		return ReconcileReply{}, fmt.Errorf("reconcile: %w: this instance does not reconcile", domain.CategoryConfiguration)
	}
	var reply ReconcileReply
	err := s.once(ctx, resource, "reconcile", requestID, "reconcile", &reply, func() (any, error) { return s.reconcile(ctx, resource) })
	return reply, err
}

func (s *Service) reconcile(ctx context.Context, resource string) (ReconcileReply, error) {
	id := NewID()
	var runID string
	_, events, err := s.store.UpdateResource(ctx, resource, func(r domain.ResourceState) ([]domain.Event, error) {
		ev, rid, err := domain.DecideReconcile(r, resource, id, s.now())
		runID = rid
		return ev, err
	})
	if err != nil {
		return ReconcileReply{}, fmt.Errorf("reconcile: %w", err)
	}
	started := false
	for _, e := range events {
		if x, ok := e.(domain.ReconciliationStarted); ok && x.ID == runID {
			started = true
		}
	}
	if started {
		res, _ := s.catalog.Lookup(resource)
		class := ""
		if ocs := res.ObjectClasses(); len(ocs) > 0 {
			class = ocs[0].Name
		}
		if err := s.lister.List(ctx, resource, class, runID); err != nil {
			// Nothing will come: the run fails now rather than after ReconciliationIdle.
			_, _, _ = s.store.UpdateResource(context.WithoutCancel(ctx), resource, func(r domain.ResourceState) ([]domain.Event, error) {
				return []domain.Event{domain.ReconciliationFailed{Resource: resource, ID: runID, Reason: "the list request was not sent: " + err.Error(), Time: s.now()}}, nil
			})
			return ReconcileReply{}, fmt.Errorf("reconcile: %w: the list request was not sent: %w", domain.CategoryCommunication, err)
		}
	}
	return ReconcileReply{ReconciliationID: runID, State: domain.RunRunning}, nil
}

// ListedAccount is one account of a page of the target's listing.
type ListedAccount struct {
	PrimaryIdentifiers domain.Attributes
	Attributes         domain.Attributes
	AppliedSequence    int64
}

// Page is one page of the target's answer to a list request.
type Page struct {
	Resource, ReconciliationID string
	Number                     int
	Last                       bool
	Accounts                   []ListedAccount
}

// PageReply answers a page.
type PageReply struct {
	Applied bool                        `json:"applied"` // false: applied before (a re-sent page)
	Counts  domain.ReconciliationCounts `json:"counts"`
}

// ApplyPage applies one page of a reconciliation run: each account is compared with the shadow
// that holds it (domain.Observe, observed when the run started) or discovered, and marked seen;
// after the last page, the live shadows no page named follow the discovery rule and the run
// finishes. Pages are applied once and in order: a page seen before answers applied=false, one
// ahead of the next is refused (conflict) for the target to send again. A page cut short by a
// crash is applied again: every decision on the target's picture is the same decision twice.
func (s *Service) ApplyPage(ctx context.Context, p Page) (PageReply, error) {
	res, err := s.lookup(ctx, p.Resource)
	if err != nil {
		return PageReply{}, fmt.Errorf("page: %w", err)
	}
	rs, _, err := s.store.LoadResource(ctx, p.Resource)
	if err != nil {
		return PageReply{}, err
	}
	run := rs.Data().Reconciliation
	if _, err := domain.DecidePage(rs, p.Resource, p.ReconciliationID, p.Number, p.Last, domain.ReconciliationCounts{}, s.now()); err != nil {
		return PageReply{}, err
	}
	if run.Pages >= p.Number {
		return PageReply{Applied: false}, nil
	}
	counts, err := s.observePage(ctx, res, run, p)
	if err == nil {
		err = s.seen.Flush(ctx) // the page counts as applied only with its marks stored
	}
	if err != nil {
		return PageReply{}, fmt.Errorf("page %d: %w", p.Number, err)
	}
	if _, _, err := s.store.UpdateResource(ctx, p.Resource, func(r domain.ResourceState) ([]domain.Event, error) {
		return domain.DecidePage(r, p.Resource, p.ReconciliationID, p.Number, p.Last, counts, s.now())
	}); err != nil {
		return PageReply{}, err
	}
	if p.Last {
		if err := s.finishRun(ctx, res, run); err != nil {
			return PageReply{}, err
		}
	}
	return PageReply{Applied: true, Counts: counts}, nil
}

// pageParallel bounds the accounts observed at once on the one-by-one path: each is a shadow of
// its own (a few round trips to the store), and one at a time left the store waiting.
const pageParallel = 16

// observePage observes every account of a page and counts the outcomes. It reads with two
// batched reads, the accounts' holders and then their shadows, and decides on what it read: an
// account the cache already holds as listed (or whose operation is on its way) costs no write and
// no round trip of its own. The others, a change or a discovery, take the one-by-one path
// (observeListed), which decides again on the state it loads (a state read here that is stale by
// then costs a reload, never a wrong decision). The first half of the page is applied before the
// second (the fault point between them promises it); the first error stops it (the page is
// applied again: the same decisions twice).
func (s *Service) observePage(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, p Page) (domain.ReconciliationCounts, error) {
	counts := domain.ReconciliationCounts{Accounts: len(p.Accounts)}
	holders, err := s.holders(ctx, res, run, p.Accounts)
	if err != nil {
		return counts, err
	}
	var ids []string
	for _, h := range holders {
		if h != "" {
			ids = append(ids, h)
		}
	}
	loaded, err := s.store.LoadMany(ctx, res.Name(), ids)
	if err != nil {
		return counts, err
	}
	states := make([]*eventstore.Loaded, len(p.Accounts))
	for i, k := 0, 0; i < len(p.Accounts); i++ {
		if holders[i] != "" {
			states[i] = &loaded[k]
			k++
		}
	}
	half := len(p.Accounts) / 2
	c, err := s.applyObserved(ctx, res, run, p.Accounts[:half], holders[:half], states[:half])
	counts = counts.Add(c)
	if err == nil {
		err = faults.hit(FaultMidPage)
	}
	if err == nil {
		c, err = s.applyObserved(ctx, res, run, p.Accounts[half:], holders[half:], states[half:])
		counts = counts.Add(c)
	}
	return counts, err
}

// applyObserved decides for listed accounts on the states read for them (nil: no holder): the
// ones nothing changes are counted and marked seen, the others take the one-by-one path.
func (s *Service) applyObserved(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, accounts []ListedAccount, holders []string, states []*eventstore.Loaded) (domain.ReconciliationCounts, error) {
	var counts domain.ReconciliationCounts
	now := s.now()
	var slow []int
	for i, a := range accounts {
		l := states[i]
		if l == nil {
			slow = append(slow, i)
			continue
		}
		obs := observation(res, listed(res, run, a), domain.SourceReconciliation, run.ID, a.AppliedSequence)
		if ev, err := domain.Decide(l.State, obs, now); err != nil || len(ev) > 0 || !l.State.Created() {
			slow = append(slow, i)
			continue
		}
		counts = counts.Add(tally(observed(Outcome{Shadow: l.State}, obs)))
		if err := s.seen.MarkSeen(ctx, run.ID, holders[i]); err != nil {
			return counts, err
		}
	}
	var mu sync.Mutex
	err := inParallel(slow, pageParallel, func(i int) error {
		outcome, err := s.observeListed(ctx, res, run, accounts[i])
		mu.Lock()
		counts = counts.Add(tally(outcome))
		mu.Unlock()
		return err
	})
	return counts, err
}

// holders finds, in two batched reads, the live shadow holding each listed account: by its
// primary identifier, else by its secondary identifier ("" where none). An account that is not
// well formed is refused here, before anything is decided.
func (s *Service) holders(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, accounts []ListedAccount) ([]string, error) {
	oc := res.ObjectClasses()[0]
	for _, a := range accounts {
		if err := checkNotification(res, listed(res, run, a)); err != nil {
			return nil, err
		}
	}
	holders := make([]string, len(accounts))
	for _, by := range []struct {
		kind domain.IdentifierKind
		attr string
		vals func(ListedAccount) []any
	}{
		{domain.PrimaryIdentifier, oc.PrimaryIdentifier, func(a ListedAccount) []any { return a.PrimaryIdentifiers[oc.PrimaryIdentifier] }},
		{domain.SecondaryIdentifier, oc.SecondaryIdentifier, func(a ListedAccount) []any { return a.Attributes[oc.SecondaryIdentifier] }},
	} {
		var claims []domain.Claim
		var at []int
		for i, a := range accounts {
			if vals := by.vals(a); holders[i] == "" && by.attr != "" && len(vals) > 0 {
				v, err := domain.NormalizeValue(vals[0])
				if err != nil {
					return nil, fmt.Errorf("page: %w", err)
				}
				claims = append(claims, domain.Claim{Kind: by.kind, Resource: res.Name(), ObjectClass: oc.Name, Attribute: by.attr, Value: v})
				at = append(at, i)
			}
		}
		if len(claims) == 0 {
			continue
		}
		owners, err := s.store.Owners(ctx, claims)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			holders[i] = owners[j]
		}
	}
	return holders, nil
}

// listed is a listed account as the notification of an account that is there, as it was when the
// run started.
func listed(res domain.Resource, run *domain.ReconciliationRun, a ListedAccount) Notification {
	return Notification{Resource: res.Name(), Change: domain.ChangeAdd, ObjectClass: res.ObjectClasses()[0].Name,
		PrimaryIdentifiers: a.PrimaryIdentifiers, Attributes: a.Attributes, ObservedAt: run.StartedAt}
}

// observeListed compares one listed account with its shadow, or discovers it, and marks the
// shadow seen by the run.
func (s *Service) observeListed(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, a ListedAccount) (string, error) {
	reply, err := s.notifyAs(ctx, res, listed(res, run, a), domain.SourceReconciliation, run.ID, a.AppliedSequence)
	if err != nil {
		return "", err
	}
	if reply.ShadowID != "" {
		if err := s.seen.MarkSeen(ctx, run.ID, reply.ShadowID); err != nil {
			return "", err
		}
	}
	return reply.Outcome, nil
}

// finishRun is the missing-account pass after the last page: every live shadow of the resource
// that no page named, and whose account was at the target before the run started, follows the
// discovery rule; a shadow with work due is refreshed (the direction from the repository to the
// resource). Then the run finishes.
func (s *Service) finishRun(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun) error {
	var (
		mu     sync.Mutex
		counts domain.ReconciliationCounts
		batch  []string
		group  = newBounded(ctx, missingParallel)
	)
	// The ids come in batches, missingParallel of them looked at at once: memory holds those.
	err := s.shadows.ShadowIDs(ctx, res.Name(), func(id string) error {
		if batch = append(batch, id); len(batch) < missingBatch {
			return nil
		}
		ids := batch
		batch = make([]string, 0, missingBatch)
		return group.Go(func() error {
			c, err := s.missingBatch(ctx, res, run, ids)
			mu.Lock()
			counts = counts.Add(c)
			mu.Unlock()
			return err
		})
	})
	if err == nil {
		err = group.Go(func() error {
			c, err := s.missingBatch(ctx, res, run, batch)
			mu.Lock()
			counts = counts.Add(c)
			mu.Unlock()
			return err
		})
	}
	if werr := group.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("reconciliation %s: missing accounts: %w", run.ID, err)
	}
	_, _, err = s.store.UpdateResource(ctx, res.Name(), func(r domain.ResourceState) ([]domain.Event, error) {
		return domain.DecideFinish(r, res.Name(), run.ID, counts, s.now())
	})
	return err
}

// missingParallel is how many batches of the missing-account pass are looked at at once.
const missingParallel = 4

// bounded runs functions on at most n goroutines at once and keeps the first error; Go refuses
// new work after it.
type bounded struct {
	ctx   context.Context
	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	first error
}

func newBounded(ctx context.Context, n int) *bounded {
	return &bounded{ctx: ctx, sem: make(chan struct{}, n)}
}

// Go waits for a free slot and runs fn on it; it returns the first error of any fn so far.
func (b *bounded) Go(fn func() error) error {
	if err := b.err(); err != nil {
		return err
	}
	select {
	case b.sem <- struct{}{}:
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	b.wg.Go(func() {
		defer func() { <-b.sem }()
		if err := fn(); err != nil {
			b.mu.Lock()
			if b.first == nil {
				b.first = err
			}
			b.mu.Unlock()
		}
	})
	return nil
}

func (b *bounded) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.first
}

// Wait waits for every fn and returns the first error.
func (b *bounded) Wait() error {
	b.wg.Wait()
	return b.err()
}

// missingBatch is how many shadow ids the missing-account pass holds at once.
const missingBatch = 1000

// missingBatch looks at a batch of shadows with two batched reads (their seen marks, then the
// shadows no page named) and decides on what it read; only a shadow the rule changes or that has
// work due takes the one-by-one path (missing), which decides again on the state it loads.
func (s *Service) missingBatch(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, ids []string) (domain.ReconciliationCounts, error) {
	var counts domain.ReconciliationCounts
	if len(ids) == 0 {
		return counts, nil
	}
	seen, err := s.seen.Seen(ctx, run.ID, ids)
	if err != nil {
		return counts, err
	}
	var unseen []string
	for i, id := range ids {
		if !seen[i] {
			unseen = append(unseen, id)
		}
	}
	loaded, err := s.store.LoadMany(ctx, res.Name(), unseen)
	if err != nil {
		return counts, err
	}
	now := s.now()
	var slow []string
	for i, l := range loaded {
		if !l.State.Created() || l.State.Dead() {
			continue // dead before the pass: nothing was missing
		}
		obs := missingObservation(res, run, unseen[i])
		if ev, err := domain.Decide(l.State, obs, now); err != nil || len(ev) > 0 || l.State.HasUnfinished() {
			slow = append(slow, unseen[i])
			continue
		}
		counts = counts.Add(tally(observed(Outcome{Shadow: l.State}, obs)))
	}
	var mu sync.Mutex
	err = inParallel(slow, pageParallel, func(id string) error {
		c, err := s.missing(ctx, res, run, id, now)
		mu.Lock()
		counts = counts.Add(c)
		mu.Unlock()
		return err
	})
	return counts, err
}

// missingObservation is what a run that no page of named a shadow observed: its account is not
// at the target (as of the run's start).
func missingObservation(res domain.Resource, run *domain.ReconciliationRun, id string) domain.Observe {
	return domain.Observe{Resource: res, Source: domain.SourceReconciliation, Reconciliation: run.ID, ObservedAt: run.StartedAt,
		RecreateOperationID: domain.OperationID(run.ID, id)}
}

// missing applies the discovery rule to one shadow no page named (if it is live), or refreshes
// it when it has work due.
func (s *Service) missing(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, id string, now time.Time) (domain.ReconciliationCounts, error) {
	obs := missingObservation(res, run, id)
	out, err := s.Update(ctx, res.Name(), id, "", func(st domain.Shadow) ([]domain.Event, error) {
		if !st.Created() || st.Dead() {
			return nil, nil
		}
		return domain.Decide(st, obs, now)
	})
	if err != nil || !out.Shadow.Created() || out.Shadow.Dead() && len(out.Events) == 0 {
		return domain.ReconciliationCounts{}, err // dead before the pass: nothing was missing
	}
	if len(out.Events) == 0 && out.Shadow.HasUnfinished() {
		_, err = s.refreshOne(ctx, id, domain.Refresh{Resource: res}, now)
	}
	return tally(observed(out, obs)), err
}

// inParallel runs fn on every id, at most n at a time, and returns the first error.
func inParallel[T any](ids []T, n int, fn func(T) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, n)
	)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(id); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// tally counts one observation's outcome.
func tally(outcome string) domain.ReconciliationCounts {
	switch outcome {
	case OutcomeChanged:
		return domain.ReconciliationCounts{Changed: 1}
	case OutcomeDiscovered:
		return domain.ReconciliationCounts{Discovered: 1}
	case OutcomeSkipped:
		return domain.ReconciliationCounts{Skipped: 1}
	case OutcomeGone:
		return domain.ReconciliationCounts{Gone: 1}
	case OutcomeRecreated:
		return domain.ReconciliationCounts{Recreated: 1}
	case OutcomeUnchanged:
		return domain.ReconciliationCounts{Unchanged: 1}
	}
	return domain.ReconciliationCounts{}
}
