package projections_test

import (
	"errors"
	"testing"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore/storetest"
	"shadowbridge/projections"
)

// As-of reads the state the last decision at or before the time left; history lists every event
// with its operation, attempt and outcome; explain speaks of the current state.
func TestQueriesAsOfHistoryExplain(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	q := projections.NewQueries(f.store, time.Now)
	before := time.Now().UTC()
	time.Sleep(2 * time.Millisecond)
	id := f.add(t, "jack")
	added := time.Now().UTC()
	time.Sleep(2 * time.Millisecond)
	st, _, _ := f.store.Load(ctx, f.res.Name(), id)
	op := st.Data().PendingOperations[0].ID
	if _, _, err := storetest.Decide(ctx, t, f.store, f.res, id, domain.RecordDelivery{Resource: f.res, OperationID: op, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.AsOf(ctx, id, before); !errors.Is(err, domain.ErrShadowNotFound) {
		t.Fatalf("before the add: %v, want not found", err)
	}
	then, err := q.AsOf(ctx, id, added)
	if err != nil || then.PendingOperations[0].AttemptNumber != 0 {
		t.Fatalf("as of the add: %+v %v", then.PendingOperations, err)
	}
	now, err := q.AsOf(ctx, id, time.Now().UTC())
	if err != nil || now.PendingOperations[0].AttemptNumber != 1 {
		t.Fatalf("as of now: %+v %v", now.PendingOperations, err)
	}
	h, err := q.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var sent bool
	for _, e := range h {
		if e.Type == "OperationSent" {
			sent = e.Attempt == 1 && e.Outcome == "sent" && e.Operation == "add" && e.OperationID == op
		}
	}
	if !sent {
		t.Fatalf("history without the sent attempt: %+v", h)
	}
	x, err := q.Explain(ctx, id, func(string) domain.Consistency { return domain.DefaultConsistency() })
	if err != nil || x.LifecycleState == "" {
		t.Fatalf("explain: %+v %v", x, err)
	}
	if _, err := q.History(ctx, storetest.NewID()); !errors.Is(err, domain.ErrShadowNotFound) {
		t.Fatalf("history of an unknown shadow: %v", err)
	}
}
