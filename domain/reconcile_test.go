package domain

import (
	"errors"
	"testing"
	"time"
)

// A reconciliation run: started once (a second request joins it), pages applied once and in
// order, finished after its last page; one idle too long is failed and started again.
func TestReconciliationRun(t *testing.T) {
	run1, run2 := testID(1), testID(2)
	apply := func(r ResourceState, ev []Event) ResourceState {
		for _, e := range ev {
			r = EvolveResource(r, e)
		}
		return r
	}
	var r ResourceState
	ev, id, err := DecideReconcile(r, "demo", run1, t0)
	if err != nil || id != run1 || len(ev) != 1 {
		t.Fatalf("start: %v %s %v", ev, id, err)
	}
	r = apply(r, ev)
	if ev, id, _ := DecideReconcile(r, "demo", run2, t0.Add(time.Minute)); len(ev) != 0 || id != run1 {
		t.Fatalf("a second request while it runs: %v %s, want to join %s", ev, id, run1)
	}
	page := func(n int, last bool, c ReconciliationCounts) ([]Event, error) {
		return DecidePage(r, "demo", run1, n, last, c, t0.Add(time.Duration(n)*time.Minute))
	}
	if _, err := page(2, false, ReconciliationCounts{}); !errors.Is(err, ErrAttemptOutOfSequence) {
		t.Fatalf("page 2 before page 1: %v", err)
	}
	if _, err := DecideFinish(r, "demo", run1, ReconciliationCounts{}, t0); !errors.Is(err, ErrAttemptOutOfSequence) {
		t.Fatalf("finished before its last page: %v", err)
	}
	ev, _ = page(1, false, ReconciliationCounts{Accounts: 2, Changed: 1, Unchanged: 1})
	r = apply(r, ev)
	if again, err := page(1, false, ReconciliationCounts{Accounts: 2}); err != nil || len(again) != 0 {
		t.Fatalf("page 1 again: %v %v, want nothing", again, err)
	}
	ev, _ = page(2, true, ReconciliationCounts{Accounts: 1, Discovered: 1})
	r = apply(r, ev)
	ev, err = DecideFinish(r, "demo", run1, ReconciliationCounts{Gone: 1}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r = apply(r, ev)
	got := r.Data().Reconciliation
	want := ReconciliationCounts{Accounts: 3, Unchanged: 1, Changed: 1, Discovered: 1, Gone: 1}
	if got.State != RunFinished || got.Pages != 2 || got.Counts != want {
		t.Fatalf("run %+v, want finished after 2 pages with %+v", got, want)
	}
	if again, err := DecideFinish(r, "demo", run1, ReconciliationCounts{}, t0); err != nil || len(again) != 0 {
		t.Fatalf("finished twice: %v %v", again, err)
	}
	if _, err := DecidePage(r, "demo", run2, 1, true, ReconciliationCounts{}, t0); !errors.Is(err, ErrOperationNotFound) {
		t.Fatalf("a page of another run: %v", err)
	}

	// A new run after the last one; one idle too long is failed and started again.
	ev, id, _ = DecideReconcile(r, "demo", run2, t0.Add(2*time.Hour))
	r = apply(r, ev)
	if id != run2 || !r.Data().Reconciliation.Running() {
		t.Fatalf("a new run: %s %+v", id, r.Data().Reconciliation)
	}
	run3 := testID(3)
	ev, id, _ = DecideReconcile(r, "demo", run3, t0.Add(2*time.Hour+ReconciliationIdle+time.Second))
	eqTypes(t, ev, "ReconciliationFailed", "ReconciliationStarted")
	if id != run3 {
		t.Fatalf("the idle run was not replaced: %s", id)
	}
}
