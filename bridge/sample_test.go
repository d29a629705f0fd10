package bridge_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// The sample target system applies each operation once and one account's operations in their
// order, whatever order the queue hands them over in: requests that come too early wait for
// their predecessor, a redelivered add creates no second account, and a redelivered request is
// answered as it was the first time.
func TestSampleSystemAppliesOnceAndInOrder(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js, _ := jetstream.New(nc)
	if _, err := bridge.NewSampleTarget(ctx, js, "prov", "demo"); err != nil {
		t.Fatal(err)
	}
	sys, err := bridge.NewSampleSystem(ctx, nc, "prov", func(string, string) string { return "uid" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	answers := map[string][]map[string]any{}
	sub, err := nc.Subscribe("prov.cmd.demo.confirm", func(m *nats.Msg) {
		var c map[string]any
		_ = json.Unmarshal(m.Data, &c)
		mu.Lock()
		answers[c["operationId"].(string)] = append(answers[c["operationId"].(string)], c)
		mu.Unlock()
		_ = m.Respond([]byte(`{}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	shadow, add, mod1, mod2 := storetest.NewID(), storetest.NewID(), storetest.NewID(), storetest.NewID()
	ids := domain.Attributes{"uid": {bridge.SampleUID(add)}}
	reqs := map[string]bridge.Request{
		add: {Sequence: 1, Body: domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {"jack"}, "fullName": {"Jack"}}}},
		mod1: {Sequence: 2, PreviousSequence: 1, Body: domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
			PrimaryIdentifiers: ids, Changes: domain.Changes{"fullName": {Replace: []any{"one"}}, "mail": {Add: []any{"j@x"}}}}},
		mod2: {Sequence: 3, PreviousSequence: 2, Body: domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
			PrimaryIdentifiers: ids, Changes: domain.Changes{"fullName": {Replace: []any{"two"}}}}},
	}
	publish := func(op string) {
		r := reqs[op]
		r.Resource, r.ShadowID, r.OperationID, r.Attempt = "demo", shadow, op, 1
		body, err := bridge.Transform(bridge.SimplifiedJSON, r.Body)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(bridge.SampleSubject("prov", "demo"))
		m.Data = body
		for k, v := range r.Properties() {
			m.Header.Set(k, v)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil { // no Nats-Msg-Id: a redelivery, as a crash makes it
			t.Fatal(err)
		}
	}
	// Newest first, then the add, then everything again.
	for _, op := range []string{mod2, mod1, add, add, mod1, mod2} {
		publish(op)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sys.Run(rctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(answers[add]) + len(answers[mod1]) + len(answers[mod2])
		mu.Unlock()
		if n == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 6 requests answered: %v", n, answers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	kv, _ := js.KeyValue(ctx, bridge.SampleBucket)
	keys, _ := kv.ListKeys(ctx)
	var accounts []string
	for k := range keys.Keys() {
		accounts = append(accounts, k)
	}
	if len(accounts) != 1 {
		t.Fatalf("%d accounts for one add: %v", len(accounts), accounts)
	}
	e, err := kv.Get(ctx, accounts[0])
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string][]any
	_ = json.Unmarshal(e.Value(), &attrs)
	if attrs["fullName"][0] != "two" || len(attrs["mail"]) != 1 || attrs["mail"][0] != "j@x" {
		t.Fatalf("account %v: want fullName two (the last modify) and mail j@x (the first)", attrs)
	}
	mu.Lock()
	defer mu.Unlock()
	for op, as := range answers {
		for _, a := range as[1:] {
			if a["resultStatus"] != as[0]["resultStatus"] || jsonOf(a["primaryIdentifiers"]) != jsonOf(as[0]["primaryIdentifiers"]) {
				t.Errorf("operation %s answered differently: %v then %v", op, as[0], a)
			}
		}
	}
	if got := jsonOf(answers[add][0]["primaryIdentifiers"]); got != `{"uid":["`+bridge.SampleUID(add)+`"]}` {
		t.Errorf("add answered %s", got)
	}

}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }
