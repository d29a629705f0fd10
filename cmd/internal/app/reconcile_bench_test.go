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
)

// BenchmarkReconciliation reconciles SHADOWBRIDGE_BENCH_RECON_ACCOUNTS accounts (default 20,000;
// the figure is 100,000) through Artemis: a target lists them in pages of 500 on the
// confirmation address. The baseline, in the same run, is a raw pass over the same pages: a
// go-amqp receiver takes each page from a queue and reads each account's projection entry (one
// KV get), 16 at a time as ours observes them. Reported: accounts/s of each, their ratio, and the
// heap's growth during the run against one page's size (memory must not grow with the run).
func BenchmarkReconciliation(b *testing.B) {
	n := envInt("SHADOWBRIDGE_BENCH_RECON_ACCOUNTS", 20000)
	br := amqptest.Artemis(b)
	requests, confirmations, raw := br.Queue(b, "b-requests"), br.Queue(b, "b-confirmations"), br.Queue(b, "b-raw")
	e := start(b, amqpConfig(b, br.URL, requests, confirmations, true), app.Options{})
	ctx := b.Context()
	res := e.app.Service.Catalog()["fs"]
	// n live shadows with their uids, as discovered accounts (no traffic to the target).
	pages := make([][]map[string]any, 0, n/500+1)
	var page []map[string]any
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
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
		mu.Lock()
		page = append(page, map[string]any{"primaryIdentifiers": map[string][]any{"uid": {uid}}, "attributes": map[string][]any{"login": {login}}})
		if len(page) == 500 {
			pages = append(pages, page)
			page = nil
		}
		mu.Unlock()
	}
	wg.Wait()
	if len(page) > 0 {
		pages = append(pages, page)
	}
	waitFor(b, "the projection", 5*time.Minute, func() bool {
		st, err := e.kv.Status(ctx)
		return err == nil && st.Values() >= uint64(n)
	})
	snd := br.Sender(b, confirmations)
	rawSnd := br.Sender(b, raw)
	send := func(s *amqp.Sender, run string, k int) {
		body, _ := json.Marshal(map[string]any{"reconciliationId": run, "page": k + 1, "last": k == len(pages)-1, "accounts": pages[k]})
		if err := s.Send(ctx, &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: run}, Value: string(body)}, nil); err != nil {
			b.Fatal(err)
		}
	}

	// The raw pass: the same pages through Artemis, each account's projection entry read.
	rawStart := time.Now()
	go func() {
		for k := range pages {
			send(rawSnd, "raw", k)
		}
	}()
	rcv := br.Receiver(b, raw)
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
	rawRate := float64(n) / time.Since(rawStart).Seconds()

	// Ours: a run whose pages the "target" sends at once.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak uint64
	stop := make(chan struct{})
	go func() {
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	out, err := e.app.Service.Reconcile(ctx, "fs", "")
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
		r, err := e.app.Service.ResourceState(ctx, "fs")
		done = r.Reconciliation
		return err == nil && done != nil && done.ID == out.ReconciliationID && done.State != domain.RunRunning
	})
	ours := float64(n) / time.Since(start).Seconds()
	close(stop)
	if done.State != domain.RunFinished || done.Counts.Accounts != n || done.Counts.Unchanged != n {
		b.Fatalf("run %+v", done)
	}
	b.ReportMetric(ours, "accounts/s")
	b.ReportMetric(rawRate, "raw:accounts/s")
	b.ReportMetric(ours/rawRate, "ratio")
	b.ReportMetric(float64(peak-min(peak, before.HeapAlloc))/(1<<20), "heap_growth:MiB")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
