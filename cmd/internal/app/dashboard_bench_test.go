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
