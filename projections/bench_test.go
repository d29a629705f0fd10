package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
	"shadowbridge/projections"
)

// BenchmarkProjectionRebuild: 1M commits over 10,000 shadows. Ours: replay + write the last state of
// every shadow into PROV_SHADOWS. Raw: an ordered consumer reading the same stream, no decoding.
func BenchmarkProjectionRebuild(b *testing.B) {
	for range b.N {
		srv := natstest.Start(b)
		nc := srv.Connect(b)
		ctx := context.Background()
		store, err := eventstore.Open(ctx, nc, eventstore.DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		const shadows, per = 10000, 100
		if _, err := storetest.Populate(ctx, store, storetest.Resource(b), shadows, per); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		cons, err := store.JetStream().OrderedConsumer(ctx, "PROV_EVENTS", jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(5000))
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < shadows*per; n++ {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
		it.Stop()
		raw := float64(shadows*per) / time.Since(start).Seconds()

		p, err := projections.NewProjector(ctx, store.JetStream(), store, projections.DefaultConfig(), nil)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		pr, err := p.Rebuild(ctx, nil)
		if err != nil || pr.Last != shadows*per || pr.Shadows != shadows {
			b.Fatalf("rebuild: %+v %v", pr, err)
		}
		// Events covered per second: the projection reflects all 1M events when Rebuild returns.
		ours := float64(pr.Last) / time.Since(start).Seconds()
		b.ReportMetric(raw, "raw:events/s")
		b.ReportMetric(ours, "events/s")
		b.ReportMetric(ours/raw, "ratio")
	}
}
