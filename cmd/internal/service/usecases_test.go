package service_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

var _ service.Store = (*eventstore.Memory)(nil)

// memService is the service over the in-memory store: the use cases' rules in milliseconds,
// without NATS (the integration tests run them on JetStream).
func memService(t *testing.T) *service.Service {
	t.Helper()
	cat, err := app.DefaultConfig().Catalog()
	if err != nil {
		t.Fatal(err)
	}
	s := service.New(eventstore.NewMemory(eventstore.DefaultConfig()), nil, cat, nil)
	t.Cleanup(s.Close)
	return s
}

func provision(t *testing.T, s *service.Service, req service.Request) service.Reply {
	t.Helper()
	req.Resource = "demo"
	r, err := s.Provision(t.Context(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Verb, err)
	}
	return r
}

func TestUseCasesOverMemory(t *testing.T) {
	ctx := t.Context()
	s := memService(t)
	add := service.Request{Verb: "add", Resource: "demo", RequestID: "r1", Fingerprint: "a", ObjectClass: "AccountObjectClass",
		Attributes: domain.Attributes{"login": {"jack"}, "fullName": {"Jack"}}}
	r1 := provision(t, s, add)
	if r2 := provision(t, s, add); r2 != r1 {
		t.Fatalf("retry answered %+v, first %+v", r2, r1)
	}
	reused := add
	reused.Fingerprint = "b"
	if _, err := s.Provision(ctx, reused); !errors.Is(err, service.ErrRequestIDReused) {
		t.Fatalf("reused request id: %v", err)
	}
	other := add
	other.RequestID, other.Fingerprint = "r2", "c"
	if _, err := s.Provision(ctx, other); !errors.Is(err, domain.ErrIdentifierTaken) {
		t.Fatalf("a second jack: %v, want the identifier taken", err)
	}
	// The add completes with a uid; a modify addressed by the login travels after it.
	if err := s.Delivered(ctx, bridge.Attempt{Resource: "demo", ShadowID: r1.ShadowID, OperationID: r1.OperationID, Number: 1}, r1.OperationID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(ctx, service.ConfirmRequest{Resource: "demo", OperationID: r1.OperationID, Result: domain.ResultSuccess,
		PrimaryIdentifiers: domain.Attributes{"uid": {"u-1"}}}); err != nil {
		t.Fatal(err)
	}
	mod := provision(t, s, service.Request{Verb: "modify", Identifiers: domain.Attributes{"uid": {"u-1"}},
		Changes: domain.Changes{"fullName": {Replace: []any{"Jack S."}}}})
	if mod.ShadowID != r1.ShadowID || mod.ExecutionStatus != domain.StatusExecutionPending {
		t.Fatalf("modify by uid: %+v", mod)
	}
	// 50 concurrent modifies of the shadow: all recorded, none refused, released one at a time.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, err := s.Provision(ctx, service.Request{Verb: "modify", Resource: "demo", ShadowID: r1.ShadowID,
				Changes: domain.Changes{"tag": {Add: []any{fmt.Sprint(i)}}}})
			if err != nil {
				t.Errorf("modify %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	d, err := s.Shadow(ctx, r1.ShadowID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	released := 0
	for _, p := range d.PendingOperations {
		if p.ExecutionStatus == domain.StatusExecutionPending {
			released++
		}
	}
	if len(d.PendingOperations) != 52 || released != 1 {
		t.Fatalf("%d operations, %d in flight: want 52 and 1", len(d.PendingOperations), released)
	}
	// A queued modify can be cancelled; the one in flight cannot.
	last := d.PendingOperations[len(d.PendingOperations)-1]
	if _, err := s.Cancel(ctx, "demo", last.ID); err != nil {
		t.Fatalf("cancel a queued modify: %v", err)
	}
	if _, err := s.Cancel(ctx, "demo", mod.OperationID); !errors.Is(err, domain.ErrNotCancellable) {
		t.Fatalf("cancel the modify in flight: %v", err)
	}
}

// lateRecord is the in-memory store, except that the first look at a request id finds nothing:
// as for a retry whose first attempt, on another instance, reserves and stores its decision
// between this attempt's look at the request id and its load of the shadow.
type lateRecord struct {
	*eventstore.Memory
	mu     sync.Mutex
	missed bool
}

func (l *lateRecord) GetRequest(ctx context.Context, resource, requestID string) (*eventstore.RequestRecord, error) {
	l.mu.Lock()
	first := !l.missed
	l.missed = true
	l.mu.Unlock()
	if first {
		return nil, nil
	}
	return l.Memory.GetRequest(ctx, resource, requestID)
}

// A retry that missed its first attempt's record and then found that attempt's decision in
// the shadow ("delete already pending") answers with the first reply, not 409.
func TestRetryRacingItsFirstAttempt(t *testing.T) {
	cat, err := app.DefaultConfig().Catalog()
	if err != nil {
		t.Fatal(err)
	}
	mem := eventstore.NewMemory(eventstore.DefaultConfig())
	first := service.New(mem, nil, cat, nil)
	t.Cleanup(first.Close)
	add := provision(t, first, service.Request{Verb: "add", ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"race"}}})
	del := service.Request{Verb: "delete", Resource: "demo", ShadowID: add.ShadowID, RequestID: "del-1", Fingerprint: "d"}
	r1 := provision(t, first, del)
	retry := service.New(&lateRecord{Memory: mem}, nil, cat, nil)
	t.Cleanup(retry.Close)
	r2, err := retry.Provision(t.Context(), del)
	if err != nil || r2 != r1 {
		t.Fatalf("the racing retry: %+v %v, want the first reply %+v", r2, err, r1)
	}
}

// A twin of a request that another attempt has just reserved waits for that attempt's answer
// instead of deciding at the same moment: here the first attempt is refused (its login was held)
// and the state changes before the twin would decide (the login is free). Deciding, the twin
// would carry the request out; waiting, it answers the first attempt's refusal.
func TestATwinWaitsForTheFirstAttemptsAnswer(t *testing.T) {
	ctx := t.Context()
	cat, _ := app.DefaultConfig().Catalog()
	store := eventstore.NewMemory(eventstore.DefaultConfig())
	s := service.New(store, nil, cat, nil)
	t.Cleanup(s.Close)
	first := eventstore.RequestRecord{Fingerprint: "f", ShadowID: service.NewID(), OperationID: service.NewID()}
	res, _, err := store.ReserveRequest(ctx, "demo", "twin-1", first)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := s.Provision(ctx, service.Request{Verb: "add", Resource: "demo", RequestID: "twin-1", Fingerprint: "f",
			ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"free"}}})
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("the twin decided while the first attempt's reservation was fresh: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	refusal := first
	refusal.Revision = res.Revision
	refusal.Refused = &eventstore.Refusal{Category: domain.CategoryAlreadyExists, Message: `add: secondary "login"=free is already used by shadow x`}
	if _, _, err := store.RefuseRequest(ctx, "demo", "twin-1", refusal); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-answered:
		if !errors.Is(err, domain.CategoryAlreadyExists) || err.Error() != refusal.Refused.Message {
			t.Fatalf("the twin answered %v, want the first attempt's refusal", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the twin never answered")
	}
}

// refusalsLost is the in-memory store with the index unable to record a refusal (NATS gone).
type refusalsLost struct{ *eventstore.Memory }

func (refusalsLost) RefuseRequest(context.Context, string, string, eventstore.RequestRecord) (*eventstore.RequestRecord, bool, error) {
	return nil, false, eventstore.ErrUnavailable
}

// A refusal that cannot be recorded is not given: the client is told to try again (503), and the
// retry decides afresh, since nothing was answered.
func TestAnUnrecordedRefusalIsNotGiven(t *testing.T) {
	ctx := t.Context()
	cat, _ := app.DefaultConfig().Catalog()
	s := service.New(refusalsLost{eventstore.NewMemory(eventstore.DefaultConfig())}, nil, cat, nil)
	t.Cleanup(s.Close)
	add := func(rid string) error {
		_, err := s.Provision(ctx, service.Request{Verb: "add", Resource: "demo", RequestID: rid, Fingerprint: rid,
			ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"taken"}}})
		return err
	}
	if err := add("first"); err != nil {
		t.Fatal(err)
	}
	err := add("second")
	if code, _ := api.StatusOf(err); code != api.CodeUnavailable || !errors.Is(err, domain.CategoryCommunication) {
		t.Fatalf("an unrecorded refusal answered %v (status %d), want 503", err, code)
	}
}

// countingStore counts the resource updates that reach the store.
type countingStore struct {
	*eventstore.Memory
	updates atomic.Int64
}

func (c *countingStore) UpdateResource(ctx context.Context, resource string, decide func(domain.ResourceState) ([]domain.Event, error)) (domain.ResourceState, []domain.Event, error) {
	c.updates.Add(1)
	time.Sleep(time.Millisecond) // a store round trip: the others arrive while it runs
	return c.Memory.UpdateResource(ctx, resource, decide)
}

// Every outcome of a busy resource reports it reachable: at once, one of them records it and the
// others skip, instead of all queuing for the resource's lock.
func TestReportsOfOneAvailabilityAreRecordedOnce(t *testing.T) {
	cat, err := app.DefaultConfig().Catalog()
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Memory: eventstore.NewMemory(eventstore.DefaultConfig())}
	now := time.Now().UTC()
	s := service.New(store, nil, cat, nil, service.WithClock(func() time.Time { return now }))
	defer s.Close()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() { s.Reachable(t.Context(), "demo") })
	}
	wg.Wait()
	if n := store.updates.Load(); n != 1 {
		t.Errorf("%d resource updates for 64 reports of the same status, want 1", n)
	}
	if err := s.SetAvailability(t.Context(), "demo", domain.AvailabilityDown, "test"); err != nil {
		t.Fatal(err)
	}
	s.Reachable(t.Context(), "demo") // another status: recorded, not skipped
	if st, err := s.ResourceState(t.Context(), "demo"); err != nil || st.Availability != domain.AvailabilityUp {
		t.Errorf("after down then reachable: %+v %v, want up", st.Availability, err)
	}
}
