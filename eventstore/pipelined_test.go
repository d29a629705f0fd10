package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// SubscribePipelined: every record is handled and acknowledged; per subject, the work is
// started in log order, and after a failed Await the failed record and every later one the
// worker held are started again in order, so the last work started for each subject is its
// last record's; settle returns only once the worker's earlier work is stored.
func TestSubscribePipelined(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	s, err := eventstore.Open(ctx, srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	const shadows, per = 12, 40
	ids, err := storetest.Populate(ctx, s, storetest.Resource(t), shadows, per)
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	started := map[string][]uint64{} // shadow -> sequences whose work was started, in order
	stored := map[uint64]bool{}
	failed := map[uint64]bool{}
	var settles, badSettles int
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- s.SubscribePipelined(sctx, "pipelined-test", eventstore.SubscribeOptions{Workers: 3},
			func(_ context.Context, r *eventstore.Record, settle func() error) (eventstore.Await, error) {
				if r.Seq%7 == 0 { // work that must wait for the earlier work
					mu.Lock()
					earlier := append([]uint64(nil), started[r.ShadowID]...)
					mu.Unlock()
					if err := settle(); err != nil {
						return nil, err
					}
					mu.Lock()
					settles++
					for _, seq := range earlier {
						if seq < r.Seq && !stored[seq] {
							badSettles++
						}
					}
					mu.Unlock()
				}
				mu.Lock()
				started[r.ShadowID] = append(started[r.ShadowID], r.Seq)
				mu.Unlock()
				seq := r.Seq
				return func(context.Context) error {
					time.Sleep(50 * time.Microsecond)
					mu.Lock()
					defer mu.Unlock()
					if seq%11 == 0 && !failed[seq] { // fails the first time
						failed[seq] = true
						return errors.New("no acknowledgement")
					}
					stored[seq] = true
					return nil
				}, nil
			})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		floor, err := s.AckFloor(ctx, "pipelined-test")
		if err != nil {
			t.Fatal(err)
		}
		if floor == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged up to %d of %d", floor, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stored) != int(last) {
		t.Fatalf("%d of %d records stored", len(stored), last)
	}
	if len(failed) == 0 || settles == 0 {
		t.Fatalf("the test exercised %d failures and %d settles", len(failed), settles)
	}
	if badSettles > 0 {
		t.Fatalf("settle returned %d times before earlier work was stored", badSettles)
	}
	for _, id := range ids {
		seqs := started[id]
		if len(seqs) < per {
			t.Fatalf("shadow %s: %d records started, want at least %d", id, len(seqs), per)
		}
		// Started again after a failure: the sequence goes back once, then climbs again; never
		// does a later record's work stay in front of an earlier one's last start.
		lastStart := map[uint64]int{}
		for i, seq := range seqs {
			lastStart[seq] = i
		}
		var prev uint64
		for seq := range lastStart {
			prev = max(prev, seq)
		}
		if seqs[len(seqs)-1] != prev {
			t.Fatalf("shadow %s: the last work started is record %d's, not the last record's (%d)", id, seqs[len(seqs)-1], prev)
		}
		for a, ia := range lastStart {
			for b, ib := range lastStart {
				if a < b && ia > ib {
					t.Fatalf("shadow %s: record %d last started after record %d", id, a, b)
				}
			}
		}
	}
}
