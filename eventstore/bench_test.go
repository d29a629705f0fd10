package eventstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// Benchmarks run a fixed workload once (go test -bench . -benchtime 1x) and report figures with
// ReportMetric: "ratio" is ours / raw in the same run; "name:unit" is a figure with a suffix.

func benchStore(b *testing.B) *eventstore.Store {
	srv := natstest.Start(b)
	s, err := eventstore.Open(context.Background(), srv.Connect(b), eventstore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func addCommit(b *testing.B, res domain.Resource) eventstore.Commit {
	id := storetest.NewID()
	ev, err := domain.Decide(domain.Shadow{}, domain.Add{Resource: res, ShadowID: id, OperationID: storetest.NewID(),
		ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {id[:8]}, "fullName": {"Jack Sparrow"}}}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return eventstore.Commit{Resource: res.Name(), ShadowID: id, Events: ev, State: domain.Fold(domain.Shadow{}, ev)}
}

// rawMsg is the raw baseline: a ~105-byte event on a fresh subject with the expected-sequence
// check, as measured in FACTS.md; rawMsgOf the same with size bytes.
func rawMsg(i int) *nats.Msg { return rawMsgOf(i, 105) }

func rawMsgOf(i, size int) *nats.Msg {
	m := nats.NewMsg(fmt.Sprintf("prov.evt.raw.%d", i))
	m.Data = make([]byte, size)
	return m
}

// commitSize is how many bytes the add commits of these benchmarks take in the stream: the
// second raw baseline publishes that many, so its ratio shows what the append adds to the
// publish of its bytes (an add commit holds the shadow it makes: ~10x a bare event).
func commitSize(b *testing.B, res domain.Resource) int {
	c := addCommit(b, res)
	body, err := eventstore.EncodeCommit("", c.Events, c.State)
	if err != nil {
		b.Fatal(err)
	}
	return len(body)
}

const (
	appendN = 20000
	block   = 1000 // raw and ours alternate in blocks, so neither runs on a fuller stream or heap
)

// alternate runs raw and ours over [0,appendN) in alternating blocks and returns the rate of
// each. prepare builds the next block of our commits outside the timed region, so that the
// benchmark does not keep appendN decided commits alive for the GC to scan.
func alternate(b *testing.B, raw func(lo, hi int), prepare func(), ours func(lo, hi int)) (rawRate, ourRate float64) {
	r, o := alternateAll(b, []func(lo, hi int){raw}, prepare, ours)
	return r[0], o
}

// alternateAll is alternate with several raw baselines, each on its own subjects.
func alternateAll(b *testing.B, raws []func(lo, hi int), prepare func(), ours func(lo, hi int)) (rawRates []float64, ourRate float64) {
	rawD := make([]time.Duration, len(raws))
	var ourD time.Duration
	for lo := 0; lo < appendN; lo += block {
		for k, raw := range raws {
			runtime.GC() // every side starts each block with a clean heap
			start := time.Now()
			raw(lo+k*appendN, lo+k*appendN+block)
			rawD[k] += time.Since(start)
		}
		prepare()
		runtime.GC()
		start := time.Now()
		ours(lo, lo+block)
		ourD += time.Since(start)
	}
	for _, d := range rawD {
		rawRates = append(rawRates, appendN/d.Seconds())
	}
	return rawRates, appendN / ourD.Seconds()
}

func BenchmarkAppendSync(b *testing.B) {
	for range b.N {
		s := benchStore(b)
		res := storetest.Resource(b)
		ctx := context.Background()
		size := commitSize(b, res)
		commits := make([]eventstore.Commit, block)
		raw := func(size int) func(lo, hi int) {
			return func(lo, hi int) {
				for i := lo; i < hi; i++ {
					if _, err := s.JetStream().PublishMsg(ctx, rawMsgOf(i, size), jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		raws, ours := alternateAll(b, []func(lo, hi int){raw(105), raw(size)}, func() {
			for i := range commits {
				commits[i] = addCommit(b, res)
			}
		}, func(lo, hi int) {
			for _, c := range commits {
				if _, err := s.Append(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.ReportMetric(raws[0], "raw:ops/s")
		b.ReportMetric(ours, "ops/s")
		b.ReportMetric(ours/raws[0], "ratio")
		b.ReportMetric(float64(size), "commit:bytes")
		b.ReportMetric(raws[1], "raw_same_bytes:ops/s")
		b.ReportMetric(ours/raws[1], "ratio_same_bytes")
	}
}

func BenchmarkAppendPipelined(b *testing.B) {
	const window = 1024
	for range b.N {
		s := benchStore(b)
		res := storetest.Resource(b)
		ctx := context.Background()
		size := commitSize(b, res)
		commits := make([]eventstore.Commit, block)
		raw := func(size int) func(lo, hi int) {
			return func(lo, hi int) {
				var futs []jetstream.PubAckFuture
				for i := lo; i < hi; i++ {
					f, err := s.JetStream().PublishMsgAsync(rawMsgOf(i, size), jetstream.WithExpectLastSequencePerSubject(0))
					if err != nil {
						b.Fatal(err)
					}
					futs = append(futs, f)
					if len(futs) == window {
						waitAll(b, futs)
						futs = futs[:0]
					}
				}
				waitAll(b, futs)
			}
		}
		raws, ours := alternateAll(b, []func(lo, hi int){raw(105), raw(size)}, func() {
			for i := range commits {
				commits[i] = addCommit(b, res)
			}
		}, func(lo, hi int) {
			var pend []eventstore.PendingAppend
			for _, c := range commits {
				p, err := s.AppendAsync(c)
				if err != nil {
					b.Fatal(err)
				}
				pend = append(pend, p)
				if len(pend) == window {
					waitPending(b, ctx, pend)
					pend = pend[:0]
				}
			}
			waitPending(b, ctx, pend)
		})
		b.ReportMetric(raws[0], "raw:ops/s")
		b.ReportMetric(ours, "ops/s")
		b.ReportMetric(ours/raws[0], "ratio")
		b.ReportMetric(float64(size), "commit:bytes")
		b.ReportMetric(raws[1], "raw_same_bytes:ops/s")
		b.ReportMetric(ours/raws[1], "ratio_same_bytes")
	}
}

func waitAll(b *testing.B, futs []jetstream.PubAckFuture) {
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
}

func waitPending(b *testing.B, ctx context.Context, pend []eventstore.PendingAppend) {
	for _, p := range pend {
		if _, err := p.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func pct(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Microseconds())
}

// BenchmarkAggregateLoad: 10,000 shadows x 100 commits interleaved = 1M messages; load a shadow.
// The raw baseline does the same work by hand: a direct get of the last message of the shadow's
// subject (each commit holds the state), interleaved with ours on the same shadows; the ratio is
// raw p50 / ours p50 (1: no cost over the raw read). Replaying the shadow's 100 messages with a
// filtered ordered consumer, what loading an aggregate costs without state in the commits, is
// reported beside it (replay_p50).
func BenchmarkAggregateLoad(b *testing.B) {
	for range b.N {
		s := benchStore(b)
		ctx := context.Background()
		ids, err := storetest.Populate(ctx, s, storetest.Resource(b), 10000, 100)
		if err != nil {
			b.Fatal(err)
		}
		var replay []time.Duration
		for range 30 {
			id := ids[rand.IntN(len(ids))]
			start := time.Now()
			if n := rawRead(b, s, "prov.evt.demo."+id); n != 100 {
				b.Fatalf("raw read: %d messages", n)
			}
			replay = append(replay, time.Since(start))
		}
		var hist []time.Duration
		for range 30 {
			id := ids[rand.IntN(len(ids))]
			start := time.Now()
			if h, err := s.History(ctx, id); err != nil || len(h) != 100 {
				b.Fatalf("history: %d, %v", len(h), err)
			}
			hist = append(hist, time.Since(start))
		}
		b.ReportMetric(pct(hist, 0.5)/1000, "history_p50:ms")
		stream, err := s.JetStream().Stream(ctx, "PROV_EVENTS")
		if err != nil {
			b.Fatal(err)
		}
		var raw, ours []time.Duration
		for range 5000 {
			id := ids[rand.IntN(len(ids))]
			start := time.Now()
			if _, err := stream.GetLastMsgForSubject(ctx, "prov.evt.demo."+id); err != nil {
				b.Fatal(err)
			}
			raw = append(raw, time.Since(start))
			start = time.Now()
			st, _, err := s.Load(ctx, "demo", id)
			if err != nil || !st.Created() {
				b.Fatal(err)
			}
			ours = append(ours, time.Since(start))
		}
		rawP50, oursP50 := pct(raw, 0.5), pct(ours, 0.5)
		b.ReportMetric(pct(replay, 0.5)/1000, "replay_p50:ms")
		b.ReportMetric(rawP50, "raw_p50:us")
		b.ReportMetric(pct(raw, 0.99), "raw_p99:us")
		b.ReportMetric(oursP50, "p50:us")
		b.ReportMetric(pct(ours, 0.99), "p99:us")
		b.ReportMetric(rawP50/max(oursP50, 1), "ratio")
	}
}

// rawRead reads every message of one subject with a plain ordered consumer: the raw way to load
// an aggregate by replaying its events.
func rawRead(b *testing.B, s *eventstore.Store, subject string) int {
	ctx := context.Background()
	cons, err := s.JetStream().OrderedConsumer(ctx, "PROV_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	n := 0
	for {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		n++
		md, _ := m.Metadata()
		if md.NumPending == 0 {
			return n
		}
	}
}
