package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/embedded"
	"shadowbridge/eventstore/natstest"
)

type env struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	app *app.App
}

func start(t *testing.T, o app.Options) *env {
	t.Helper()
	return startOn(t, natstest.Start(t), o)
}

func startOn(t *testing.T, srv *natstest.Server, o app.Options) *env {
	t.Helper()
	nc := srv.Connect(t)
	a, err := app.Start(t.Context(), nc, app.DefaultConfig(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	js, _ := jetstream.New(nc)
	return &env{srv: srv, nc: nc, js: js, app: a}
}

func (e *env) request(t *testing.T, subject string, data []byte) (map[string]any, string, string) {
	t.Helper()
	m, err := e.nc.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var out map[string]any
	if err := json.Unmarshal(m.Data, &out); err != nil {
		t.Fatalf("%s: reply is not JSON: %q", subject, m.Data)
	}
	return out, m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error")
}

func (e *env) ok(t *testing.T, subject string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	out, code, msg := e.request(t, subject, b)
	if code != "" {
		t.Fatalf("%s: %s %s", subject, code, msg)
	}
	return out
}

func (e *env) streamMsgs(t *testing.T) uint64 { return e.msgs(t, "PROV_EVENTS") }

// written counts the messages of the event stream and the index bucket: a refused request
// changes neither.
func (e *env) written(t *testing.T) uint64 {
	return e.msgs(t, "PROV_EVENTS") + e.msgs(t, "KV_PROV_INDEX")
}

func (e *env) msgs(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := e.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func addBody(login string) map[string]any {
	return map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{login}}}
}

func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	e := start(t, app.Options{NoDispatcher: true, NoSample: true})
	live := e.ok(t, "prov.cmd.demo.add", addBody("jack"))["shadowId"].(string)
	before := e.written(t)
	huge := `{"objectClass":"AccountObjectClass","attributes":{"login":["` + strings.Repeat("x", 1<<20) + `"]}}`
	tests := []struct {
		name, subject, body, code, want string
	}{
		{"malformed json", "prov.cmd.demo.add", `{"objectClass":`, "400", "malformed JSON"},
		{"not an object", "prov.cmd.demo.add", `[1,2]`, "400", "expected a JSON object"},
		{"trailing data", "prov.cmd.demo.add", `{} {}`, "400", "unexpected data"},
		{"wrong type", "prov.cmd.demo.add", `{"objectClass":42,"attributes":{"login":["a"]}}`, "400", `field "objectClass": expected a string`},
		{"scalar instead of list", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":"a"}}`, "400", `field "attributes.login": expected an array`},
		{"typo", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","atributes":{"login":["a"]}}`, "400", `did you mean "attributes"`},
		{"unknown field", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","colour":1}`, "400", "known: requestId"},
		{"oversized", "prov.cmd.demo.add", huge, "400", "the limit is 1048576"},
		{"not utf-8", "prov.cmd.demo.add", "{\"objectClass\":\"\xff\xfe\"}", "400", "UTF-8"},
		{"nested value", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["a"],"x":[{"a":1}]}}`, "400", "strings, numbers or booleans"},
		{"null value", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["a"],"x":[null]}}`, "400", "null"},
		{"no attributes", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass"}`, "400", "no attributes"},
		{"missing login", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"fullName":["x"]}}`, "400", "missing secondary identifier"},
		{"unknown class", "prov.cmd.demo.add", `{"objectClass":"Group","attributes":{"login":["x"]}}`, "400", `unknown object class: "Group" on resource "demo" (known: AccountObjectClass)`},
		{"missing class", "prov.cmd.demo.add", `{"attributes":{"login":["x"]}}`, "400", "objectClass is required (known: AccountObjectClass)"},
		{"login taken", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["jack"]}}`, "409", live},
		{"unknown resource", "prov.cmd.nope.add", `{}`, "404", `"nope" is not configured`},
		{"unknown verb", "prov.cmd.demo.rename", `{}`, "404", "unknown command"},
		{"too many tokens", "prov.cmd.demo.add.x", `{}`, "400", "want prov.cmd.<resource>"},
		{"unknown query", "prov.query.everything", `{}`, "404", "unknown query"},
		{"modify without target", "prov.cmd.demo.modify", `{"changes":{"a":{"add":["b"]}}}`, "400", "shadowId or identifiers is required"},
		{"modify bad id", "prov.cmd.demo.modify", `{"shadowId":"42","changes":{"a":{"add":["b"]}}}`, "400", "not a UUID"},
		{"modify unknown shadow", "prov.cmd.demo.modify", `{"shadowId":"00000000-0000-4000-8000-000000000000","changes":{"a":{"add":["b"]}}}`, "404", "shadow not found"},
		{"modify unknown identifier", "prov.cmd.demo.modify", `{"identifiers":{"login":["nobody"]},"changes":{"a":{"add":["b"]}}}`, "404", "no live shadow"},
		{"modify empty changes", "prov.cmd.demo.modify", `{"shadowId":"` + live + `","changes":{}}`, "400", "empty changes"},
		{"modify both targets", "prov.cmd.demo.modify", `{"shadowId":"` + live + `","identifiers":{"login":["jack"]},"changes":{"a":{"add":["b"]}}}`, "400", "not both"},
		{"modify change typo", "prov.cmd.demo.modify", `{"shadowId":"` + live + `","changes":{"a":{"replce":["b"]}}}`, "400", `did you mean "replace"`},
		{"delete unknown", "prov.cmd.demo.delete", `{"shadowId":"00000000-0000-4000-8000-000000000000"}`, "404", "shadow not found"},
		{"confirm unknown op", "prov.cmd.demo.confirm", `{"operationId":"00000000-0000-4000-8000-000000000000","resultStatus":"success"}`, "404", "operation not found"},
		{"confirm bad result", "prov.cmd.demo.confirm", `{"operationId":"00000000-0000-4000-8000-000000000000","resultStatus":"great"}`, "400", "invalid result status"},
		{"confirm without op", "prov.cmd.demo.confirm", `{"resultStatus":"success"}`, "400", "operationId is required"},
		{"shadow query bad id", "prov.query.shadow", `{"shadowId":"x"}`, "400", "not a UUID"},
		{"shadow query unknown", "prov.query.shadow", `{"shadowId":"00000000-0000-4000-8000-000000000000"}`, "404", "shadow not found"},
		{"shadow query bad time", "prov.query.shadow", `{"shadowId":"` + live + `","asOf":"yesterday"}`, "400", "RFC 3339"},
		{"pending unknown resource", "prov.query.pending", `{"resource":"nope"}`, "404", "not configured"},
		{"resource unknown", "prov.query.resource", `{"resource":"nope"}`, "404", "not configured"},
		{"history unknown", "prov.query.history", `{"shadowId":"00000000-0000-4000-8000-000000000000"}`, "404", "shadow not found"},
		// Limits and values that would not be stored as sent (each states the rule).
		{"request id too long", "prov.cmd.demo.add", `{"requestId":"` + strings.Repeat("r", 70<<10) + `","objectClass":"AccountObjectClass","attributes":{"login":["rid"]}}`, "400", "requestId of 71680 bytes (the limit is 256)"},
		{"request id with control characters", "prov.cmd.demo.add", `{"requestId":"a\u0000b","objectClass":"AccountObjectClass","attributes":{"login":["rid"]}}`, "400", "control characters"},
		{"empty login", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":[""]}}`, "400", `identifier "login" is blank`},
		{"login with a newline", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["bob\n"]}}`, "400", "control characters"},
		{"attribute null", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["n"],"mail":null}}`, "400", `"mail" has no values`},
		{"attribute empty", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["n"],"mail":[]}}`, "400", `"mail" has no values`},
		{"too many attributes", "prov.cmd.demo.add", manyAttributes(10000), "400", "10001 attributes (the limit is 1000)"},
		{"value too long", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["v"],"photo":["` + strings.Repeat("p", 70<<10) + `"]}}`, "400", "the limit is 65536"},
		{"underflow", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["f"],"x":[1e-400]}}`, "400", "more precision than a 64-bit float keeps"},
		{"huge exponent", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["f"],"x":[1e-99999999]}}`, "400", "out of range"},
		{"30-digit integer", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["f"],"x":[123456789012345678901234567890]}}`, "400", "does not fit in 64 bits"},
		{"too many digits", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["f"],"x":[0.30000000000000001]}}`, "400", "it would become 0.3"},
		{"duplicate key", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{"login":["a"],"login":["b"]}}`, "400", `key "login" appears twice`},
		{"duplicate field", "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","objectClass":"AccountObjectClass","attributes":{"login":["a"]}}`, "400", "appears twice"},
		{"field name case", "prov.cmd.demo.add", `{"requestID":"r-case","objectClass":"AccountObjectClass","attributes":{"login":["a"]}}`, "400", `did you mean "requestId"? names are case-sensitive`},
		{"modify login blank", "prov.cmd.demo.modify", `{"shadowId":"` + live + `","changes":{"login":{"replace":["  "]}}}`, "400", "blank"},
		{"modify change without values", "prov.cmd.demo.modify", `{"shadowId":"` + live + `","changes":{"a":{"replace":null}}}`, "400", "no values to add, delete or replace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w0 := e.written(t)
			defer func() {
				if w := e.written(t); w != w0 {
					t.Errorf("wrote %d messages", w-w0)
				}
			}()
			out, code, header := e.request(t, tc.subject, []byte(tc.body))
			if code != tc.code {
				t.Fatalf("code %q (%s), want %s", code, header, tc.code)
			}
			eb, _ := out["error"].(map[string]any)
			msg, _ := eb["message"].(string)
			if !strings.Contains(msg, tc.want) || eb["code"] == "" {
				t.Fatalf("error body %v does not say %q", out, tc.want)
			}
			if header == "" || strings.Contains(header, "\n") {
				t.Fatalf("Nats-Service-Error header %q", header)
			}
		})
	}
	if after := e.written(t); after != before {
		t.Fatalf("refused requests wrote %d messages", after-before)
	}
}

func TestRequestIDIsIdempotent(t *testing.T) {
	e := start(t, app.Options{NoDispatcher: true, NoSample: true})
	body := addBody("jack")
	body["requestId"] = "req-1"
	r1 := e.ok(t, "prov.cmd.demo.add", body)
	n := e.streamMsgs(t)
	r2 := e.ok(t, "prov.cmd.demo.add", body)
	if fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Fatalf("replies differ: %v vs %v", r1, r2)
	}
	if e.streamMsgs(t) != n {
		t.Fatal("the retry wrote events")
	}
	// Concurrent retries of a new request: one set of events, one reply.
	body2 := addBody("anne")
	body2["requestId"] = "req-2"
	var wg sync.WaitGroup
	replies := make([]string, 8)
	for i := range replies {
		wg.Go(func() {
			b, _ := json.Marshal(body2)
			m, err := e.nc.Request("prov.cmd.demo.add", b, 10*time.Second)
			if err == nil {
				replies[i] = string(m.Data)
			}
		})
	}
	wg.Wait()
	for _, r := range replies[1:] {
		if r != replies[0] || !strings.Contains(r, "shadowId") {
			t.Fatalf("concurrent retries answered differently:\n%s", strings.Join(replies, "\n"))
		}
	}
	if got := e.streamMsgs(t); got != n+1 {
		t.Fatalf("%d commits for one request", got-n)
	}
	// The same id with another body is refused.
	body3 := addBody("other")
	body3["requestId"] = "req-1"
	b, _ := json.Marshal(body3)
	if _, code, _ := e.request(t, "prov.cmd.demo.add", b); code != "409" {
		t.Fatalf("reused request id: code %q, want 409", code)
	}
	// Request ids are per resource: nothing else to test with one resource; a modify with the
	// same request id as an add is a different body, so it is refused too.
	b, _ = json.Marshal(map[string]any{"requestId": "req-1", "shadowId": r1["shadowId"], "changes": map[string]any{"a": map[string]any{"add": []any{"b"}}}})
	if _, code, _ := e.request(t, "prov.cmd.demo.modify", b); code != "409" {
		t.Fatalf("request id reused by a modify: %q", code)
	}
}

// Beyond JetStream's dedup window the durable request record answers.
func TestRequestIDBeyondDedupWindow(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	ctx := t.Context()
	cfg := eventstore.DefaultConfig()
	cfg.DuplicateWindow = 200 * time.Millisecond
	if _, err := eventstore.Open(ctx, nc, cfg); err != nil { // the stream exists with a short window
		t.Fatal(err)
	}
	store, err := eventstore.Open(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := app.DefaultConfig().Catalog()
	svc := service.New(store, nil, cat, nil)
	req := service.Request{Verb: "add", Resource: "demo", RequestID: "late", Fingerprint: "f", ObjectClass: "AccountObjectClass",
		Attributes: domain.Attributes{"login": {"late"}}}
	r1, err := svc.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	r2, err := svc.Provision(ctx, req)
	if err != nil || r2 != r1 {
		t.Fatalf("after the dedup window: %+v %v, want %+v", r2, err, r1)
	}
}

func TestSecondaryIdentifierIsUnique(t *testing.T) {
	e := start(t, app.Options{NoDispatcher: true, NoSample: true})
	const n = 12
	var wg sync.WaitGroup
	type result struct {
		out  map[string]any
		code string
	}
	results := make([]result, n)
	for i := range n {
		wg.Go(func() {
			b, _ := json.Marshal(addBody("racer"))
			m, err := e.nc.Request("prov.cmd.demo.add", b, 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			var out map[string]any
			_ = json.Unmarshal(m.Data, &out)
			results[i] = result{out, m.Header.Get("Nats-Service-Error-Code")}
		})
	}
	wg.Wait()
	var winner string
	for _, r := range results {
		if r.code == "" {
			if winner != "" {
				t.Fatalf("two adds of the same login succeeded: %s and %s", winner, r.out["shadowId"])
			}
			winner = r.out["shadowId"].(string)
		}
	}
	if winner == "" {
		t.Fatal("no add succeeded")
	}
	for _, r := range results {
		if r.code != "" {
			msg := r.out["error"].(map[string]any)["message"].(string)
			if r.code != "409" || !strings.Contains(msg, winner) {
				t.Fatalf("loser got %s %q, want 409 naming %s", r.code, msg, winner)
			}
		}
	}
	// A rename claims the new login and frees the old one once it completes.
	e.ok(t, "prov.cmd.demo.add", addBody("other"))
	b, _ := json.Marshal(map[string]any{"shadowId": winner, "changes": map[string]any{"login": map[string]any{"replace": []any{"other"}}}})
	if _, code, _ := e.request(t, "prov.cmd.demo.modify", b); code != "409" {
		t.Fatalf("rename onto a taken login: %q, want 409", code)
	}
}

func TestConcurrentModifiesLoseNothing(t *testing.T) {
	e := start(t, app.Options{NoDispatcher: true, NoSample: true})
	id := e.ok(t, "prov.cmd.demo.add", addBody("busy"))["shadowId"].(string)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b, _ := json.Marshal(map[string]any{"shadowId": id, "changes": map[string]any{"tag": map[string]any{"add": []any{fmt.Sprint(i)}}}})
			m, err := e.nc.Request("prov.cmd.demo.modify", b, 10*time.Second)
			if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
				t.Errorf("modify %d: %v %s", i, err, m.Data)
			}
		})
	}
	wg.Wait()
	d, err := e.app.Service.Shadow(t.Context(), id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(d.PendingOperations); got != n+1 {
		t.Fatalf("%d operations, want %d", got, n+1)
	}
}

func TestModifyAndDeleteByIdentifiersAndAsOf(t *testing.T) {
	e := start(t, app.Options{})
	r := e.ok(t, "prov.cmd.demo.add", addBody("jack"))
	id := r["shadowId"].(string)
	waitLive(t, e, id)
	mid := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	e.ok(t, "prov.cmd.demo.modify", map[string]any{"identifiers": map[string]any{"login": []any{"jack"}},
		"changes": map[string]any{"fullName": map[string]any{"replace": []any{"Jack"}}}})
	d, _ := e.app.Service.Shadow(t.Context(), id, time.Time{})
	uid := d.PrimaryIdentifiers["uid"][0]
	// By primary identifier too.
	e.ok(t, "prov.cmd.demo.delete", map[string]any{"identifiers": map[string]any{"uid": []any{uid}}})
	past := e.ok(t, "prov.query.shadow", map[string]any{"shadowId": id, "asOf": mid.Format(time.RFC3339Nano)})
	if len(past["pendingOperations"].([]any)) != 1 || past["lifecycleState"] != "live" {
		t.Fatalf("as of %s: %v", mid, past)
	}
	if _, code, _ := e.request(t, "prov.query.shadow", []byte(`{"shadowId":"`+id+`","asOf":"2000-01-01T00:00:00Z"}`)); code != "404" {
		t.Fatalf("before creation: %q, want 404", code)
	}
}

func waitLive(t *testing.T, e *env, id string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		d, err := e.app.Service.Shadow(t.Context(), id, time.Time{})
		if err == nil && d.LifecycleState == domain.LifecycleLive {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("shadow %s not live", id)
}

func TestTwoInstancesShareTheWork(t *testing.T) {
	srv := natstest.Start(t)
	a := startOn(t, srv, app.Options{})
	b := startOn(t, srv, app.Options{})
	const n = 30
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	for i := range n {
		wg.Go(func() {
			c := a
			if i%2 == 1 {
				c = b
			}
			out := c.ok(t, "prov.cmd.demo.add", addBody(fmt.Sprint("user", i)))
			mu.Lock()
			ids[out["shadowId"].(string)] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	// Same login on both instances at once: still only one.
	var wins int
	var wg2 sync.WaitGroup
	for _, c := range []*env{a, b, a, b} {
		wg2.Go(func() {
			bb, _ := json.Marshal(addBody("both"))
			m, err := c.nc.Request("prov.cmd.demo.add", bb, 10*time.Second)
			if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg2.Wait()
	if wins != 1 {
		t.Fatalf("%d instances accepted the same login", wins)
	}
	for id := range ids {
		waitLive(t, a, id)
	}
	kv, _ := a.js.KeyValue(t.Context(), "PROV_SHADOWS")
	deadline := time.Now().Add(10 * time.Second)
	for id := range ids {
		for {
			en, err := kv.Get(t.Context(), "demo."+id)
			if err == nil && bytes.Contains(en.Value(), []byte(`"live"`)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("projection of %s not live", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestProjectionCatchesUpAfterKill(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	ctx := t.Context()
	// The service appends, but its projector and dispatcher are gone (killed right after append).
	a, err := app.Start(ctx, nc, app.DefaultConfig(), app.Options{NoDispatcher: true, NoSample: true, NoProjector: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 20 {
		r, err := a.Service.Provision(ctx, service.Request{Verb: "add", Resource: "demo", ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {fmt.Sprint("k", i)}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ShadowID)
	}
	a.Close()
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, "PROV_SHADOWS")
	if _, err := kv.Get(ctx, "demo."+ids[0]); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("projection written without a projector: %v", err)
	}
	// Restart: the durable projector catches up and the dispatcher sends what was pending.
	b := startOn(t, srv, app.Options{})
	for _, id := range ids {
		waitLive(t, b, id)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			en, err := kv.Get(ctx, "demo."+id)
			if err == nil && bytes.Contains(en.Value(), []byte(`"live"`)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("projection of %s did not catch up: %v", id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	list, err := b.app.Pending.Pending(ctx, "demo")
	if err != nil || len(list) != 0 {
		t.Fatalf("pending after catch-up: %d %v", len(list), err)
	}
	_ = context.Background
}

// A burst on one account queues instead of failing: 50 clients send 200 modifies of one shadow
// at once, through two service instances (so optimistic concurrency still decides between
// processes); every one is answered and recorded.
func TestBurstOnOneShadowQueues(t *testing.T) {
	srv := natstest.Start(t)
	e := startOn(t, srv, app.Options{NoDispatcher: true, NoSample: true})
	startOn(t, srv, app.Options{NoDispatcher: true, NoSample: true, NoProjector: true})
	id := e.ok(t, "prov.cmd.demo.add", addBody("burst"))["shadowId"].(string)
	const clients, each = 50, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := map[string]int{}
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				b, _ := json.Marshal(map[string]any{"shadowId": id, "changes": map[string]any{"tag": map[string]any{"add": []any{fmt.Sprint(c, "-", i)}}}})
				m, err := e.nc.Request("prov.cmd.demo.modify", b, 30*time.Second)
				if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
					mu.Lock()
					if err != nil {
						failed[err.Error()]++
					} else {
						failed[m.Header.Get("Nats-Service-Error-Code")+" "+m.Header.Get("Nats-Service-Error")]++
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("failed requests: %v", failed)
	}
	st, _, err := e.app.Store.Load(t.Context(), "demo", id)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.Data().PendingOperations); got != clients*each+1 {
		t.Fatalf("%d operations, want %d", got, clients*each+1)
	}
}

// manyAttributes is an add with a login and n more attributes.
func manyAttributes(n int) string {
	var b strings.Builder
	b.WriteString(`{"objectClass":"AccountObjectClass","attributes":{"login":["many"]`)
	for i := range n {
		fmt.Fprintf(&b, `,"a%d":["v"]`, i)
	}
	b.WriteString("}}")
	return b.String()
}

// A shadow that would outgrow one NATS message is refused with a 400 that says so (a permanent
// problem, not a retryable 503), and nothing of the refused modify is written.
func TestShadowSizeLimit(t *testing.T) {
	e := startOn(t, natstest.StartWith(t, embedded.Options{MaxPayload: 1 << 20}), app.Options{NoDispatcher: true, NoSample: true})
	id := e.ok(t, "prov.cmd.demo.add", addBody("big"))["shadowId"].(string)
	chunk := strings.Repeat("p", 60<<10)
	for i := range 40 {
		vals := make([]string, 15)
		for j := range vals {
			vals[j] = fmt.Sprint(i, "-", j, chunk)
		}
		b, _ := json.Marshal(map[string]any{"shadowId": id, "changes": map[string]any{"photo": map[string]any{"add": vals}}})
		before := e.written(t)
		out, code, _ := e.request(t, "prov.cmd.demo.modify", b)
		if code == "" {
			continue
		}
		msg := fmt.Sprint(out["error"])
		if code != "400" || !strings.Contains(msg, "over the") || !strings.Contains(msg, "max_payload") {
			t.Fatalf("modify %d: code %s %s, want 400 naming the payload limit", i, code, msg)
		}
		if after := e.written(t); after != before {
			t.Fatalf("the refused modify wrote %d messages", after-before)
		}
		return
	}
	t.Fatal("40 modifies of 900 KB each never reached the payload limit")
}

// prov.query.pending answers a page at a time: a backlog larger than one NATS message is paged
// (the page shrinks until it fits) and the pages together list every pending shadow once.
func TestPendingIsPaged(t *testing.T) {
	// A server with NATS' default 1 MB payload limit: 40 shadows of 60 KB do not fit one reply.
	e := startOn(t, natstest.StartWith(t, embedded.Options{MaxPayload: 1 << 20}), app.Options{NoDispatcher: true, NoSample: true})
	const n = 40
	big := []any{strings.Repeat("b", 60<<10)}
	for i := range n {
		body := addBody(fmt.Sprint("p", i))
		body["attributes"].(map[string]any)["blob"] = big
		e.ok(t, "prov.cmd.demo.add", body)
	}
	page := func(body string) (list []any, total float64, next string) {
		out, code, msg := e.request(t, "prov.query.pending", []byte(body))
		if code != "" {
			t.Fatalf("pending %s: %s %s", body, code, msg)
		}
		list, _ = out["shadows"].([]any)
		total, _ = out["total"].(float64)
		next, _ = out["next"].(string)
		return list, total, next
	}
	waitFor(t, "every shadow in the pending index", 20*time.Second, func() bool { _, total, _ := page(`{"limit":1}`); return total == n })
	// ~2.4 MB in all: the default page of 100 does not fit and ends early.
	first, _, next := page(`{}`)
	if len(first) == 0 || len(first) >= n || next == "" {
		t.Fatalf("first page: %d shadows, next %q", len(first), next)
	}
	seen := map[string]bool{}
	for _, s := range first {
		seen[s.(map[string]any)["shadowId"].(string)] = true
	}
	for pages := 1; next != ""; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		var list []any
		list, _, next = page(fmt.Sprintf(`{"after":%q,"limit":1000}`, next))
		for _, s := range list {
			id := s.(map[string]any)["shadowId"].(string)
			if seen[id] {
				t.Fatalf("shadow %s listed twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("pages listed %d of %d shadows", len(seen), n)
	}
	if list, _, next := page(`{"limit":7}`); len(list) != 7 || next == "" {
		t.Fatalf("limit 7: %d shadows, next %q", len(list), next)
	}
	for _, bad := range []string{`{"limit":1001}`, `{"limit":-1}`} {
		if _, code, _ := e.request(t, "prov.query.pending", []byte(bad)); code != "400" {
			t.Fatalf("%s: code %q, want 400", bad, code)
		}
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A refusal is a request id's answer for good (issue 23): the sequence that created an account
// for a request id answered 409. Add login z; maintenance on; delete it; add z again (409: z is
// still held by the shadow whose delete waits); maintenance off, the delete completes and z is
// free; the same request re-sent gets the same 409, while a new request id gets the login.
// A 404 (a modify addressed by a login no shadow holds yet) is kept the same way, and twins of a
// refused request, sent at once, all get the one refusal.
func TestARefusalIsTheRequestIDsAnswerForGood(t *testing.T) {
	e := start(t, app.Options{})
	send := func(subject string, body map[string]any) (map[string]any, string, string) {
		b, _ := json.Marshal(body)
		return e.request(t, subject, b)
	}
	z1 := addBody("z")
	z1["requestId"] = "z1"
	first := e.ok(t, "prov.cmd.demo.add", z1)
	id := first["shadowId"].(string)
	waitFor(t, "z live", 10*time.Second, func() bool {
		out, code, _ := send("prov.query.shadow", map[string]any{"shadowId": id})
		return code == "" && out["lifecycleState"] == "live"
	})
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": true, "reason": "test"})
	e.ok(t, "prov.cmd.demo.delete", map[string]any{"requestId": "z2", "shadowId": id})
	// The release at the end of maintenance lists the waiting shadows from the projection: the
	// delete must be there first (the sweep would release it otherwise, a minute later).
	kv, err := e.js.KeyValue(t.Context(), "PROV_SHADOWS")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete in the projection", 10*time.Second, func() bool {
		en, err := kv.Get(t.Context(), "demo."+id)
		return err == nil && strings.Contains(string(en.Value()), `"changeType":"delete"`)
	})
	z3 := addBody("z")
	z3["requestId"] = "z3"
	refused, code, _ := send("prov.cmd.demo.add", z3)
	if code != "409" {
		t.Fatalf("add of a held login: %s %v, want 409", code, refused)
	}
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": false})
	waitFor(t, "z deleted", 20*time.Second, func() bool {
		out, code, _ := send("prov.query.shadow", map[string]any{"shadowId": id})
		return code == "" && out["dead"] == true
	})
	before := e.streamMsgs(t)
	again, code, _ := send("prov.cmd.demo.add", z3)
	if code != "409" || fmt.Sprint(again) != fmt.Sprint(refused) {
		t.Fatalf("re-sent refused request: %s %v, want the first answer 409 %v", code, again, refused)
	}
	if e.streamMsgs(t) != before {
		t.Fatal("the re-sent refused request wrote events")
	}
	z4 := addBody("z")
	z4["requestId"] = "z4"
	e.ok(t, "prov.cmd.demo.add", z4) // the login is free: the 409 above is the recorded answer

	mod := map[string]any{"requestId": "m1", "identifiers": map[string]any{"login": []any{"late"}},
		"changes": map[string]any{"fullName": map[string]any{"replace": []any{"L"}}}}
	notFound, code, _ := send("prov.cmd.demo.modify", mod)
	if code != "404" {
		t.Fatalf("modify of nobody: %s %v", code, notFound)
	}
	e.ok(t, "prov.cmd.demo.add", addBody("late"))
	if again, code, _ := send("prov.cmd.demo.modify", mod); code != "404" || fmt.Sprint(again) != fmt.Sprint(notFound) {
		t.Fatalf("re-sent 404: %s %v, want %v", code, again, notFound)
	}

	twin := addBody("late")
	twin["requestId"] = "t1"
	answers := make([]string, 8)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			out, code, _ := send("prov.cmd.demo.add", twin)
			answers[i] = code + fmt.Sprint(out)
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a != answers[0] || !strings.HasPrefix(a, "409") {
			t.Fatalf("twins of a refused request answered differently:\n%s", strings.Join(answers, "\n"))
		}
	}
}
