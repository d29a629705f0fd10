package eventstore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/eventstore"
	"shadowbridge/eventstore/storetest"
)

// BenchmarkTimers arms 100,000 timers due over 20 s (ours: ArmTimer from 16 goroutines, as the
// armer's workers do; raw: async scheduled publishes) and measures how late they fire at a
// durable consumer of the due subjects (the server checks schedules every 250 ms at most).
func BenchmarkTimers(b *testing.B) {
	const n, spread, workers = 100000, 20 * time.Second, 16
	for range b.N {
		s := benchStore(b)
		ctx := context.Background()
		js := s.JetStream()
		// Raw arming rate: the same schedules published asynchronously, due far in the future.
		start := time.Now()
		var futs []jetstream.PubAckFuture
		far := time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
		for i := range n {
			m := nats.NewMsg(fmt.Sprintf("prov.timer.raw.%d", i))
			m.Header.Set("Nats-Schedule", "@at "+far)
			m.Header.Set("Nats-Schedule-Target", fmt.Sprintf("prov.due.raw.%d", i))
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				b.Fatal(err)
			}
			if futs = append(futs, f); len(futs) == 4096 {
				waitAll(b, futs)
				futs = futs[:0]
			}
		}
		waitAll(b, futs)
		raw := n / time.Since(start).Seconds()
		if err := js.DeleteStream(ctx, "PROV_EVENTS"); err != nil { // drop the raw schedules
			b.Fatal(err)
		}
		var err error
		if s, err = eventstore.Open(ctx, s.JetStreamConn(), eventstore.DefaultConfig()); err != nil {
			b.Fatal(err)
		}

		var mu sync.Mutex
		var lateness []time.Duration
		var fired atomic.Int64
		done := make(chan struct{})
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			_ = s.SubscribeSharded(cctx, "bench-timers", eventstore.SubscribeOptions{Filter: "prov.due.>", Workers: workers},
				func(_ context.Context, r *eventstore.Record) error {
					due, err := time.Parse(time.RFC3339Nano, string(r.Payload()))
					if err != nil {
						return nil
					}
					mu.Lock()
					lateness = append(lateness, time.Since(due))
					mu.Unlock()
					if fired.Add(1) == n {
						close(done)
					}
					return nil
				})
		}()
		ids := make([]string, n)
		for i := range ids {
			ids[i] = storetest.NewID()
		}
		var ms runtime.MemStats
		first := time.Now().Add(3 * time.Second) // arming takes a while: start firing after it
		start = time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					at := first.Add(time.Duration(i) * spread / n)
					if err := s.ArmTimer(ctx, "demo", ids[i], at); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		ours := n / time.Since(start).Seconds()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("only %d of %d timers fired", fired.Load(), n)
		}
		runtime.ReadMemStats(&ms)
		cancel()
		b.ReportMetric(pct(lateness, 0.5)/1000, "late_p50:ms")
		b.ReportMetric(pct(lateness, 0.99)/1000, "late_p99:ms")
		b.ReportMetric(ours, "arm:ops/s")
		b.ReportMetric(raw, "raw_arm:ops/s")
		b.ReportMetric(ours/raw, "ratio")
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap:MiB")
	}
}
