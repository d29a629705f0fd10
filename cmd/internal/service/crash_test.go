package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
)

var errCrash = errors.New("crashed here")

// A request whose first attempt dies between any two writes is answered once and decided once,
// even when the retry comes after JetStream's dedup window and from another instance (nothing of
// the first one's memory survives): every verb, every fault point, and a re-sent delete of a
// shadow that died meanwhile.
//
// It runs on JetStream and on the in-memory store (same contract): the service's rules do not
// depend on which.
func TestRequestIDSurvivesACrashAtEveryPoint(t *testing.T) {
	stores := map[string]func(t *testing.T) crashStore{
		"jetstream": func(t *testing.T) crashStore {
			cfg := eventstore.DefaultConfig()
			cfg.DuplicateWindow = 200 * time.Millisecond
			store, err := eventstore.Open(t.Context(), natstest.Start(t).Connect(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return store
		},
		"memory": func(t *testing.T) crashStore { return eventstore.NewMemory(eventstore.DefaultConfig()) },
	}
	for name, open := range stores {
		for _, verb := range []string{"add", "modify", "delete"} {
			for _, point := range []string{service.FaultAfterReserve, service.FaultAfterIndex, service.FaultAfterAppend} {
				t.Run(name+"/"+verb+"/"+point, func(t *testing.T) { crashAt(t, open(t), verb, point) })
			}
		}
	}
}

// crashStore is what the crash test uses of a store.
type crashStore interface {
	service.Store
	History(ctx context.Context, shadowID string) ([]*eventstore.Record, error)
}

func crashAt(t *testing.T, store crashStore, verb, point string) {
	ctx := t.Context()
	var err error
	cat, _ := app.DefaultConfig().Catalog()
	first := service.New(store, nil, cat, nil)
	target := ""
	if verb != "add" {
		r, err := first.Provision(ctx, service.Request{Verb: "add", Resource: "demo", ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {"jack"}}})
		if err != nil {
			t.Fatal(err)
		}
		target = r.ShadowID
		confirm(t, first, r.OperationID, domain.Attributes{"uid": {"u-1"}})
	}
	req := service.Request{Verb: verb, Resource: "demo", ShadowID: target, RequestID: "crash-" + verb, Fingerprint: "f-" + verb}
	switch verb {
	case "add":
		req.ObjectClass, req.Attributes = "AccountObjectClass", domain.Attributes{"login": {"anne"}}
	case "modify":
		req.Changes = domain.Changes{"fullName": {Replace: []any{"Jack"}}}
	case "delete":
		// By identifier: the retry must not need a live shadow to find its answer.
		req.ShadowID, req.Identifiers = "", domain.Attributes{"login": {"jack"}}
	}
	service.SetFaultHook(func(p string) error {
		if p == point {
			return errCrash
		}
		return nil
	})
	_, err = first.Provision(ctx, req)
	service.SetFaultHook(nil)
	if !errors.Is(err, errCrash) {
		t.Fatalf("first attempt: %v, want the crash", err)
	}
	if _, ok := store.(*eventstore.Store); ok {
		time.Sleep(400 * time.Millisecond) // past JetStream's dedup window (200 ms here)
	}
	if verb == "delete" && point == service.FaultAfterAppend {
		// The delete was stored and completes: the shadow is dead when the retry comes.
		st, _, _ := store.Load(ctx, "demo", target)
		ops := st.Data().PendingOperations
		confirm(t, first, ops[len(ops)-1].ID, nil)
		if st, _, _ = store.Load(ctx, "demo", target); !st.Dead() {
			t.Fatal("the delete did not kill the shadow")
		}
	}
	// Another instance, nothing in memory, retrying once the crashed attempt's reservation is
	// older than service.ReservationWait (before that, a retry waits for it: it may be a twin
	// still deciding).
	later := func() time.Time { return time.Now().UTC().Add(service.ReservationWait) }
	second := service.New(store, nil, cat, nil, service.WithClock(later))
	r1, err := second.Provision(ctx, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	r2, err := second.Provision(ctx, req)
	if err != nil || r2 != r1 {
		t.Fatalf("second retry: %+v %v, want %+v", r2, err, r1)
	}
	recs, err := store.History(ctx, r1.ShadowID)
	if err != nil {
		t.Fatal(err)
	}
	var commits, requested int
	for _, rec := range recs {
		if id, _ := rec.RequestID(); id == req.RequestID {
			commits++
		}
		evs, _ := rec.Events()
		for _, e := range evs {
			switch x := e.(type) {
			case domain.AddRequested:
				if x.RequestID == req.RequestID {
					requested++
				}
			case domain.ModifyRequested:
				if x.RequestID == req.RequestID {
					requested++
				}
			case domain.DeleteRequested:
				if x.RequestID == req.RequestID {
					requested++
				}
			}
		}
	}
	if commits != 1 || requested != 1 {
		t.Fatalf("%d commits and %d %s requests for one request id", commits, requested, verb)
	}
	// The reply names the operation that was decided.
	st, _, _ := store.Load(ctx, "demo", r1.ShadowID)
	if p, ok := st.Operation(r1.OperationID); !ok || p.RequestID != req.RequestID {
		t.Fatalf("reply names operation %s, which is not the request's", r1.OperationID)
	}
	// And the same id with another body is still refused.
	other := req
	other.Fingerprint = "something else"
	if _, err := second.Provision(ctx, other); !errors.Is(err, service.ErrRequestIDReused) {
		t.Fatalf("reused request id: %v", err)
	}
}

func confirm(t *testing.T, s *service.Service, opID string, ids domain.Attributes) {
	t.Helper()
	if _, err := s.Confirm(context.Background(), service.ConfirmRequest{Resource: "demo", OperationID: opID, Result: domain.ResultSuccess, PrimaryIdentifiers: ids}); err != nil {
		t.Fatalf("confirm %s: %v", opID, err)
	}
}
