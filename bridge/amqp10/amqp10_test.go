package amqp10_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"shadowbridge/bridge/amqp10"
	"shadowbridge/bridge/amqptest"
)

// watermill's own Pub/Sub test suite, against the real Artemis test broker. The features are
// what the package declares: persistent, ordered with one subscriber, at-least-once; no consumer
// groups, no exactly-once, no replay for new subscribers. The broker restart test is left out
// (it would restart the broker every other package's tests share; the bridge's fault tests kill
// their own broker instead). Short mode (fewer messages per test) keeps the suite at seconds:
// credit 1 makes every message a round trip.
func TestWatermillPubSubSuite(t *testing.T) {
	b := amqptest.Start(t)
	var mu sync.Mutex
	var topics []string
	t.Cleanup(func() {
		for _, q := range topics {
			b.Destroy(t, q)
		}
	})
	constructor := func(t *testing.T) (message.Publisher, message.Subscriber) {
		cfg := amqp10.Config{URLs: []string{b.URL}, Logger: watermill.NewStdLogger(false, false)}
		pub, err := amqp10.NewPublisher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := amqp10.NewSubscriber(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      false,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    false,
		ForceShort:                          true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			q := fmt.Sprintf("%swm-%s", b.Prefix, tctx.TestID)
			mu.Lock()
			topics = append(topics, q)
			mu.Unlock()
			return q
		},
	}, constructor, nil)
}

// The Artemis conventions of the contract on a published message, read back raw.
func TestArtemisConventions(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "conventions")
	pub, err := amqp10.NewPublisher(amqp10.Config{URLs: []string{b.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	id := watermill.NewUUID()
	msg := message.NewMessage(id, []byte(`{"a":1}`))
	msg.Metadata.Set("shadowId", "s-1")
	msg.Metadata.Set(amqp10.MetadataReplyTo, "Replies")
	if err := pub.Publish(q, msg); err != nil {
		t.Fatal(err)
	}
	// A re-send of the same UUID is accepted and dropped by Artemis' duplicate detection.
	if err := pub.Publish(q, message.NewMessage(id, []byte(`{"a":1}`))); err != nil {
		t.Fatal(err)
	}
	r := b.Receiver(t, q)
	got := amqptest.ReceiveN(t, r, 1, 5*time.Second)[0]
	if got.Properties.MessageID != amqptest.UUID(t, id) || got.Value != `{"a":1}` || !got.Header.Durable ||
		got.ApplicationProperties["_AMQ_DUPL_ID"] != id || got.ApplicationProperties["shadowId"] != "s-1" ||
		*got.Properties.ReplyTo != "Replies" || got.Annotations["x-opt-jms-msg-type"] != int8(5) {
		t.Fatalf("message: %+v %+v %v", got.Properties, got.ApplicationProperties, got.Value)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if extra, err := r.Receive(ctx, nil); err == nil {
		t.Fatalf("duplicate routed: %v", extra.Value)
	}
}

// With Concurrency, messages are handed out before the last one is settled (several handlers at
// once), except those of one lane: one at a time, in the order they came. A nacked message comes
// back; every message is acked once in the end.
func TestConcurrencyAndLanes(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "lanes")
	pub, err := amqp10.NewPublisher(amqp10.Config{URLs: []string{b.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 60
	for i := range n {
		body := fmt.Sprint("free-", i)
		if i%3 == 0 {
			body = fmt.Sprint("lane-", i)
		}
		if err := pub.Publish(q, message.NewMessage(watermill.NewUUID(), []byte(body))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := amqp10.NewSubscriber(amqp10.Config{URLs: []string{b.URL}, Credit: 100, Concurrency: 8,
		Lane: func(m *message.Message) string {
			if string(m.Payload[:5]) == "lane-" {
				return "L"
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	msgs, err := sub.Subscribe(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu                     sync.Mutex
		inFlight, most, inLane int
		laneOrder              []string
		acked                  = map[string]int{}
		nacked                 bool
	)
	done := make(chan struct{})
	go func() {
		for m := range msgs {
			go func() {
				body := string(m.Payload)
				lane := body[:5] == "lane-"
				mu.Lock()
				inFlight++
				most = max(most, inFlight)
				if lane {
					inLane++
					if inLane > 1 {
						t.Errorf("two messages of one lane at once (%s)", body)
					}
					laneOrder = append(laneOrder, body)
				}
				nack := body == "free-5" && !nacked
				nacked = nacked || nack
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				inFlight--
				if lane {
					inLane--
				}
				if !nack {
					acked[body]++
				}
				total := len(acked)
				mu.Unlock()
				if nack {
					m.Nack()
					return
				}
				m.Ack()
				if total == n {
					close(done)
				}
			}()
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("acked %d of %d", len(acked), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if most < 2 {
		t.Errorf("at most %d handled at once, want several", most)
	}
	for i, body := range laneOrder {
		if want := fmt.Sprint("lane-", 3*i); body != want {
			t.Fatalf("lane order %v", laneOrder)
		}
	}
	for body, k := range acked {
		if k != 1 {
			t.Errorf("%s acked %d times", body, k)
		}
	}
}
