package eventstore_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// BenchmarkTimers arms 100,000 timers due over 20 s (ours: ArmTimer from ArmerWorkers goroutines,
// as the armer's workers do; raw: async scheduled publishes) and measures how late they fire at a
// durable consumer of the due subjects (the server checks schedules every 250 ms at most).
func BenchmarkTimers(b *testing.B) {
	const n, spread, workers = 100000, 20 * time.Second, eventstore.FiringWorkers
	for range b.N {
		s := benchStore(b)
		ctx := context.Background()
		js := s.JetStream()
		// Raw arming rate: the same schedules published asynchronously, due far in the future.
		start := time.Now()
		far := time.Now().Add(time.Hour)
		publishSchedules(b, js, n, "prov.timer.raw.", "prov.due.raw.", func(int) time.Time { return far })
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
		for w := range eventstore.ArmerWorkers {
			wg.Go(func() {
				for i := w; i < n; i += eventstore.ArmerWorkers {
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

// rssMiB reads the process's resident set size (Linux), server and client included: the
// embedded nats-server runs in this process.
func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// publishSchedules publishes n native message schedules asynchronously (4,096 in flight): timer i
// on subject timerPrefix+i, due at due(i), firing to duePrefix+i with the due time as body.
func publishSchedules(b *testing.B, js jetstream.JetStream, n int, timerPrefix, duePrefix string, due func(int) time.Time) {
	var futs []jetstream.PubAckFuture
	for i := range n {
		at := due(i).UTC().Format(time.RFC3339Nano)
		id := shadowName(i)
		m := nats.NewMsg(timerPrefix + id)
		m.Header.Set("Nats-Schedule", "@at "+at)
		m.Header.Set("Nats-Schedule-Target", duePrefix+id)
		m.Data = []byte(at)
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
}

// shadowName is a shadow id for timer i, shaped like the service's (a UUID), so that raw
// schedules use subjects as long as the service's: the server keeps state per subject.
func shadowName(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}

// rawMillion is BenchmarkTimersMillion's baseline, in the same process before ours, on a server
// of its own that is shut down after: n native schedules published asynchronously (4,096 in
// flight), due over spread after a minute, fired into a plain durable consumer. It returns the
// lateness p99 (ms) and the RSS growth (MiB) from before arming to the peak.
func rawMillion(b *testing.B, n int, spread time.Duration) (lateP99, rssGrowth float64) {
	srv := natstest.Start(b)
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc := srv.Connect(b)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The service's subject shapes (prov.timer.demo.<uuid>), without the service.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"prov.>"}, AllowMsgSchedules: true}); err != nil {
		b.Fatal(err)
	}
	debug.FreeOSMemory()
	rss0 := rssMiB()
	var peak atomic.Uint64
	go func() {
		for ctx.Err() == nil {
			if r := uint64(rssMiB()); r > peak.Load() {
				peak.Store(r)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", FilterSubject: "prov.due.>", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	lateness := make([]time.Duration, 0, n)
	var mu sync.Mutex
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		due, _ := time.Parse(time.RFC3339Nano, string(m.Data()))
		mu.Lock()
		lateness = append(lateness, time.Since(due))
		if len(lateness) == n {
			close(done)
		}
		mu.Unlock()
		_ = m.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	first := time.Now().Add(time.Minute)
	publishSchedules(b, js, n, "prov.timer.demo.", "prov.due.demo.", func(i int) time.Time { return first.Add(time.Duration(i) * spread / time.Duration(n)) })
	select {
	case <-done:
	case <-time.After(time.Until(first.Add(spread + 2*time.Minute))):
		b.Fatalf("raw: only %d of %d fired", len(lateness), n)
	}
	mu.Lock()
	defer mu.Unlock()
	return pct(lateness, 0.99) / 1000, float64(peak.Load()) - rss0
}

// BenchmarkTimersMillion arms 1,000,000 timers (one per shadow, as the service does) due over
// 60 s after a minute of arming, lets them all fire, and tracks memory: the Go heap and the
// process RSS (nats-server included) before arming, with everything armed, at the peak, and
// after all fired. Lateness is reported too (the server's 250 ms tick). The baseline, in the
// same run, is rawMillion: the same number of native schedules; lateness p99 and RSS growth are
// compared as ratios. SHADOWBRIDGE_BENCH_TIMERS overrides the count.
func BenchmarkTimersMillion(b *testing.B) {
	n, spread, workers := 1000000, 60*time.Second, eventstore.FiringWorkers
	if v, err := strconv.Atoi(os.Getenv("SHADOWBRIDGE_BENCH_TIMERS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		rawLate, rawGrowth := rawMillion(b, n, spread)
		debug.FreeOSMemory() // the baseline's memory back to the system before ours starts
		s := benchStore(b)
		ctx, cancel := context.WithCancel(context.Background())
		var peakRSS, peakHeap atomic.Uint64
		sample := func() (rss, heap float64) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			rss, heap = rssMiB(), float64(ms.HeapInuse)/(1<<20)
			for cur := peakRSS.Load(); uint64(rss) > cur && !peakRSS.CompareAndSwap(cur, uint64(rss)); cur = peakRSS.Load() {
			}
			for cur := peakHeap.Load(); uint64(heap) > cur && !peakHeap.CompareAndSwap(cur, uint64(heap)); cur = peakHeap.Load() {
			}
			return rss, heap
		}
		go func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					sample()
				}
			}
		}()
		runtime.GC()
		rss0, heap0 := sample()

		// Each firing takes its own slot: no lock shared by the 128 workers (a convoy on one
		// mutex would measure the benchmark, not the consumer).
		lateness := make([]time.Duration, n)
		var fired atomic.Int64
		done := make(chan struct{})
		go func() {
			_ = s.SubscribeSharded(ctx, "bench-timers-1m", eventstore.SubscribeOptions{Filter: "prov.due.>", Workers: workers},
				func(_ context.Context, r *eventstore.Record) error {
					due, err := time.Parse(time.RFC3339Nano, string(r.Payload()))
					if err != nil {
						return nil
					}
					late := time.Since(due)
					i := fired.Add(1)
					if i <= int64(n) {
						lateness[i-1] = late
					}
					if i == int64(n) {
						close(done)
					}
					return nil
				})
		}()
		first := time.Now().Add(time.Minute)
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range eventstore.ArmerWorkers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if err := s.ArmTimer(ctx, "demo", storetest.NewID(), first.Add(time.Duration(i)*spread/time.Duration(n))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		arming := time.Since(start)
		runtime.GC()
		rssArmed, heapArmed := sample()
		select {
		case <-done:
		case <-time.After(first.Add(spread + 2*time.Minute).Sub(time.Now())):
			b.Fatalf("only %d of %d timers fired", fired.Load(), n)
		}
		runtime.GC()
		rssAfter, heapAfter := sample()
		cancel()
		b.ReportMetric(float64(n), "timers:n")
		b.ReportMetric(float64(n)/arming.Seconds(), "arm:ops/s")
		b.ReportMetric(pct(lateness, 0.5)/1000, "late_p50:ms")
		b.ReportMetric(pct(lateness, 0.99)/1000, "late_p99:ms")
		b.ReportMetric(rss0, "rss_before:MiB")
		b.ReportMetric(rssArmed, "rss_armed:MiB")
		b.ReportMetric(float64(peakRSS.Load()), "rss_peak:MiB")
		b.ReportMetric(rssAfter, "rss_after:MiB")
		b.ReportMetric(heap0, "heap_before:MiB")
		b.ReportMetric(heapArmed, "heap_armed:MiB")
		b.ReportMetric(float64(peakHeap.Load()), "heap_peak:MiB")
		b.ReportMetric(heapAfter, "heap_after:MiB")
		b.ReportMetric((heapArmed-heap0)*(1<<20)/float64(n), "heap_per_timer:B")
		b.ReportMetric(rawLate, "raw_late_p99:ms")
		b.ReportMetric(pct(lateness, 0.99)/1000/rawLate, "late_p99_vs_raw:ratio")
		b.ReportMetric(rawGrowth, "raw_rss_growth:MiB")
		b.ReportMetric((float64(peakRSS.Load())-rss0)/rawGrowth, "rss_growth_vs_raw:ratio")
	}
}

// BenchmarkArmer: the timer armer itself, from the log to the schedules. 50,000 commits
// (10,000 shadows x 5, each commit a TimerSet) are applied by ApplyTimers through
// SubscribeSharded with ArmerWorkers workers, as the service's armer does (ours); raw is the same number of
// schedules published asynchronously, nothing read, each on a subject of its own; raw_rearm
// the same schedules as the log's, 10,000 subjects re-armed 5 times; floor is the least any
// armer that reads the log must do (see there). Each on a fresh server; the time is until
// the consumer's acknowledgement floor reaches the last record.
func BenchmarkArmer(b *testing.B) {
	const shadows, per = 10000, 5
	n := shadows * per
	far := time.Now().Add(time.Hour)
	run := func(b *testing.B, subscribe func(ctx context.Context, s *eventstore.Store) error) float64 {
		s := benchStore(b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Commits holding a TimerSet each (due in an hour), round-robin over the shadows.
		ids := make([]string, shadows)
		for i := range ids {
			ids[i] = storetest.NewID()
		}
		var futs []jetstream.PubAckFuture
		for round := range per {
			for _, id := range ids {
				ev := []domain.Event{domain.TimerSet{At: far.Add(time.Duration(round) * time.Second), Time: time.Now()}}
				data, err := eventstore.EncodeCommit("", ev, domain.Shadow{})
				if err != nil {
					b.Fatal(err)
				}
				m := nats.NewMsg(s.Subject("demo", id))
				m.Data = data
				m.Header.Set(eventstore.HeaderEventType, "TimerSet")
				f, err := s.JetStream().PublishMsgAsync(m)
				if err != nil {
					b.Fatal(err)
				}
				if futs = append(futs, f); len(futs) == 1024 {
					waitAll(b, futs)
					futs = futs[:0]
				}
			}
		}
		waitAll(b, futs)
		last, _ := s.LastSeq(ctx)
		start := time.Now()
		go func() { _ = subscribe(ctx, s) }()
		for {
			floor, _ := s.AckFloor(ctx, "bench-armer")
			if floor >= last {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("armed up to %d of %d", floor, last)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return float64(n) / time.Since(start).Seconds()
	}
	var armed atomic.Int64
	count := func(string) { armed.Add(1) }
	for range b.N {
		ours := run(b, func(ctx context.Context, s *eventstore.Store) error {
			return s.SubscribeSharded(ctx, "bench-armer", eventstore.SubscribeOptions{Workers: armerWorkers()},
				func(ctx context.Context, r *eventstore.Record) error { return s.ApplyTimers(ctx, r, count) })
		})
		// The floor of any armer that reads the log: a bare consumer of the same records that,
		// for each, publishes its schedule asynchronously and acknowledges the record at once
		// (not even waiting for the schedule to be stored), nothing decoded.
		floor := run(b, func(ctx context.Context, s *eventstore.Store) error {
			cons, err := s.JetStream().CreateOrUpdateConsumer(ctx, "PROV_EVENTS", jetstream.ConsumerConfig{Durable: "bench-armer",
				FilterSubject: "prov.evt.>", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 8192})
			if err != nil {
				return err
			}
			at := far.UTC().Format(time.RFC3339Nano)
			cc, err := cons.Consume(func(m jetstream.Msg) {
				id := m.Subject()[len("prov.evt.demo."):]
				pm := nats.NewMsg("prov.timer.demo." + id)
				pm.Header.Set("Nats-Schedule", "@at "+at)
				pm.Header.Set("Nats-Schedule-Target", "prov.due.demo."+id)
				pm.Data = []byte(at)
				if _, err := s.JetStream().PublishMsgAsync(pm); err != nil {
					b.Error(err)
				}
				_ = m.Ack()
			}, jetstream.PullMaxMessages(4096))
			if err != nil {
				return err
			}
			<-ctx.Done()
			cc.Stop()
			return nil
		})
		b.ReportMetric(floor, "floor_arm:ops/s")
		b.ReportMetric(ours/floor, "ratio_vs_floor")
		s := benchStore(b)
		start := time.Now()
		publishSchedules(b, s.JetStream(), n, "prov.timer.raw.", "prov.due.raw.", func(int) time.Time { return far })
		raw := float64(n) / time.Since(start).Seconds()
		// The same schedules as the log asks for: 10,000 subjects armed 5 times each, every
		// arming replacing the one before (the server purges the subject).
		s = benchStore(b)
		start = time.Now()
		for round := range per {
			publishSchedules(b, s.JetStream(), shadows, "prov.timer.raw.", "prov.due.raw.", func(int) time.Time { return far.Add(time.Duration(round) * time.Second) })
		}
		rearm := float64(n) / time.Since(start).Seconds()
		b.ReportMetric(rearm, "raw_rearm:ops/s")
		b.ReportMetric(ours/rearm, "ratio_vs_rearm")
		if armed.Load() != int64(n) {
			b.Fatalf("%d armed, want %d", armed.Load(), 2*n)
		}
		b.ReportMetric(ours, "arm:ops/s")
		b.ReportMetric(raw, "raw_arm:ops/s")
		b.ReportMetric(ours/raw, "ratio")
	}
}

// armerWorkers is eventstore.ArmerWorkers, or SHADOWBRIDGE_BENCH_ARMER_WORKERS to compare.
func armerWorkers() int {
	if v, err := strconv.Atoi(os.Getenv("SHADOWBRIDGE_BENCH_ARMER_WORKERS")); err == nil && v > 0 {
		return v
	}
	return eventstore.ArmerWorkers
}
