package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/eventstore/natstest"
)

// BenchmarkEndToEndOpenLoop offers adds at a fixed rate (many in flight, not waiting clients)
// through the sample target until each is live in the projection: at 1,000/s it reports the
// reply and add->live latencies; at 5,000/s the rate it sustains. The ceiling is the raw
// pipelined JetStream publish rate measured in the same run, divided by 3 (an add needs at least
// its decision, its outcome and its projection durably written): ratio e2e_vs_ceiling.
func BenchmarkEndToEndOpenLoop(b *testing.B) {
	for _, rate := range []int{1000, 5000} {
		b.Run(fmt.Sprint(rate, "/s"), func(b *testing.B) {
			for range b.N {
				openLoop(b, rate, 5*time.Second)
			}
		})
	}
}

// BenchmarkEndToEndFloor drives the floor (see floor: the same path made of bare NATS and
// JetStream calls, no shadowbridge code), bare and with what shadowbridge's guarantees need,
// exactly as BenchmarkEndToEndOpenLoop drives the service at 5,000 adds/s offered: what two
// cores can carry at all for an add that is decided, sent, confirmed and projected durably.
func BenchmarkEndToEndFloor(b *testing.B) {
	for _, c := range []struct {
		guarantees bool
		rate       int
	}{{false, 5000}, {true, 1000}, {true, 5000}} {
		name := fmt.Sprint(map[bool]string{false: "bare", true: "guarantees"}[c.guarantees], "/", c.rate, "/s")
		b.Run(name, func(b *testing.B) {
			for range b.N {
				openLoopOn(b, c.rate, 5*time.Second, func(b *testing.B, nc *nats.Conn) func() { return floor(b, nc, c.guarantees) })
			}
		})
	}
}

func openLoop(b *testing.B, rate int, d time.Duration) {
	openLoopOn(b, rate, d, func(b *testing.B, nc *nats.Conn) func() {
		a, err := app.Start(context.Background(), nc, app.DefaultConfig(), app.Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return a.Close
	})
}

// openLoopOn offers adds at rate for d to the system start starts (it answers prov.cmd.demo.add
// with {"shadowId"} and writes demo.<shadowId> into KV PROV_SHADOWS, "lifecycleState":"live"
// once the add is done) and reports what it sustains, its latencies and its cost per add.
func openLoopOn(b *testing.B, rate int, d time.Duration, start func(*testing.B, *nats.Conn) (stop func())) {
	r := runOpenLoop(b, rate, d, start)
	r.report(b, "")
	b.ReportMetric(r.ceiling, "ceiling:ops/s")
	b.ReportMetric(r.achieved/r.ceiling, "ratio")
}

// loopResult is what an open-loop run measured.
type loopResult struct {
	offered, achieved, ceiling                  float64
	replyP50, replyP99, liveP50, liveP99, cpuMs float64
	natsIn, natsOut                             float64
}

// report reports r's figures, each unit prefixed with prefix ("amqp_", say).
func (r loopResult) report(b *testing.B, prefix string) {
	b.ReportMetric(r.offered, prefix+"offered:ops/s")
	b.ReportMetric(r.achieved, prefix+"ops/s")
	b.ReportMetric(r.replyP50, prefix+"reply_p50:ms")
	b.ReportMetric(r.replyP99, prefix+"reply_p99:ms")
	b.ReportMetric(r.liveP50, prefix+"live_p50:ms")
	b.ReportMetric(r.liveP99, prefix+"live_p99:ms")
	b.ReportMetric(r.cpuMs, prefix+"cpu_ms/add")
	// Messages through the NATS server per add (requests, replies, publishes, deliveries, acks):
	// what the CPU per add is mostly made of.
	b.ReportMetric(r.natsIn, prefix+"nats_in/add")
	b.ReportMetric(r.natsOut, prefix+"nats_out/add")
}

// runOpenLoop is openLoopOn's run, its figures returned.
func runOpenLoop(b *testing.B, rate int, d time.Duration, start func(*testing.B, *nats.Conn) (stop func())) loopResult {
	srv := natstest.Start(b)
	nc := srv.Connect(b)
	ctx := context.Background()
	ceiling := rawPipelined(b, nc) / 3
	defer start(b, nc)()
	js, _ := jetstream.New(nc)
	w := watchProjection(b, js)
	defer func() { _ = w.Stop() }()
	n := rate * int(d/time.Second)
	var mu sync.Mutex
	live := map[string]time.Time{}
	go func() {
		// Live is found without decoding the shadow: the key names it and the state is one
		// field. A full decode here cost a tenth of the run's CPU, taken from the service.
		liveState := []byte(`"lifecycleState":"live"`)
		for e := range w.Updates() {
			if e == nil || !bytes.Contains(e.Value(), liveState) {
				continue
			}
			id := e.Key()[strings.IndexByte(e.Key(), '.')+1:]
			mu.Lock()
			if _, ok := live[id]; !ok {
				live[id] = time.Now()
			}
			mu.Unlock()
		}
	}()
	type sent struct {
		id      string
		at      time.Time
		replied time.Duration
	}
	results := make([]sent, n)
	var wg sync.WaitGroup
	cpu0 := processCPU()
	v0, _ := srv.Varz(nil)
	begin := time.Now()
	for i := range n {
		if wait := time.Until(begin.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		wg.Go(func() {
			t0 := time.Now()
			m, err := nc.RequestWithContext(ctx, "prov.cmd.demo.add",
				fmt.Appendf(nil, `{"objectClass":"AccountObjectClass","attributes":{"login":["o%d"]}}`, i))
			if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
				b.Errorf("add %d: %v %v", i, err, m)
				return
			}
			var r struct{ ShadowID string }
			_ = json.Unmarshal(m.Data, &r)
			results[i] = sent{id: r.ShadowID, at: t0, replied: time.Since(t0)}
		})
	}
	wg.Wait()
	// Wait until every add is live, checking each once (the check must not compete with the
	// service for the CPU).
	deadline := time.Now().Add(liveDeadline)
	for k := 0; k < len(results); {
		mu.Lock()
		for k < len(results) {
			if _, ok := live[results[k].id]; !ok {
				break
			}
			k++
		}
		mu.Unlock()
		if time.Now().After(deadline) {
			b.Fatalf("not every add became live: %d of %d (the first not: %s)", k, len(results), results[k].id)
		}
		if k < len(results) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var last time.Time
	mu.Lock()
	for _, r := range results {
		if t := live[r.id]; t.After(last) {
			last = t
		}
	}
	mu.Unlock()
	var reply, toLive []time.Duration
	mu.Lock()
	for _, r := range results {
		reply = append(reply, r.replied)
		toLive = append(toLive, live[r.id].Sub(r.at))
	}
	mu.Unlock()
	slices.Sort(reply)
	slices.Sort(toLive)
	pct := func(s []time.Duration, p int) float64 { return float64(s[len(s)*p/100].Microseconds()) / 1000 }
	achieved := float64(n) / last.Sub(begin).Seconds()
	// CPU per add: the service, the NATS server and the sample target share this process (and
	// the client's requests); steadier than latency as a guide to what a change saves.
	cpuPerAdd := (processCPU() - cpu0).Seconds() * 1000 / float64(n)
	v1, _ := srv.Varz(nil)
	return loopResult{offered: float64(rate), achieved: achieved, ceiling: ceiling,
		replyP50: pct(reply, 50), replyP99: pct(reply, 99), liveP50: pct(toLive, 50), liveP99: pct(toLive, 99), cpuMs: cpuPerAdd,
		natsIn: float64(v1.InMsgs-v0.InMsgs) / float64(n), natsOut: float64(v1.OutMsgs-v0.OutMsgs) / float64(n)}
}

// liveDeadline bounds the wait for the last add of an open-loop run to be live.
var liveDeadline = 5 * time.Minute

// rawPipelined measures raw JetStream: 20,000 publishes of 1 KB with the expected subject
// sequence, 1,024 in flight, on a stream of their own.
// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rawPipelined(b *testing.B, nc *nats.Conn) float64 {
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(ctx, "RAW") }()
	data := make([]byte, 1024)
	const n = 20000
	start := time.Now()
	for i := range n {
		m := nats.NewMsg(fmt.Sprint("raw.", i))
		m.Data = data
		if _, err := js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	return n / time.Since(start).Seconds()
}
