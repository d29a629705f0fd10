package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge"
	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// BenchmarkAMQPBridge: n operations already in the log are dispatched to the broker (send,
// Accepted, outcome recorded in JetStream) vs raw go-amqp durable sends of the same messages,
// pipelined with 256 unsettled, to the same broker in the same run, and vs the floor: a bare
// forwarder from a JetStream consumer to the broker that records each outcome (bridgeFloor).
func BenchmarkAMQPBridge(b *testing.B) {
	const n, window = 5000, 256
	for range b.N {
		br := amqptest.Start(b)
		ctx := context.Background()
		// Raw: the messages the bridge would send, pipelined.
		rawQ := br.Queue(b, "bench-raw")
		tgt, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: br.URL, Address: rawQ})
		if err != nil {
			b.Fatal(err)
		}
		msgs := make([]*amqp.Message, n)
		for i := range msgs {
			if msgs[i], err = tgt.Message(bridge.Request{Resource: "fs", ShadowID: storetest.NewID(), OperationID: storetest.NewID(), Attempt: 1,
				Body: domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {fmt.Sprint("u", i)}}}}); err != nil {
				b.Fatal(err)
			}
		}
		// The broker's JIT warms up on a first untimed pass, so that raw, floor and ours all
		// meet a warm broker (a cold first pass made raw 3x slower and flattered every ratio).
		rawSend(b, br.Sender(b, br.Queue(b, "bench-warm")), msgs, window)
		raw := rawSend(b, br.Sender(b, rawQ), msgs, window)
		_ = tgt.Close()

		srv := natstest.Start(b)
		nc := srv.Connect(b)
		floor := bridgeFloor(b, nc, br, msgs, window, floorWrites{prefix: "bare"})
		floorSame := bridgeFloor(b, nc, br, msgs, window, floorWrites{prefix: "same", same: true})

		// Ours: the operations are in the log; start the dispatcher and wait until every outcome is stored.
		q := br.Queue(b, "bench-bridge")
		cfg := amqpConfig(b, br.URL, q, "", false)
		a, err := app.Start(ctx, nc, cfg, app.Options{NoDispatcher: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		// The dispatcher's consumer is made first, as in service: records stored before their
		// consumer was made are Replayed, and the dispatcher would load every shadow.
		js, _ := jetstream.New(nc)
		d := bridge.NewDispatcher(a.Store, a.Service, map[string]bridge.Target{"fs": mustTarget(b, br.URL, q)}, nil)
		d.Parallel = window
		pre, stopPre := context.WithCancel(ctx)
		preDone := make(chan struct{})
		go func() { defer close(preDone); _ = d.Run(pre) }()
		for {
			if _, err := js.Consumer(ctx, "PROV_EVENTS", d.Durable); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		stopPre()
		<-preDone
		var ids []string
		for i := range n {
			r, err := a.Service.Provision(ctx, service.Request{Verb: "add", Resource: "fs", ObjectClass: "AccountObjectClass",
				Attributes: domain.Attributes{"login": {fmt.Sprint("u", i)}}})
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, r.ShadowID)
		}
		dctx, cancel := context.WithCancel(ctx)
		start := time.Now()
		go func() { _ = d.Run(dctx) }()
		// Done when the dispatcher's consumer has nothing left to deliver and nothing unacknowledged
		// (a record is acknowledged after its outcome is stored). Polling shadows instead would
		// compete with the dispatcher for the CPU.
		for {
			time.Sleep(5 * time.Millisecond)
			c, err := js.Consumer(ctx, "PROV_EVENTS", d.Durable)
			if err != nil {
				continue
			}
			info, err := c.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream > 0 {
				break
			}
		}
		ours := n / time.Since(start).Seconds()
		for _, id := range ids { // verify, outside the measurement
			if st, _, err := a.Store.Load(ctx, "fs", id); err != nil || st.Lifecycle() != domain.LifecycleLive {
				b.Fatalf("shadow %s: %v %v", id, st.Lifecycle(), err)
			}
		}
		cancel()
		a.Close()
		b.ReportMetric(raw, "raw:ops/s")
		b.ReportMetric(ours, "ops/s")
		b.ReportMetric(ours/raw, "ratio")
		b.ReportMetric(floor, "floor:ops/s")
		b.ReportMetric(floor/raw, "floor_vs_raw:ratio")
		b.ReportMetric(ours/floor, "ours_vs_floor:ratio")
		b.ReportMetric(floorSame, "floor_same_writes:ops/s")
		b.ReportMetric(ours/floorSame, "ours_vs_floor_same_writes:ratio")
	}
}

// rawSend sends msgs durably with window unsettled and returns messages per second.
func rawSend(b *testing.B, snd *amqp.Sender, msgs []*amqp.Message, window int) float64 {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	var receipts []amqp.SendReceipt
	for _, m := range msgs {
		r, err := snd.SendWithReceipt(ctx, m, nil)
		if err != nil {
			b.Fatal(err)
		}
		if receipts = append(receipts, r); len(receipts) == window {
			if _, err := receipts[0].Wait(ctx); err != nil {
				b.Fatal(err)
			}
			receipts = receipts[1:]
		}
	}
	for _, r := range receipts {
		if _, err := r.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(msgs)) / time.Since(start).Seconds()
}

// floorWrites names the stream writes a floor makes per operation, and where.
type floorWrites struct {
	prefix string // a fresh prefix per run: floor.<prefix>.in/out/timer/due and KV bucket <prefix>
	// same: besides the outcome, the writes shadowbridge makes for a completed operation: the
	// retention timer's schedule and the projection's entry.
	same bool
}

// bridgeFloor measures the least any bridge must do per operation, with no shadowbridge code: a
// bare forwarder. The operations are records in a JetStream stream (as ours are in the log); a
// durable pull consumer (window unacknowledged) hands each to a raw pipelined durable send to the
// broker; once the broker accepted it, a raw pipelined JetStream publish of a 1 KB outcome record
// with an optimistic-concurrency header (with w.same also the retention timer's schedule and a
// projection entry, as shadowbridge writes for a completed operation), and once that is stored,
// the record's acknowledgement. A bridge that records outcomes durably (so that a crash neither
// loses nor repeats an operation) cannot beat this on the same machine; floor/raw bounds the
// bridge ratio.
func bridgeFloor(b *testing.B, nc *nats.Conn, br amqptest.Broker, msgs []*amqp.Message, window int, w floorWrites) float64 {
	b.Helper()
	ctx := context.Background()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		b.Fatal(err)
	}
	p := "floor." + w.prefix
	in, out := strings.ToUpper(w.prefix)+"_IN", strings.ToUpper(w.prefix)+"_OUT"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: in, Subjects: []string{p + ".in.>"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: out, Subjects: []string{p + ".out.>", p + ".timer.>", p + ".due.>"}, AllowMsgSchedules: true}); err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: w.prefix}); err != nil {
		b.Fatal(err)
	}
	record := make([]byte, 1024)
	for i := range msgs {
		if _, err := js.PublishAsync(fmt.Sprint(p, ".in.", i), record); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	cons, err := js.CreateConsumer(ctx, in, jetstream.ConsumerConfig{Durable: "FLOOR", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: window})
	if err != nil {
		b.Fatal(err)
	}
	snd := br.Sender(b, br.Queue(b, "bench-floor"))
	type step struct {
		m       jetstream.Msg
		i       int
		receipt amqp.SendReceipt
		stored  []jetstream.PubAckFuture
	}
	sent, published := make(chan step, window), make(chan step, window)
	acked := make(chan struct{})
	go func() { // broker accepted -> outcome published, in order
		defer close(published)
		for s := range sent {
			if _, err := s.receipt.Wait(ctx); err != nil {
				b.Error(err)
				return
			}
			writes := []*nats.Msg{{Subject: fmt.Sprint(p, ".out.", s.i), Data: record}}
			if w.same {
				timer := nats.NewMsg(fmt.Sprint(p, ".timer.", s.i))
				timer.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
				timer.Header.Set("Nats-Schedule-Target", fmt.Sprint(p, ".due.", s.i))
				writes = append(writes, timer, &nats.Msg{Subject: fmt.Sprint("$KV.", w.prefix, ".", s.i), Data: record})
			}
			for _, m := range writes {
				f, err := js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0))
				if err != nil {
					b.Error(err)
					return
				}
				s.stored = append(s.stored, f)
			}
			published <- s
		}
	}()
	go func() { // outcome stored -> record acknowledged
		defer close(acked)
		for s := range published {
			for _, f := range s.stored {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Error(err)
					return
				}
			}
			_ = s.m.Ack()
		}
	}()
	start := time.Now()
	it, err := cons.Messages(jetstream.PullMaxMessages(window))
	if err != nil {
		b.Fatal(err)
	}
	for range msgs {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		var i int
		_, _ = fmt.Sscanf(strings.TrimPrefix(m.Subject(), p+".in."), "%d", &i)
		r, err := snd.SendWithReceipt(ctx, msgs[i], nil)
		if err != nil {
			b.Fatal(err)
		}
		sent <- step{m: m, i: i, receipt: r}
	}
	close(sent)
	<-acked
	elapsed := time.Since(start)
	it.Stop()
	return float64(len(msgs)) / elapsed.Seconds()
}

func mustTarget(b *testing.B, url, q string) *bridge.AMQPTarget {
	t, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: url, Address: q})
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkAMQPEndToEnd: add over NATS -> broker -> a target system confirms over the broker ->
// the projection shows the shadow live. Closed loop, 32 clients.
func BenchmarkAMQPEndToEnd(b *testing.B) {
	const n, clients = 2000, 32
	for range b.N {
		br := amqptest.Start(b)
		req, conf := br.Queue(b, "bench-e2e-req"), br.Queue(b, "bench-e2e-conf")
		ctx, cancel := context.WithCancel(context.Background())
		targetSystem(ctx, b, br, req, conf)
		srv := natstest.Start(b)
		nc := srv.Connect(b)
		a, err := app.Start(ctx, nc, amqpConfig(b, br.URL, req, conf, true), app.Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		kv, _ := js.KeyValue(ctx, "PROV_SHADOWS")
		w, _ := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		var mu sync.Mutex
		waiting := map[string]chan struct{}{}
		live := map[string]bool{}
		go func() {
			for e := range w.Updates() {
				if e == nil {
					continue
				}
				var d domain.ShadowData
				if json.Unmarshal(e.Value(), &d) != nil || d.LifecycleState != domain.LifecycleLive {
					continue
				}
				mu.Lock()
				if !live[d.ShadowID] {
					live[d.ShadowID] = true
					if ch, ok := waiting[d.ShadowID]; ok {
						close(ch)
					}
				}
				mu.Unlock()
			}
		}()
		var lat []time.Duration
		var lmu sync.Mutex
		start := time.Now()
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for i := c; i < n; i += clients {
					t0 := time.Now()
					m, err := nc.Request("prov.cmd.fs.add", fmt.Appendf(nil, `{"objectClass":"AccountObjectClass","attributes":{"login":["u%d"]}}`, i), 30*time.Second)
					if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
						b.Errorf("add: %v", err)
						return
					}
					var r struct{ ShadowID string }
					_ = json.Unmarshal(m.Data, &r)
					mu.Lock()
					ch := make(chan struct{})
					if live[r.ShadowID] {
						close(ch)
					} else {
						waiting[r.ShadowID] = ch
					}
					mu.Unlock()
					select {
					case <-ch:
					case <-time.After(time.Minute):
						b.Errorf("%s never live", r.ShadowID)
						return
					}
					lmu.Lock()
					lat = append(lat, time.Since(t0))
					lmu.Unlock()
				}
			})
		}
		wg.Wait()
		total := time.Since(start)
		_ = w.Stop()
		cancel()
		a.Close()
		slices.Sort(lat)
		b.ReportMetric(float64(len(lat))/total.Seconds(), "ops/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50:ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99:ms")
	}
}

// BenchmarkAMQPOpenLoop offers adds at a fixed rate through Artemis to a confirming target system
// until each is live, and, in the same run, through the sample target (the same path without the
// broker): at 1,000/s it compares the add->live p99s (live_p99_vs_sample), at 3,000/s the rates
// each sustains (ratio: AMQP / sample).
func BenchmarkAMQPOpenLoop(b *testing.B) {
	for _, rate := range []int{1000, 3000} {
		b.Run(fmt.Sprint(rate, "/s"), func(b *testing.B) {
			for range b.N {
				br := amqptest.Artemis(b)
				sample := runOpenLoop(b, rate, 5*time.Second, func(b *testing.B, nc *nats.Conn) func() {
					a, err := app.Start(context.Background(), nc, app.DefaultConfig(), app.Options{}, nil)
					if err != nil {
						b.Fatal(err)
					}
					return a.Close
				})
				viaAMQP := runOpenLoop(b, rate, 5*time.Second, func(b *testing.B, nc *nats.Conn) func() {
					req, conf := br.Queue(b, "ol-requests"), br.Queue(b, "ol-confirmations")
					ctx, cancel := context.WithCancel(context.Background())
					pipelinedTarget(ctx, b, br, req, conf)
					a, err := app.Start(ctx, nc, amqpDemoConfig(b, br.URL, req, conf), app.Options{}, nil)
					if err != nil {
						b.Fatal(err)
					}
					return func() { a.Close(); cancel() }
				})
				viaAMQP.report(b, "amqp_")
				sample.report(b, "sample_")
				b.ReportMetric(viaAMQP.achieved/sample.achieved, "ratio")
				b.ReportMetric(viaAMQP.liveP99/sample.liveP99, "live_p99_vs_sample")
				bare := brokerRoundTrips(b, br, rate, 5*time.Second)
				b.ReportMetric(bare, "broker_round_trip_p99:ms")
			}
		})
	}
}

// brokerRoundTrips is the broker's share of the AMQP path's latency, with no shadowbridge code: at
// rate for d, a durable request to Artemis, the same pipelined target, its durable confirmation
// back on another queue, received by a bare go-amqp receiver. It returns the round trip's p99.
func brokerRoundTrips(b *testing.B, br amqptest.Broker, rate int, d time.Duration) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, conf := br.Queue(b, "rt-requests"), br.Queue(b, "rt-confirmations")
	pipelinedTarget(ctx, b, br, req, conf)
	snd, rcv := br.Sender(b, req), br.Receiver(b, conf)
	n := rate * int(d/time.Second)
	sentAt := make([]time.Time, n)
	var mu sync.Mutex
	go func() {
		begin := time.Now()
		for i := range n {
			if wait := time.Until(begin.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
				time.Sleep(wait)
			}
			mu.Lock()
			sentAt[i] = time.Now()
			mu.Unlock()
			m := &amqp.Message{Header: &amqp.MessageHeader{Durable: true}, Properties: &amqp.MessageProperties{MessageID: fmt.Sprint(i)},
				ApplicationProperties: map[string]any{"shadowId": fmt.Sprintf("%08d-rt", i)}, Value: `{"operation":"add"}`}
			if _, err := snd.SendWithReceipt(ctx, m, nil); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	var lat []time.Duration
	for range n {
		m, err := rcv.Receive(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		var i int
		_, _ = fmt.Sscan(fmt.Sprint(m.Properties.CorrelationID), &i)
		mu.Lock()
		lat = append(lat, time.Since(sentAt[i]))
		mu.Unlock()
		_ = rcv.AcceptMessage(ctx, m)
	}
	slices.Sort(lat)
	return float64(lat[len(lat)*99/100].Microseconds()) / 1000
}

// amqpDemoConfig is the default configuration with resource demo on an AMQP target that
// confirms on confirmations.
func amqpDemoConfig(b testing.TB, url, requests, confirmations string) app.Config {
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: demo
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp: {url: %q, address: %q, confirmationAddress: %q}}
    operationExecutionConfirmation: true
`, url, requests, confirmations))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// pipelinedTarget is a target system that is not the bottleneck: it takes requests with a credit
// of 1,000 and confirms them from 16 workers (each send waits for the broker's settlement), adds
// with a uid.
func pipelinedTarget(ctx context.Context, b testing.TB, br amqptest.Broker, requests, confirmations string) {
	r, s := br.Receiver(b, requests), br.Sender(b, confirmations) // credit 1,000; anycast queues
	work := make(chan *amqp.Message, 1000)
	go func() {
		defer close(work)
		for {
			m, err := r.Receive(ctx, nil)
			if err != nil {
				return
			}
			work <- m
		}
	}()
	for range 16 {
		go func() {
			for m := range work {
				body := `{"resultStatus":"success","message":"done"}`
				if bytes.Contains([]byte(m.Value.(string)), []byte(`"operation":"add"`)) {
					body = fmt.Sprintf(`{"resultStatus":"success","primaryIdentifiers":{"uid":["u-%s"]}}`, m.ApplicationProperties["shadowId"].(string)[:8])
				}
				if s.Send(ctx, &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: m.Properties.MessageID}, Value: body}, nil) != nil {
					return
				}
				_ = r.AcceptMessage(ctx, m)
			}
		}()
	}
}
