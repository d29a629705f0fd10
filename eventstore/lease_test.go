package eventstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"shadowbridge/eventstore"
	"shadowbridge/eventstore/storetest"
)

// A handler slower than the consumer's AckWait keeps its record: the worker's lease is renewed
// while it runs, so the server does not hand the record out again.
func TestSlowHandlerKeepsItsLease(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, false)
	if _, err := storetest.Populate(ctx, s, storetest.Resource(t), 1, 1); err != nil {
		t.Fatal(err)
	}
	var calls, done atomic.Int32
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = s.SubscribeSharded(sctx, "lease-test", eventstore.SubscribeOptions{AckWait: time.Second, Workers: 4},
			func(ctx context.Context, r *eventstore.Record) error {
				calls.Add(1)
				select {
				case <-time.After(3500 * time.Millisecond): // three and a half AckWaits
				case <-ctx.Done():
				}
				done.Add(1)
				return nil
			})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for done.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // time for a redelivery to show up, if there were one
	if c := calls.Load(); c != 1 {
		t.Fatalf("the record was handled %d times, want once", c)
	}
	if floor, err := s.AckFloor(ctx, "lease-test"); err != nil || floor != 1 {
		t.Fatalf("acknowledged up to %d (%v), want 1", floor, err)
	}
}
