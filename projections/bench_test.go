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

// BenchmarkProjectionRebuild: 1M commits over 10,000 shadows. Ours: rebuild PROV_SHADOWS (the last
// state of every shadow, written into the bucket). Raw, the same work by hand in the same run: an
// ordered consumer delivering the last record of every shadow's subject, each record's bytes put
// as they are into a KV bucket of its own (pipelined), nothing decoded. Ratio: raw time / ours.
// The old baseline, a replay of all 1M records, is reported beside it (replay:events/s).
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
		js := store.JetStream()
		replay := float64(shadows*per) / timed(b, func() { consumeN(b, js, jetstream.OrderedConsumerConfig{}, shadows*per, nil) }).Seconds()
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "RAW_SHADOWS"})
		if err != nil {
			b.Fatal(err)
		}
		raw := timed(b, func() {
			consumeN(b, js, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"prov.evt.>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy},
				shadows, func(m jetstream.Msg) {
					subj := m.Subject()
					if _, err := js.PublishAsync("$KV.RAW_SHADOWS."+subj[len("prov.evt."):], m.Data()); err != nil {
						b.Fatal(err)
					}
				})
			<-js.PublishAsyncComplete()
		})
		if st, err := kv.Status(ctx); err != nil || st.Values() != shadows {
			b.Fatalf("raw bucket: %v %v", st, err)
		}

		p, err := projections.NewProjector(ctx, js, store, projections.DefaultConfig(), nil)
		if err != nil {
			b.Fatal(err)
		}
		var pr projections.Progress
		ours := timed(b, func() {
			if pr, err = p.Rebuild(ctx, nil); err != nil || pr.Last != shadows*per || pr.Shadows != shadows {
				b.Fatalf("rebuild: %+v %v", pr, err)
			}
		})
		b.ReportMetric(replay, "replay:events/s")
		b.ReportMetric(float64(shadows)/raw.Seconds(), "raw:shadows/s")
		b.ReportMetric(float64(shadows)/ours.Seconds(), "shadows/s")
		b.ReportMetric(float64(pr.Last)/ours.Seconds(), "events/s")
		b.ReportMetric(raw.Seconds()/ours.Seconds(), "ratio")
	}
}

func timed(b *testing.B, fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

// consumeN reads n messages of PROV_EVENTS with an ordered consumer, calling fn on each.
func consumeN(b *testing.B, js jetstream.JetStream, cfg jetstream.OrderedConsumerConfig, n int, fn func(jetstream.Msg)) {
	cons, err := js.OrderedConsumer(context.Background(), "PROV_EVENTS", cfg)
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(5000))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	for range n {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		if fn != nil {
			fn(m)
		}
	}
}
