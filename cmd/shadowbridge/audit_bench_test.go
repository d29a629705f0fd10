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
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/cli"
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
// writer, vs a raw ordered-consumer replay of the same stream. The real CLI runs in its own
// process (its rate, its peak RSS and Go heap); the same audit runs in this process too, its Go
// heap sampled to show that memory stays constant. This machine's rates vary by a third from
// one run to the next, so the CLI and the raw replay take turns, three times each, and the
// ratio is of their medians.
func BenchmarkAudit(b *testing.B) {
	shadows, per := 10000, 100
	if v, err := strconv.Atoi(os.Getenv("SHADOWBRIDGE_BENCH_AUDIT_PER")); err == nil && v > 0 {
		per = v // a smaller log, to compare memory across sizes
	}
	const rounds = 3
	for range b.N {
		store, _, url := benchLogURL(b, shadows, per)
		ctx := context.Background()
		bin := filepath.Join(b.TempDir(), "shadowbridge")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("build: %v\n%s", err, out)
		}
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
		var cliRates, rawRates, rawCores, inRates, inCores []float64
		var cliRSS, cliHeap float64
		for round := range rounds {
			rate, rss, heap := runAuditCLI(b, bin, url, shadows*per)
			cliRates, cliRSS, cliHeap = append(cliRates, rate), max(cliRSS, rss), max(cliHeap, heap)
			rate, cores := rawReplayAll(b, store, shadows*per)
			rawRates, rawCores = append(rawRates, rate), append(rawCores, cores)

			cw := &countingWriter{}
			// SHADOWBRIDGE_BENCH_AUDIT_PROFILE=file: a CPU profile of the first in-process audit
			// alone (the NATS server it reads from included), not of the log's making or the rest.
			if f := os.Getenv("SHADOWBRIDGE_BENCH_AUDIT_PROFILE"); f != "" && round == 0 {
				out, err := os.Create(f)
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(out); err != nil {
					b.Fatal(err)
				}
				defer out.Close()
			}
			cpu0 := processCPU()
			start := time.Now()
			if err := cli.StreamEvents(ctx, store, eventstore.ScanOptions{}, cli.AuditFilter{}, true, false, cw, io.Discard); err != nil {
				b.Fatal(err)
			}
			pprof.StopCPUProfile()
			inRates = append(inRates, float64(shadows*per)/time.Since(start).Seconds())
			inCores = append(inCores, (processCPU()-cpu0).Seconds()/time.Since(start).Seconds())
			if cw.lines < shadows*per {
				b.Fatalf("%d JSON lines for %d records", cw.lines, shadows*per)
			}
		}
		stop()
		raw := median(rawRates)
		b.ReportMetric(float64(shadows*per), "records:n")
		// The audit and the raw replay both in this process with the NATS server (as before),
		// and the real CLI in a process of its own (its start and connection included; two
		// processes on two cores also share them less well than one does).
		b.ReportMetric(median(inRates), "records/s")
		b.ReportMetric(median(inRates)/raw, "ratio")
		b.ReportMetric(slices.Min(inRates)/raw, "ratio_min")
		b.ReportMetric(slices.Max(inRates)/raw, "ratio_max")
		b.ReportMetric(median(inCores), "audit_cpu:cores")
		b.ReportMetric(raw, "raw:records/s")
		b.ReportMetric(median(rawCores), "raw_cpu:cores")
		b.ReportMetric(median(cliRates), "cli:records/s")
		b.ReportMetric(median(cliRates)/raw, "cli_ratio")
		b.ReportMetric(cliRSS, "cli_max_rss:MiB")
		b.ReportMetric(cliHeap, "cli_peak_heap:MB")
		b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/(1<<20), "live_heap_growth:MiB")
	}
}

// runAuditCLI runs `audit --json` with the built binary against url and returns its rate, its
// peak RSS (MiB) and its largest Go heap after a collection (MB).
func runAuditCLI(b *testing.B, bin, url string, records int) (rate, rssMiB, heapMB float64) {
	cli := exec.Command(bin, "audit", "--json", "--server", url)
	cli.Stdout = io.Discard
	cli.Env = append(os.Environ(), "GODEBUG=gctrace=1") // its heap, collection by collection, on stderr
	var cliErr strings.Builder
	cli.Stderr = &cliErr
	start := time.Now()
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
	rate = float64(records) / time.Since(start).Seconds()
	close(exited)
	<-sampled
	if err != nil {
		b.Fatalf("audit: %v %s", err, cliErr.String())
	}
	for _, m := range gcHeap.FindAllStringSubmatch(cliErr.String(), -1) {
		mb, _ := strconv.Atoi(m[1])
		heapMB = max(heapMB, float64(mb))
	}
	return rate, float64(hwm.Load()) / 1024, heapMB
}

// rawReplayAll reads the whole event stream with an ordered consumer, decoding nothing, and
// returns its rate and the cores this process (client and server) used meanwhile.
func rawReplayAll(b *testing.B, store *eventstore.Store, records int) (rate, cores float64) {
	ctx := context.Background()
	cpu0 := processCPU()
	start := time.Now()
	cons, err := store.JetStream().OrderedConsumer(ctx, "PROV_EVENTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(5000))
	if err != nil {
		b.Fatal(err)
	}
	for range records {
		if _, err := it.Next(); err != nil {
			b.Fatal(err)
		}
	}
	it.Stop()
	elapsed := time.Since(start).Seconds()
	return float64(records) / elapsed, (processCPU() - cpu0).Seconds() / elapsed
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
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
