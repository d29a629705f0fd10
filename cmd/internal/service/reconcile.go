package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"shadowbridge/domain"
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
	Seen(ctx context.Context, runID, shadowID string) (bool, error)
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

// pageParallel bounds the accounts of a page observed at once: each is a shadow of its own (a
// few round trips to the store), and one at a time left the store waiting on the network.
const pageParallel = 16

// observePage observes every account of a page, pageParallel at a time, and counts the outcomes.
// The first error stops it (the page is applied again: the same decisions twice).
func (s *Service) observePage(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, p Page) (domain.ReconciliationCounts, error) {
	var (
		mu     sync.Mutex
		counts = domain.ReconciliationCounts{Accounts: len(p.Accounts)}
		first  error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, pageParallel)
	)
	for i, a := range p.Accounts {
		if i == len(p.Accounts)/2 {
			wg.Wait() // the first half applied, for the fault point's promise
			if err := faults.hit(FaultMidPage); err != nil {
				return counts, err
			}
		}
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outcome, err := s.observeListed(ctx, res, run, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			counts = counts.Add(tally(outcome))
		})
	}
	wg.Wait()
	return counts, first
}

// observeListed compares one listed account with its shadow, or discovers it, and marks the
// shadow seen by the run.
func (s *Service) observeListed(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, a ListedAccount) (string, error) {
	class := res.ObjectClasses()[0]
	n := Notification{Resource: res.Name(), Change: domain.ChangeAdd, ObjectClass: class.Name, PrimaryIdentifiers: a.PrimaryIdentifiers,
		Attributes: a.Attributes, ObservedAt: run.StartedAt}
	if err := checkNotification(res, n); err != nil {
		return "", err
	}
	reply, err := s.notifyAs(ctx, res, n, domain.SourceReconciliation, run.ID, a.AppliedSequence)
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
	)
	now := s.now()
	one := func(id string) error {
		c, err := s.missing(ctx, res, run, id, now)
		mu.Lock()
		counts = counts.Add(c)
		mu.Unlock()
		return err
	}
	// The ids come in batches, each looked at pageParallel at a time: memory holds one batch.
	err := s.shadows.ShadowIDs(ctx, res.Name(), func(id string) error {
		if batch = append(batch, id); len(batch) < missingBatch {
			return nil
		}
		err := inParallel(batch, pageParallel, one)
		batch = batch[:0]
		return err
	})
	if err == nil {
		err = inParallel(batch, pageParallel, one)
	}
	if err != nil {
		return fmt.Errorf("reconciliation %s: missing accounts: %w", run.ID, err)
	}
	_, _, err = s.store.UpdateResource(ctx, res.Name(), func(r domain.ResourceState) ([]domain.Event, error) {
		return domain.DecideFinish(r, res.Name(), run.ID, counts, s.now())
	})
	return err
}

// missingBatch is how many shadow ids the missing-account pass holds at once.
const missingBatch = 512

// missing applies the discovery rule to one shadow no page named (if it is live and its account
// was at the target when the run started), or refreshes it when it has work due.
func (s *Service) missing(ctx context.Context, res domain.Resource, run *domain.ReconciliationRun, id string, now time.Time) (domain.ReconciliationCounts, error) {
	seen, err := s.seen.Seen(ctx, run.ID, id)
	if err != nil || seen {
		return domain.ReconciliationCounts{}, err
	}
	obs := domain.Observe{Resource: res, Source: domain.SourceReconciliation, Reconciliation: run.ID, ObservedAt: run.StartedAt,
		RecreateOperationID: domain.OperationID(run.ID, id)}
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
func inParallel(ids []string, n int, fn func(string) error) error {
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
