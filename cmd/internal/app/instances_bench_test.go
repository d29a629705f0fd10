package app_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/eventstore/natstest"
)

// BenchmarkInstances: adds answered per second (64 clients, closed loop, 4 s, the sample target
// running) with 1, 2 and 3 instances, on one R1 server and on a 3-node cluster with R3 stream
// and buckets, all in the same run. Everything shares the machine's cores, so more instances
// do not add capacity here; the figures show what replication costs and that instances share
// the work.
func BenchmarkInstances(b *testing.B) {
	for range b.N {
		single := []*natstest.Server{natstest.Start(b)}
		cluster := natstest.StartCluster(b, 3)
		for _, topo := range []struct {
			name     string
			servers  []*natstest.Server
			replicas int
		}{{"r1", single, 1}, {"r3", cluster, 3}} {
			for k := 1; k <= 3; k++ {
				rate := instancesRun(b, topo.servers, topo.replicas, k)
				b.ReportMetric(rate, fmt.Sprintf("%s_%d:ops/s", topo.name, k))
			}
		}
	}
}

func instancesRun(b *testing.B, servers []*natstest.Server, replicas, k int) float64 {
	cfg := app.DefaultConfig()
	cfg.NATS.Replicas = replicas
	var apps []*app.App
	for i := range k {
		a, err := app.Start(context.Background(), servers[i%len(servers)].Connect(b), cfg, app.Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		apps = append(apps, a)
	}
	defer func() {
		for _, a := range apps {
			a.Close()
		}
	}()
	nc := servers[0].Connect(b)
	var n atomic.Int64
	deadline := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	run := time.Now().UnixNano()
	for c := range 64 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				m, err := nc.Request("prov.cmd.demo.add", fmt.Appendf(nil, `{"objectClass":"AccountObjectClass","attributes":{"login":["i%d-%d-%d-%d"]}}`, run, k, c, i), 10*time.Second)
				if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
					continue
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / 4
}
