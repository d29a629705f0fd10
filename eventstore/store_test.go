package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

func openStore(t *testing.T, memory bool) *eventstore.Store {
	srv := natstest.Start(t)
	cfg := eventstore.DefaultConfig()
	cfg.Memory = memory
	s, err := eventstore.Open(t.Context(), srv.Connect(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var _ storetest.Store = (*eventstore.Store)(nil)

func TestContractFileStorage(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openStore(t, false) })
}

// The same contract on a 3-node JetStream cluster with R3 stream and bucket (conflicts come back
// as error 10164 there, not 10071). One cluster for all cases, a fresh prefix and names each.
func TestContractOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := natstest.StartCluster(t, 3)
	n := 0
	storetest.Run(t, func(t *testing.T) storetest.Store {
		n++
		cfg := eventstore.DefaultConfig()
		cfg.Replicas = 3
		cfg.Prefix, cfg.Stream, cfg.Index = fmt.Sprint("c", n), fmt.Sprint("C_EVENTS_", n), fmt.Sprint("C_INDEX_", n)
		s, err := eventstore.Open(t.Context(), servers[n%3].Connect(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestContractMemoryStorage(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openStore(t, true) })
}

func TestOpenIsIdempotentAndSurvivesRestart(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	s1, err := eventstore.Open(ctx, srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	res := storetest.Resource(t)
	id := storetest.NewID()
	_, r, err := storetest.Decide(ctx, t, s1, res, id, domain.Add{Resource: res, ShadowID: id, OperationID: storetest.NewID(),
		ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"jack"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	srv2 := natstest.StartIn(t, srv.Dir)
	s2, err := eventstore.Open(ctx, srv2.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	st, seq, err := s2.Load(ctx, "demo", id)
	if err != nil || seq != r.Seq || !st.Created() {
		t.Fatalf("after restart: %v %d %v", st.Created(), seq, err)
	}
}

func TestOutageIsUnavailable(t *testing.T) {
	srv := natstest.Start(t)
	ctx := t.Context()
	s, err := eventstore.Open(ctx, srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	res := storetest.Resource(t)
	id := storetest.NewID()
	tctx, cancel := contextWithTimeout(t, 2*time.Second)
	defer cancel()
	_, _, err = storetest.Decide(tctx, t, s, res, id, domain.Add{Resource: res, ShadowID: id, OperationID: storetest.NewID(),
		ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"jack"}}})
	if !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, domain.CategoryCommunication) {
		t.Fatalf("append during an outage: %v, want ErrUnavailable", err)
	}
}

func TestConfigValidateJoinsProblems(t *testing.T) {
	c := eventstore.Config{Prefix: "a.b", Stream: "", Index: "x y", Replicas: 9}
	err := c.Validate()
	for _, want := range []string{"prefix", "stream", "index", "replicas", "duplicate"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("Validate() = %v, missing %q", err, want)
		}
	}
}

var _ storetest.Store = (*eventstore.Memory)(nil)

// The in-memory store keeps the same contract as JetStream's.
func TestContractInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return eventstore.NewMemory(eventstore.DefaultConfig()) })
}

// An existing stream with other replicas than configured is reported, never rescaled.
func TestOpenRefusesOtherReplicas(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	if _, err := eventstore.Open(t.Context(), nc, eventstore.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	cfg := eventstore.DefaultConfig()
	cfg.Replicas = 3
	_, err := eventstore.Open(t.Context(), nc, cfg)
	if !errors.Is(err, eventstore.ErrReplicas) || !errors.Is(err, domain.CategoryConfiguration) ||
		!strings.Contains(err.Error(), "PROV_EVENTS has 1 replica(s) and nats.replicas is 3") || !strings.Contains(err.Error(), "nats stream edit PROV_EVENTS --replicas 3") {
		t.Fatalf("open with replicas 3 over an R1 stream: %v", err)
	}
	info, err := mustStream(t, nc).Info(t.Context())
	if err != nil || info.Config.Replicas != 1 {
		t.Fatalf("the stream changed: %v %v", info, err)
	}
}

func mustStream(t *testing.T, nc *nats.Conn) jetstream.Stream {
	t.Helper()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(t.Context(), "PROV_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Readers delete their consumers when done: 1,200 history reads (more than the server's default
// of 1,000 consumers per stream) all succeed and leave no consumer behind.
func TestReadsLeaveNoConsumers(t *testing.T) {
	s := openStore(t, true)
	ctx := t.Context()
	res := storetest.Resource(t)
	id := storetest.NewID()
	if _, _, err := storetest.Decide(ctx, t, s, res, id, domain.Add{Resource: res, ShadowID: id, OperationID: storetest.NewID(),
		ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"reader"}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 1200 {
		h, err := s.History(ctx, id)
		if err != nil || len(h) != 1 {
			t.Fatalf("history %d: %d records, %v", i, len(h), err)
		}
	}
	str, err := s.JetStream().Stream(ctx, s.Config().Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left on the stream", info.State.Consumers)
	}
}

// A long history (2,500 records) comes back whole and in
// order, on file and memory storage, interleaved with other shadows' records.
func TestHistoryAcrossBatches(t *testing.T) {
	for _, memory := range []bool{false, true} {
		s := openStore(t, memory)
		ids, err := storetest.Populate(t.Context(), s, storetest.Resource(t), 3, 2500)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.History(t.Context(), ids[1])
		if err != nil || len(h) != 2500 {
			t.Fatalf("memory %v: %d records, %v", memory, len(h), err)
		}
		for i, r := range h {
			if r.ShadowID != ids[1] || (i > 0 && r.Seq <= h[i-1].Seq) || len(r.Types) == 0 || r.Time.IsZero() {
				t.Fatalf("record %d: %+v", i, r)
			}
		}
	}
}

// A batched read that does not get its whole answer (here: no time for it) is an error, never a
// shorter result that would read as shadows without commits.
func TestLoadManyCutShortIsAnError(t *testing.T) {
	s := openStore(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if got, err := s.LoadMany(ctx, "demo", []string{storetest.NewID(), storetest.NewID()}); err == nil {
		t.Fatalf("LoadMany with no time to answer: %d states and no error", len(got))
	}
	if got, err := s.Owners(ctx, []domain.Claim{{Kind: domain.SecondaryIdentifier, Resource: "demo", ObjectClass: "AccountObjectClass", Attribute: "login", Value: "x"}}); err == nil {
		t.Fatalf("Owners with no time to answer: %q and no error", got)
	}
}

// A subscription whose durable consumer is deleted under it (`nats consumer rm`, a stream
// restored without it) ends with an error saying so, rather than wait for ever on a consumer
// that will never deliver again: its caller (the app's supervisor) makes it anew.
func TestSubscriptionEndsWhenItsConsumerIsDeleted(t *testing.T) {
	s := openStore(t, true)
	subscribers := map[string]func(ctx context.Context, name string) error{
		"Subscribe": func(ctx context.Context, name string) error {
			return s.Subscribe(ctx, name, eventstore.SubscribeOptions{}, func(context.Context, []*eventstore.Record) error { return nil })
		},
		"SubscribeSharded": func(ctx context.Context, name string) error {
			return s.SubscribeSharded(ctx, name, eventstore.SubscribeOptions{Workers: 2}, func(context.Context, *eventstore.Record) error { return nil })
		},
	}
	for kind, subscribe := range subscribers {
		t.Run(kind, func(t *testing.T) {
			ctx := t.Context()
			name := "deleted-" + kind
			ended := make(chan error, 1)
			go func() { ended <- subscribe(ctx, name) }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := s.JetStream().DeleteConsumer(ctx, s.Config().Stream, name)
				if err == nil {
					break
				}
				if !errors.Is(err, jetstream.ErrConsumerNotFound) || time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond) // not made yet
			}
			select {
			case err := <-ended:
				if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), name) {
					t.Fatalf("ended with %v; want ErrUnavailable naming the consumer", err)
				}
				t.Log(err)
			case <-time.After(15 * time.Second):
				t.Fatal("still subscribed 15 s after its consumer was deleted")
			}
		})
	}
}

// A batch in hand when its consumer is deleted: the acknowledgement can never be confirmed, and
// Subscribe ends with an error rather than try for ever (the next consumer hands it out again).
func TestSubscriptionWithABatchInHandEndsWhenItsConsumerIsDeleted(t *testing.T) {
	s := openStore(t, true)
	ctx := t.Context()
	res, id := storetest.Resource(t), storetest.NewID()
	if _, _, err := storetest.Decide(ctx, t, s, res, id, domain.Add{Resource: res, ShadowID: id, OperationID: storetest.NewID(),
		ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {"gone"}}}); err != nil {
		t.Fatal(err)
	}
	inHand, deleted := make(chan struct{}), make(chan struct{})
	once := sync.OnceFunc(func() { close(inHand); <-deleted })
	ended := make(chan error, 1)
	go func() {
		ended <- s.Subscribe(ctx, "in-hand", eventstore.SubscribeOptions{}, func(context.Context, []*eventstore.Record) error { once(); return nil })
	}()
	<-inHand
	if err := s.JetStream().DeleteConsumer(ctx, s.Config().Stream, "in-hand"); err != nil {
		t.Fatal(err)
	}
	close(deleted)
	select {
	case err := <-ended:
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("ended with %v; want ErrUnavailable", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still trying to acknowledge 15 s after its consumer was deleted")
	}
}
