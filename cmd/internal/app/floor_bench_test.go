package app_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// floor starts the least an add can cost on NATS and JetStream, built from bare calls and
// nothing of shadowbridge, for BenchmarkEndToEndFloor:
//
//   - a queue subscriber on prov.cmd.demo.add (256 workers, as the service) appends the decision,
//     1 KB, to the shadow's subject expecting it to be new, and replies with the shadow id;
//   - a dispatcher (durable consumer of the commits) publishes each decision's request to the
//     target's stream and acknowledges the decision once the target's stream has it;
//   - the target (durable consumer of its stream) confirms on core NATS;
//   - a confirmation handler appends the outcome, 1 KB;
//   - a projector (durable consumer of the commits) writes each shadow to KV PROV_SHADOWS, live
//     once the outcome is in, and acknowledges the commit once the bucket has it.
//
// Bare, that is all. With guarantees it also does, still as bare calls, the writes and reads
// shadowbridge's guarantees need: the request id recorded and the login claimed before the
// decision (two KV creates: a retried request gets its first reply, two adds of one login cannot
// both win), the shadow's last commit read before each append (a decision is made from the stored
// state, which another instance may have changed), the transport's acceptance recorded as a
// commit of its own, and a third consumer that arms each commit's timer (a message schedule).
// Left out even then: per-shadow order (leases, sequences), the operation index, the pending
// index, retries, and every decision's own work.
func floor(b *testing.B, nc *nats.Conn, guarantees bool) func() {
	ctx, cancel := context.WithCancel(context.Background())
	js, _ := jetstream.New(nc)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLOOR", AllowMsgSchedules: true, AllowDirect: true,
		Subjects: []string{"floor.evt.>", "floor.tgt.>", "floor.timer.>", "floor.due.>"}})
	if err != nil {
		b.Fatal(err)
	}
	index, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "FLOOR_INDEX", History: 1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "PROV_SHADOWS", History: 1}); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1024)
	var next atomic.Int64
	var stops []func()
	// load reads the shadow's last commit, as a decision does first.
	load := func(subject string) {
		if _, err := st.GetLastMsgForSubject(ctx, subject); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			b.Error(err)
		}
	}

	// The decision.
	work := make(chan *nats.Msg, 4096)
	for range 256 {
		go func() {
			for m := range work {
				n := next.Add(1)
				id := fmt.Sprintf("%016d", n)
				subject := "floor.evt.demo." + id
				if guarantees {
					if _, err := index.Create(ctx, fmt.Sprint("req.", n), []byte(id)); err != nil {
						b.Error(err)
					}
					if _, err := index.Create(ctx, fmt.Sprint("claim.", n), []byte(id)); err != nil {
						b.Error(err)
					}
					load(subject)
				}
				d := nats.NewMsg(subject)
				d.Data = body
				d.Header.Set("Kind", "decision")
				if _, err := js.PublishMsg(ctx, d, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
					_ = m.Respond([]byte(`{"error":"` + err.Error() + `"}`))
					continue
				}
				_ = m.Respond([]byte(`{"shadowId":"` + id + `"}`))
			}
		}()
	}
	sub, err := nc.QueueSubscribe("prov.cmd.demo.add", "floor", func(m *nats.Msg) { work <- m })
	if err != nil {
		b.Fatal(err)
	}
	stops = append(stops, func() { _ = sub.Unsubscribe(); close(work) })

	consume := func(name, filter string, fn func(m jetstream.Msg)) {
		c, err := js.CreateOrUpdateConsumer(ctx, "FLOOR", jetstream.ConsumerConfig{Durable: name, FilterSubject: filter,
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := c.Consume(fn, jetstream.PullMaxMessages(1024))
		if err != nil {
			b.Fatal(err)
		}
		stops = append(stops, cc.Stop)
	}
	// acked acknowledges m once f, an asynchronous publish, is stored.
	acked := func(m jetstream.Msg, f jetstream.PubAckFuture, then func()) {
		go func() {
			select {
			case <-f.Ok():
				if then != nil {
					then()
				}
				_ = m.Ack()
			case <-f.Err():
				_ = m.Nak()
			case <-ctx.Done():
			}
		}()
	}
	// The dispatcher.
	consume("floor-dispatcher", "floor.evt.>", func(m jetstream.Msg) {
		if m.Headers().Get("Kind") != "decision" {
			_ = m.Ack()
			return
		}
		t := nats.NewMsg("floor.tgt." + m.Subject()[len("floor.evt."):])
		t.Data = body
		f, err := js.PublishMsgAsync(t)
		if err != nil {
			_ = m.Nak()
			return
		}
		var sent func()
		if guarantees {
			sent = func() {
				load(m.Subject())
				s := nats.NewMsg(m.Subject())
				s.Data = body
				s.Header.Set("Kind", "sent")
				if _, err := js.PublishMsg(ctx, s); err != nil && ctx.Err() == nil {
					b.Error(err)
				}
			}
		}
		acked(m, f, sent)
	})
	// The target.
	consume("floor-target", "floor.tgt.>", func(m jetstream.Msg) {
		_ = nc.Publish("floor.confirm."+m.Subject()[len("floor.tgt."):], nil)
		_ = m.Ack()
	})
	// The outcome.
	confirms := make(chan string, 4096)
	for range 64 {
		go func() {
			for subject := range confirms {
				if guarantees {
					load(subject)
				}
				o := nats.NewMsg(subject)
				o.Data = body
				o.Header.Set("Kind", "outcome")
				if _, err := js.PublishMsg(ctx, o); err != nil && ctx.Err() == nil {
					b.Error(err)
				}
			}
		}()
	}
	csub, err := nc.Subscribe("floor.confirm.>", func(m *nats.Msg) { confirms <- "floor.evt." + m.Subject[len("floor.confirm."):] })
	if err != nil {
		b.Fatal(err)
	}
	stops = append(stops, func() { _ = csub.Unsubscribe(); close(confirms) })
	// The projector: proposed, then live once the outcome is in (a late "sent" changes nothing).
	state := map[string][]byte{"decision": []byte(`{"lifecycleState":"proposed"}`), "outcome": []byte(`{"lifecycleState":"live"}`)}
	consume("floor-projector", "floor.evt.>", func(m jetstream.Msg) {
		v, ok := state[m.Headers().Get("Kind")]
		if !ok {
			_ = m.Ack()
			return
		}
		p := nats.NewMsg("$KV.PROV_SHADOWS." + m.Subject()[len("floor.evt."):])
		p.Data = v
		f, err := js.PublishMsgAsync(p)
		if err != nil {
			_ = m.Nak()
			return
		}
		acked(m, f, nil)
	})
	if guarantees {
		// The timer armer: each commit re-arms its shadow's timer.
		consume("floor-armer", "floor.evt.>", func(m jetstream.Msg) {
			id := m.Subject()[len("floor.evt."):]
			t := nats.NewMsg("floor.timer." + id)
			t.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
			t.Header.Set("Nats-Schedule-Target", "floor.due."+id)
			f, err := js.PublishMsgAsync(t)
			if err != nil {
				_ = m.Nak()
				return
			}
			acked(m, f, nil)
		})
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
}
