package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/eventstore/natstest"
)

// BenchmarkDashboardLatency: adds over NATS at 1,000 commands/s for 5 s while a client follows
// the dashboard's event stream (what the browser's EventSource reads): for each add, the time
// from its stored decision (the reply) to the first pushed dashboard that counts it.
func BenchmarkDashboardLatency(b *testing.B) {
	const rate, seconds = 1000, 5
	const n = rate * seconds
	for range b.N {
		srv := natstest.Start(b)
		nc := srv.Connect(b)
		ctx, cancel := context.WithCancel(context.Background())
		a, err := app.Start(ctx, nc, app.DefaultConfig(), app.Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(a.Handler())
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		type push struct {
			at      time.Time
			shadows int
		}
		var pmu sync.Mutex
		var pushes []push
		go func() {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<22)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				var d app.DashboardData
				if json.Unmarshal([]byte(data), &d) != nil || len(d.Resources) == 0 {
					continue
				}
				pmu.Lock()
				pushes = append(pushes, push{time.Now(), d.Resources[0].Counts.Shadows})
				pmu.Unlock()
			}
		}()
		time.Sleep(200 * time.Millisecond) // the first push (empty)
		var rmu sync.Mutex
		var replies []time.Time
		tick := time.NewTicker(time.Second / rate)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			<-tick.C
			wg.Go(func() {
				m, err := nc.Request("prov.cmd.demo.add", fmt.Appendf(nil, `{"objectClass":"AccountObjectClass","attributes":{"login":["d%d"]}}`, i), 10*time.Second)
				if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
					b.Errorf("add: %v", err)
					return
				}
				rmu.Lock()
				replies = append(replies, time.Now())
				rmu.Unlock()
			})
		}
		tick.Stop()
		wg.Wait()
		achieved := float64(n) / time.Since(start).Seconds()
		deadline := time.Now().Add(30 * time.Second)
		for {
			pmu.Lock()
			last := 0
			if len(pushes) > 0 {
				last = pushes[len(pushes)-1].shadows
			}
			pmu.Unlock()
			if last >= n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("dashboard shows %d of %d shadows", last, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		slices.SortFunc(replies, func(x, y time.Time) int { return x.Compare(y) })
		pmu.Lock()
		var lat []time.Duration
		j := 0
		for k, t := range replies { // the k-th stored add is counted once a push shows k+1 shadows
			for j < len(pushes) && pushes[j].shadows < k+1 {
				j++
			}
			if j < len(pushes) {
				lat = append(lat, max(pushes[j].at.Sub(t), 0))
			}
		}
		pmu.Unlock()
		cancel()
		hs.CloseClientConnections()
		hs.Close()
		a.Close()
		slices.Sort(lat)
		b.ReportMetric(achieved, "commands/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50:ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99:ms")
	}
}

// BenchmarkWritersWithStreams: adds at 1,000/s for 3 s with no dashboard open, then the same
// with 200 dashboard streams open (each reading everything pushed): the writers' reply p50/p99
// both ways, the bytes pushed, and ratio = p99 with streams / p99 without.
func BenchmarkWritersWithStreams(b *testing.B) {
	const rate, seconds, streams = 1000, 3, 200
	for range b.N {
		var p99 [2]float64
		var pushed int64
		for round, k := range []int{0, streams} {
			srv := natstest.Start(b)
			nc := srv.Connect(b)
			ctx, cancel := context.WithCancel(context.Background())
			a, err := app.Start(ctx, nc, app.DefaultConfig(), app.Options{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(a.Handler())
			var bytesIn sync.Map
			for i := range k {
				req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/api/stream", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("stream %d: %v", i, err)
				}
				go func() {
					buf := make([]byte, 64<<10)
					var total int64
					for {
						n, err := resp.Body.Read(buf)
						total += int64(n)
						bytesIn.Store(i, total)
						if err != nil {
							return
						}
					}
				}()
			}
			var mu sync.Mutex
			var lat []time.Duration
			tick := time.NewTicker(time.Second / rate)
			var wg sync.WaitGroup
			for i := range rate * seconds {
				<-tick.C
				wg.Go(func() {
					t0 := time.Now()
					m, err := nc.Request("prov.cmd.demo.add", fmt.Appendf(nil, `{"objectClass":"AccountObjectClass","attributes":{"login":["w%d"]}}`, i), 10*time.Second)
					if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
						b.Errorf("add: %v", err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				})
			}
			wg.Wait()
			tick.Stop()
			slices.Sort(lat)
			p99[round] = float64(lat[len(lat)*99/100].Microseconds()) / 1000
			if round == 1 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_streams:ms")
			} else {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_alone:ms")
			}
			bytesIn.Range(func(_, v any) bool { pushed += v.(int64); return true })
			cancel()
			hs.CloseClientConnections()
			hs.Close()
			a.Close()
		}
		b.ReportMetric(p99[0], "p99_alone:ms")
		b.ReportMetric(p99[1], "p99_streams:ms")
		b.ReportMetric(float64(pushed)/1e6, "pushed:MB")
		b.ReportMetric(p99[1]/p99[0], "ratio")
	}
}
