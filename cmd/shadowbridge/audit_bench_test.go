package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

func benchLog(b *testing.B, shadows, per int) (*eventstore.Store, []string) {
	store, ids, _ := benchLogURL(b, shadows, per)
	return store, ids
}

func benchLogURL(b *testing.B, shadows, per int) (*eventstore.Store, []string, string) {
	srv := natstest.Start(b)
	store, err := eventstore.Open(context.Background(), srv.Connect(b), eventstore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ids, err := storetest.Populate(context.Background(), store, storetest.Resource(b), shadows, per)
	if err != nil {
		b.Fatal(err)
	}
	return store, ids, srv.ClientURL()
}

// BenchmarkAudit: `audit --json` over 1,000,000 records (10,000 shadows x 100) to a discarding
// writer, vs a raw ordered-consumer replay of the same stream; the Go heap is sampled during the
// audit to show that memory stays constant.
func BenchmarkAudit(b *testing.B) {
	shadows, per := 10000, 100
	if v, err := strconv.Atoi(os.Getenv("SHADOWBRIDGE_BENCH_AUDIT_PER")); err == nil && v > 0 {
		per = v // a smaller log, to compare memory across sizes
	}
	for range b.N {
		store, _, url := benchLogURL(b, shadows, per)
		ctx := context.Background()
		// The real CLI in its own process: its peak RSS is the audit's memory, apart from the
		// NATS server's (embedded in this process).
		bin := filepath.Join(b.TempDir(), "shadowbridge")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("build: %v\n%s", err, out)
		}
		cli := exec.Command(bin, "audit", "--json", "--server", url)
		cli.Stdout = io.Discard
		cli.Env = append(os.Environ(), "GODEBUG=gctrace=1") // its heap, collection by collection, on stderr
		var cliErr strings.Builder
		cli.Stderr = &cliErr
		cliStart := time.Now()
		if err := cli.Start(); err != nil {
			b.Fatal(err)
		}
		// The CLI's peak RSS is its VmHWM, sampled until it exits. Not the rusage maxrss: Go
		// starts a child with vfork, and at exec Linux records the old address space's high
		// water mark, which is this benchmark's (the NATS server with the whole log), so
		// rusage reported 360 MiB for 1M records and 105 MiB for 100k from the parent's size.
		var hwm atomic.Int64
		exited, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				if kb := vmHWM(cli.Process.Pid); kb > hwm.Load() {
					hwm.Store(kb)
				}
				select {
				case <-exited:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		err := cli.Wait()
		cliRate := float64(shadows*per) / time.Since(cliStart).Seconds()
		close(exited)
		<-sampled
		if err != nil {
			b.Fatalf("audit: %v %s", err, cliErr.String())
		}
		cliHeap := 0
		for _, m := range gcHeap.FindAllStringSubmatch(cliErr.String(), -1) {
			mb, _ := strconv.Atoi(m[1])
			cliHeap = max(cliHeap, mb)
		}
		cliRSS := float64(hwm.Load()) / 1024
		rawCPU0 := processCPU()
		start := time.Now()
		cons, err := store.JetStream().OrderedConsumer(ctx, "PROV_EVENTS", jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(5000))
		if err != nil {
			b.Fatal(err)
		}
		for range shadows * per {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
		it.Stop()
		raw := float64(shadows*per) / time.Since(start).Seconds()
		rawCores := (processCPU() - rawCPU0).Seconds() / time.Since(start).Seconds()

		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		var peak atomic.Uint64
		sctx, stop := context.WithCancel(ctx)
		go func() {
			// The live heap (after a collection) every 2 s: garbage not yet collected is not memory
			// the audit holds.
			for sctx.Err() == nil {
				time.Sleep(2 * time.Second)
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peak.Load() {
					peak.Store(ms.HeapAlloc)
				}
			}
		}()
		cw := &countingWriter{}
		cpu0 := processCPU()
		start = time.Now()
		if err := streamEvents(ctx, store, eventstore.ScanOptions{}, auditFilter{}, true, false, cw, io.Discard); err != nil {
			b.Fatal(err)
		}
		ours := float64(shadows*per) / time.Since(start).Seconds()
		cores := (processCPU() - cpu0).Seconds() / time.Since(start).Seconds()
		stop()
		if cw.lines < shadows*per {
			b.Fatalf("%d JSON lines for %d records", cw.lines, shadows*per)
		}
		b.ReportMetric(float64(shadows*per), "records:n")
		b.ReportMetric(cliRSS, "cli_max_rss:MiB")
		b.ReportMetric(float64(cliHeap), "cli_peak_heap:MB")
		b.ReportMetric(raw, "raw:records/s")
		b.ReportMetric(ours, "records/s")
		b.ReportMetric(ours/raw, "ratio")
		b.ReportMetric(cliRate, "cli:records/s") // the real CLI, its start and connection included
		b.ReportMetric(cliRate/raw, "cli_ratio")
		b.ReportMetric(cores, "audit_cpu:cores") // the audit and the NATS server it reads from
		b.ReportMetric(rawCores, "raw_cpu:cores")
		b.ReportMetric(float64(cw.lines), "events:n")
		b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/(1<<20), "live_heap_growth:MiB")
	}
}

// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM returns a process's peak resident set size in kB (0 once it is gone).
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// gcHeap matches the heap size at the end of a collection in a gctrace line ("12->14->11 MB").
var gcHeap = regexp.MustCompile(`\d+->(\d+)->\d+ MB`)

type countingWriter struct{ lines int }

func (c *countingWriter) Write(p []byte) (int, error) {
	for _, x := range p {
		if x == '\n' {
			c.lines++
		}
	}
	return len(p), nil
}

// rawReplay reads a subject's messages with an ordered consumer, decoding nothing.
func rawReplay(b *testing.B, store *eventstore.Store, subject string) int {
	ctx := context.Background()
	cons, err := store.JetStream().OrderedConsumer(ctx, store.Config().Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(5000))
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
		if md, _ := m.Metadata(); md.NumPending == 0 {
			return n
		}
	}
}

// BenchmarkAsOf: `get --as-of` for a shadow with 1,000 commits among 10,000 (10 shadows x 1,000,
// each commit decided a moment before it is stored, as in a live log), at random moments of its
// life, vs the raw replay of its 1,000 messages (what a query that folds or scans must read): an
// ordered consumer on the shadow's subject, nothing decoded. Every answer is checked against the
// commit the time names.
func BenchmarkAsOf(b *testing.B) {
	const shadows, per, queries = 10, 1000, 200
	for range b.N {
		srv := natstest.Start(b)
		store, err := eventstore.Open(context.Background(), srv.Connect(b), eventstore.DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		res := storetest.Resource(b)
		ids, err := storetest.PopulateTimed(ctx, store, res, shadows, per)
		if err != nil {
			b.Fatal(err)
		}
		svc := service.New(store, nil, domain.Catalog{res.Name(): res}, nil)
		recs, err := store.History(ctx, ids[3])
		if err != nil || len(recs) != per {
			b.Fatalf("%d records: %v", len(recs), err)
		}
		decided := make([]time.Time, per)
		for i, r := range recs {
			if decided[i], err = r.DecisionTime(); err != nil {
				b.Fatal(err)
			}
		}
		var ours, raw []time.Duration
		for i := range queries {
			// Mostly a commit's own time or a moment around it; the first and last queries fall
			// before the shadow existed and after its last commit.
			k := rand.IntN(per)
			at := decided[k].Add(time.Duration(rand.IntN(200)-100) * time.Microsecond)
			switch i {
			case 0:
				at = decided[0].Add(-time.Second)
			case queries - 1:
				at = decided[per-1].Add(time.Second)
			}
			want := -1
			for j, d := range decided {
				if d.After(at) {
					break
				}
				want = j
			}
			s := time.Now()
			got, err := svc.Shadow(ctx, ids[3], at)
			ours = append(ours, time.Since(s))
			switch {
			case want < 0 && err == nil:
				b.Fatalf("as of %s: a shadow, want none", at)
			case want >= 0 && err != nil:
				b.Fatal(err)
			case want >= 0 && fmt.Sprint(got.Attributes["round"]) != fmt.Sprint([]any{int64(want)}):
				b.Fatalf("as of %s: round %v, want %d", at, got.Attributes["round"], want)
			}
			s = time.Now()
			if n := rawReplay(b, store, recs[len(recs)-1].Subject); n != per {
				b.Fatalf("raw replay read %d messages", n)
			}
			raw = append(raw, time.Since(s))
		}
		p := func(d []time.Duration, q float64) float64 {
			slices.Sort(d)
			return float64(d[int(float64(len(d)-1)*q)].Microseconds()) / 1000
		}
		b.ReportMetric(p(ours, 0.5), "p50:ms")
		b.ReportMetric(p(ours, 0.99), "p99:ms")
		b.ReportMetric(p(raw, 0.5), "raw_p50:ms")
		b.ReportMetric(p(ours, 0.5)/p(raw, 0.5), "ratio")
	}
}
