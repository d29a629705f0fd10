package service_test

import (
	"context"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/projections"
)

// blockingPending is a pending index whose listing waits until its caller gives up, and says
// when that happened.
type blockingPending struct{ started, gaveUp chan struct{} }

func (b blockingPending) Pending(ctx context.Context, _ string) ([]domain.ShadowData, error) {
	close(b.started)
	<-ctx.Done()
	close(b.gaveUp)
	return nil, ctx.Err()
}

func (b blockingPending) PendingPage(ctx context.Context, resource, _ string, _ int) (projections.PendingPage, error) {
	list, err := b.Pending(ctx, resource)
	return projections.PendingPage{Shadows: list}, err
}

// Work the service starts on its own (the release of operations when maintenance ends) does not
// outlive Close: Close cancels it and returns only once it has stopped.
func TestCloseStopsBackgroundWork(t *testing.T) {
	ctx := t.Context()
	store, err := eventstore.Open(ctx, natstest.Start(t).Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := app.DefaultConfig().Catalog()
	p := blockingPending{started: make(chan struct{}), gaveUp: make(chan struct{})}
	svc := service.New(store, p, cat, nil)
	if _, err := svc.SetMaintenance(ctx, "demo", true, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetMaintenance(ctx, "demo", false, ""); err != nil { // starts the release
		t.Fatal(err)
	}
	select {
	case <-p.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the release after maintenance never started")
	}
	closed := make(chan struct{})
	go func() { svc.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: background work ignored its cancellation")
	}
	select {
	case <-p.gaveUp:
	default:
		t.Fatal("Close returned while background work was still running")
	}
}
