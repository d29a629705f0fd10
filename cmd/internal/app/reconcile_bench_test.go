package app_test

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
)

// BenchmarkReconciliation reconciles SHADOWBRIDGE_BENCH_RECON_ACCOUNTS accounts (default 20,000;
// the figure is 100,000) through Artemis: a target lists them in pages of 500 on the
// confirmation address, all pages at once. The baseline, in the same run, is a raw pass over the
// same pages: a go-amqp receiver takes each page from a queue and reads each account's index
// entry (one KV get, the lookup that finds its shadow), 16 at a time. Reported: accounts/s of
// each and their ratio (a first run of ours); then the live heap's growth through a second,
// identical run, sampled twice a second, against one page's size (it must not grow with the
// number of accounts). NATS runs in a process of its own, so the heap is shadowbridge's alone.
func BenchmarkReconciliation(b *testing.B) {
	n := envInt("SHADOWBRIDGE_BENCH_RECON_ACCOUNTS", 20000)
	br := amqptest.Artemis(b)
	requests, confirmations, raw := br.Queue(b, "b-requests"), br.Queue(b, "b-confirmations"), br.Queue(b, "b-raw")
	e := startConn(b, natstest.StartProcess(b).Connect(b), amqpConfig(b, br.URL, requests, confirmations, true), app.Options{})
	pages := benchShadows(b, e, n)
	send := func(s *amqp.Sender, run string, k int) {
		body := fmt.Appendf(nil, `{"reconciliationId":%q,"page":%d,"last":%t,"accounts":%s}`, run, k+1, k == len(pages)-1, pages[k])
		if err := s.Send(b.Context(), &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: run}, Value: string(body)}, nil); err != nil {
			b.Error(err)
		}
	}
	rawRate := rawReconciliation(b, e, br, raw, len(pages), n, func(k int, s *amqp.Sender) { send(s, "raw", k) })

	snd := br.Sender(b, confirmations)
	run := func() float64 {
		start := time.Now()
		out, err := e.app.Service.Reconcile(b.Context(), "fs", "")
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for k := range pages {
				send(snd, out.ReconciliationID, k)
			}
		}()
		var done *domain.ReconciliationRun
		waitFor(b, "the run", 30*time.Minute, func() bool {
			r, err := e.app.Service.ResourceState(b.Context(), "fs")
			done = r.Reconciliation
			return err == nil && done != nil && done.ID == out.ReconciliationID && done.State != domain.RunRunning
		})
		if done.State != domain.RunFinished || done.Counts.Accounts != n || done.Counts.Unchanged != n {
			b.Fatalf("run %+v", done)
		}
		return float64(n) / time.Since(start).Seconds()
	}
	ours := run()

	growth := heapGrowthDuring(run)
	b.ReportMetric(ours, "accounts/s")
	b.ReportMetric(rawRate, "raw:accounts/s")
	b.ReportMetric(ours/rawRate, "ratio")
	b.ReportMetric(float64(growth)/(1<<20), "live_heap_growth:MiB")
	b.ReportMetric(float64(len(pages[0]))/(1<<10), "page:KiB")
}

// benchShadows stores n live shadows of resource fs with their uids (discovered accounts: no
// traffic to the target) and returns the target's listing of them: each page's accounts, as JSON.
func benchShadows(b *testing.B, e *env, n int) [][]byte {
	ctx := b.Context()
	res := e.app.Service.Catalog()["fs"]
	var pages [][]byte
	var page []map[string]any
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		id, uid, login := newID(), fmt.Sprint("u-b", i), fmt.Sprint("bench", i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := e.app.Store.Update(ctx, eventstore.UpdateOptions{Resource: "fs", ShadowID: id, Known: &eventstore.Known{},
				Decide: func(st domain.Shadow) ([]domain.Event, error) {
					return domain.Decide(st, domain.Discover{Resource: res, ShadowID: id, ObjectClass: "AccountObjectClass",
						Attributes: domain.Attributes{"login": {login}}, PrimaryIdentifiers: domain.Attributes{"uid": {uid}}}, time.Now())
				}}); err != nil {
				b.Error(err)
			}
		})
		page = append(page, map[string]any{"primaryIdentifiers": map[string][]any{"uid": {uid}}, "attributes": map[string][]any{"login": {login}}})
		if len(page) == 500 || i == n-1 {
			body, _ := json.Marshal(page)
			pages, page = append(pages, body), nil
		}
	}
	wg.Wait()
	waitFor(b, "the projection", 5*time.Minute, func() bool {
		st, err := e.kv.Status(ctx)
		return err == nil && st.Values() >= uint64(n)
	})
	return pages
}

// rawReconciliation is the baseline: the same pages through a queue of Artemis, each account's
// index entry read, 16 at a time. It returns accounts/s.
func rawReconciliation(b *testing.B, e *env, br amqptest.Broker, queue string, pages, n int, send func(k int, s *amqp.Sender)) float64 {
	ctx := b.Context()
	rawSnd := br.Sender(b, queue)
	start := time.Now()
	go func() {
		for k := range pages {
			send(k, rawSnd)
		}
	}()
	rcv := br.Receiver(b, queue)
	for range pages {
		m, err := rcv.Receive(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		var p struct {
			Accounts []struct{ PrimaryIdentifiers map[string][]any }
		}
		_ = json.Unmarshal([]byte(m.Value.(string)), &p)
		var pw sync.WaitGroup
		psem := make(chan struct{}, 16)
		for _, a := range p.Accounts {
			psem <- struct{}{}
			pw.Go(func() {
				defer func() { <-psem }()
				_, _ = e.app.Service.Resolve(ctx, "fs", "AccountObjectClass", domain.Attributes{"uid": a.PrimaryIdentifiers["uid"]})
			})
		}
		pw.Wait()
		_ = rcv.AcceptMessage(ctx, m)
	}
	return float64(n) / time.Since(start).Seconds()
}

// heapGrowthDuring runs fn while it samples the live heap twice a second, and returns the
// largest growth over the live heap before fn.
func heapGrowthDuring(fn func() float64) uint64 {
	before := liveHeap()
	var peak uint64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			peak = max(peak, liveHeap())
		}
	}()
	fn()
	close(stop)
	<-sampled
	return peak - min(peak, before)
}

// liveHeap is the heap live now: two forced collections (what is allocated while the first one
// marks counts as live until the second), then its size.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
