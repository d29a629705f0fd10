package app_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// projectionCounter counts the shadows of a set whose projected JSON contains a marker, as
// the projection changes (what a dashboard sees).
type projectionCounter struct {
	mu     sync.Mutex
	marker []byte
	want   map[string]bool // shadow id -> already counted
	n      int
	done   chan struct{}
}

func (c *projectionCounter) expect(ids []string, marker string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marker, c.want, c.n, c.done = []byte(marker), map[string]bool{}, 0, make(chan struct{})
	for _, id := range ids {
		c.want[id] = false
	}
}

func (c *projectionCounter) see(key string, v []byte) {
	_, id, _ := strings.Cut(key, ".")
	c.mu.Lock()
	defer c.mu.Unlock()
	if counted, ok := c.want[id]; !ok || counted || !bytes.Contains(v, c.marker) {
		return
	}
	c.want[id] = true
	if c.n++; c.n == len(c.want) {
		close(c.done)
	}
}

func (c *projectionCounter) wait(b *testing.B, what string, d time.Duration) {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
	case <-time.After(d):
		c.mu.Lock()
		defer c.mu.Unlock()
		b.Fatalf("%s: %d of %d after %s", what, c.n, len(c.want), d)
	}
}

// BenchmarkRecoveryDrain: 10,000 adds with the broker up (steady state: add -> broker -> live),
// then 10,000 adds while the broker is unreachable (each postponed as a retry, due in an hour),
// then the broker returns: time until all of them are live (the probe notices, retryOnRecovery
// releases them, the dispatcher sends them), compared with the steady-state rate of the same run.
func BenchmarkRecoveryDrain(b *testing.B) {
	const n, clients = 10000, 32
	for range b.N {
		br := amqptest.Start(b)
		q := br.Queue(b, "bench-recovery")
		proxy := amqptest.NewProxy(b, br.HostPort())
		url := br.Via(proxy)
		cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: {url: %q, address: %q, maxBackoff: 1s}}
    consistency: {operationRetryPeriod: 1h}
`, url, q))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv := natstest.Start(b)
		nc := srv.Connect(b)
		a, err := app.Start(ctx, nc, cfg, app.Options{SweepInterval: -1}, nil)
		if err != nil {
			b.Fatal(err)
		}
		// Drain the broker's queue so that it does not grow for the whole run.
		go func() {
			r := br.Receiver(b, q)
			for {
				m, err := r.Receive(ctx, nil)
				if err != nil {
					return
				}
				_ = r.AcceptMessage(ctx, m)
			}
		}()
		js, _ := jetstream.New(nc)
		kv, _ := js.KeyValue(ctx, "PROV_SHADOWS")
		w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			b.Fatal(err)
		}
		counter := &projectionCounter{}
		go func() {
			for e := range w.Updates() {
				if e != nil {
					counter.see(e.Key(), e.Value())
				}
			}
		}()
		provision := func(prefix string) []string {
			ids := make([]string, n)
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for i := c; i < n; i += clients {
						r, err := a.Service.Provision(ctx, service.Request{Verb: "add", Resource: "fs", ObjectClass: "AccountObjectClass",
							Attributes: domain.Attributes{"login": {fmt.Sprint(prefix, i)}}})
						if err != nil {
							b.Error(err)
							return
						}
						ids[i] = r.ShadowID
					}
				})
			}
			wg.Wait()
			return ids
		}

		// Steady state: the ids are known only once added, so count every shadow that turns live.
		start := time.Now()
		ids := provision("steady")
		counter.expect(ids, `"lifecycleState":"live"`)
		// Updates that arrived before expect() are replayed from the bucket's current values.
		for _, id := range ids {
			if e, err := kv.Get(ctx, "fs."+id); err == nil {
				counter.see(e.Key(), e.Value())
			}
		}
		counter.wait(b, "steady state: live", 5*time.Minute)
		steady := n / time.Since(start).Seconds()

		// Outage: every add is attempted once, fails, and waits an hour for its retry.
		proxy.Cut()
		ids = provision("outage")
		counter.expect(ids, `"type":"retry"`)
		for _, id := range ids {
			if e, err := kv.Get(ctx, "fs."+id); err == nil {
				counter.see(e.Key(), e.Value())
			}
		}
		counter.wait(b, "outage: postponed", 5*time.Minute)
		counter.expect(ids, `"lifecycleState":"live"`)

		// Recovery: nothing but the broker coming back.
		start = time.Now()
		proxy.Restore()
		counter.wait(b, "recovery: live", 10*time.Minute)
		drain := time.Since(start)
		for _, id := range ids[:100] { // spot check, outside the measurement: attempt 2, counted
			st, _, err := a.Store.Load(ctx, "fs", id)
			if err != nil || st.Data().PendingOperations[0].AttemptNumber != 2 {
				b.Fatalf("shadow %s after recovery: %+v %v", id, st.Data().PendingOperations, err)
			}
		}
		cancel()
		a.Close()
		b.ReportMetric(drain.Seconds(), "drain:s")
		b.ReportMetric(n/drain.Seconds(), "drain:ops/s")
		b.ReportMetric(steady, "steady:ops/s")
		b.ReportMetric(n/drain.Seconds()/steady, "ratio")
	}
}
