package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// BenchmarkEndToEndAdd: adds over NATS through the dispatcher and the sample target system, until
// the projection shows each shadow live with its uid. Closed loop: each of the clients waits for
// its shadow to be live (seen in a KV watch, as a dashboard would) before its next add, so the
// latency is the pipeline's, not a queue's.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func BenchmarkEndToEndAdd(b *testing.B) {
	const n, clients = 4000, 32
	for range b.N {
		srv := natstest.Start(b)
		nc := srv.Connect(b)
		ctx := context.Background()
		a, err := app.Start(ctx, nc, app.DefaultConfig(), app.Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		w := watchProjection(b, js)
		var mu sync.Mutex
		sent := map[string]time.Time{}
		liveAt := map[string]time.Time{}
		waiting := map[string]chan struct{}{}
		done := make(chan struct{})
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
				if _, ok := liveAt[d.ShadowID]; !ok {
					liveAt[d.ShadowID] = time.Now()
					if ch, ok := waiting[d.ShadowID]; ok {
						close(ch)
					} else {
						waiting[d.ShadowID] = closedCh
					}
					if len(liveAt) == n {
						close(done)
					}
				}
				mu.Unlock()
			}
		}()
		writesBefore := streamWrites(b, js)
		start := time.Now()
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for i := c; i < n; i += clients {
					body := fmt.Sprintf(`{"objectClass":"AccountObjectClass","attributes":{"login":["u%d"],"fullName":["User %d"]}}`, i, i)
					t0 := time.Now()
					m, err := nc.Request("prov.cmd.demo.add", []byte(body), 30*time.Second)
					if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
						b.Errorf("add %d: %v", i, err)
						return
					}
					var r struct{ ShadowID string }
					_ = json.Unmarshal(m.Data, &r)
					mu.Lock()
					sent[r.ShadowID] = t0
					ch, ok := waiting[r.ShadowID]
					if !ok {
						ch = make(chan struct{})
						waiting[r.ShadowID] = ch
					}
					mu.Unlock()
					select {
					case <-ch:
					case <-time.After(time.Minute):
						b.Errorf("shadow %s never live", r.ShadowID)
						return
					}
				}
			})
		}
		wg.Wait()
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d live", len(liveAt), n)
		}
		total := time.Since(start)
		_ = w.Stop()
		var lat []time.Duration
		mu.Lock()
		for id, t0 := range sent {
			lat = append(lat, liveAt[id].Sub(t0))
		}
		mu.Unlock()
		slices.Sort(lat)
		b.ReportMetric(float64(n)/total.Seconds(), "ops/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50:ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99:ms")
		writesAfter := streamWrites(b, js)
		var all uint64
		for name, w := range writesAfter {
			d := w - writesBefore[name]
			all += d
			b.Logf("JetStream writes per completed add, stream %s: %.2f", name, float64(d)/n)
		}
		b.ReportMetric(float64(all)/n, "writes/add")
		a.Close()
	}
}

// streamWrites returns every stream's last sequence: the messages written to it so far (KV
// puts, deletes and purges included).
func streamWrites(b *testing.B, js jetstream.JetStream) map[string]uint64 {
	out := map[string]uint64{}
	names := js.StreamNames(context.Background())
	for name := range names.Name() {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			b.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		out[name] = info.State.LastSeq
	}
	return out
}

// watchProjection watches the shadow projection's updates, as a dashboard would.
func watchProjection(b *testing.B, js jetstream.JetStream) jetstream.KeyWatcher {
	kv, err := js.KeyValue(context.Background(), "PROV_SHADOWS")
	if err != nil {
		b.Fatal(err)
	}
	w, err := kv.WatchAll(context.Background(), jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	return w
}
