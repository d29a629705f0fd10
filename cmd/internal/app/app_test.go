package app_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

type env struct {
	srv *natstest.Server
	nc  *nats.Conn
	app *app.App
	kv  jetstream.KeyValue
}

func start(t testing.TB, cfg app.Config, o app.Options) *env {
	t.Helper()
	srv := natstest.Start(t)
	return startOn(t, srv, cfg, o)
}

func startOn(t testing.TB, srv *natstest.Server, cfg app.Config, o app.Options) *env {
	t.Helper()
	e := startConn(t, srv.Connect(t), cfg, o)
	e.srv = srv
	return e
}

// startConn starts the app on a connection to a server the test started.
func startConn(t testing.TB, nc *nats.Conn, cfg app.Config, o app.Options) *env {
	t.Helper()
	a, err := app.Start(t.Context(), nc, cfg, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), "PROV_SHADOWS")
	if err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, app: a, kv: kv}
}

// call sends a request and returns the decoded reply body and the error code header ("" on success).
func (e *env) call(t *testing.T, subject string, body any) (map[string]any, string) {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		data, _ = json.Marshal(b)
	}
	m, err := e.nc.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var out map[string]any
	if err := json.Unmarshal(m.Data, &out); err != nil {
		t.Fatalf("%s: reply is not JSON: %q", subject, m.Data)
	}
	return out, m.Header.Get("Nats-Service-Error-Code")
}

func (e *env) ok(t *testing.T, subject string, body any) map[string]any {
	t.Helper()
	out, code := e.call(t, subject, body)
	if code != "" {
		t.Fatalf("%s: error %s: %v", subject, code, out)
	}
	return out
}

// waitShadow waits until the projection holds a shadow satisfying cond.
func (e *env) waitShadow(t *testing.T, resource, id string, cond func(domain.ShadowData) bool) domain.ShadowData {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var d domain.ShadowData
	for time.Now().Before(deadline) {
		if en, err := e.kv.Get(t.Context(), resource+"."+id); err == nil {
			d = domain.ShadowData{}
			if err := json.Unmarshal(en.Value(), &d); err != nil {
				t.Fatal(err)
			}
			if cond(d) {
				return d
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("shadow %s never reached the expected state; last: %+v", id, d)
	return d
}

func TestAddThroughSampleTargetBecomesLive(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	r := e.ok(t, "prov.cmd.demo.add", map[string]any{"requestId": "r-1", "objectClass": "AccountObjectClass",
		"attributes": map[string]any{"login": []any{"jack"}, "fullName": []any{"Jack Sparrow"}, "shoeSize": []any{42}}})
	id := r["shadowId"].(string)
	if r["executionStatus"] != "executionPending" || r["resultStatus"] != "in_progress" || r["operationId"] == "" {
		t.Fatalf("add reply: %v", r)
	}
	d := e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	if !d.Exists || len(d.PrimaryIdentifiers["uid"]) != 1 {
		t.Fatalf("live shadow without uid: %+v", d)
	}
	if v, ok := d.Attributes["shoeSize"][0].(float64); !ok || v != 42 { // JSON numbers decode as float64 here
		t.Fatalf("shoeSize = %#v", d.Attributes["shoeSize"])
	}
	raw, _ := e.kv.Get(t.Context(), "demo."+id)
	if !strings.Contains(string(raw.Value()), `"shoeSize":[42]`) {
		t.Fatalf("shoe size lost its number type in the projection: %s", raw.Value())
	}

	// Modify by identifiers, then delete: the shadow ends dead and the login is free again.
	e.ok(t, "prov.cmd.demo.modify", map[string]any{"identifiers": map[string]any{"login": []any{"jack"}},
		"changes": map[string]any{"fullName": map[string]any{"replace": []any{"Jack SPARROW"}}}})
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool {
		return len(d.Attributes["fullName"]) == 1 && d.Attributes["fullName"][0] == "Jack SPARROW"
	})
	e.ok(t, "prov.cmd.demo.delete", map[string]any{"shadowId": id})
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.Dead && d.LifecycleState == domain.LifecycleTombstone })
	r2 := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"jack"}}})
	if r2["shadowId"] == id {
		t.Fatal("a new add reused the dead shadow")
	}

	h := e.ok(t, "prov.query.history", map[string]any{"shadowId": id})
	evs := h["events"].([]any)
	var types []string
	sent := 0
	for _, ev := range evs {
		// OperationSent may come before or after OperationCompleted: the target can confirm
		// before the dispatcher records the delivery.
		// Timer events (retention, expiry) are housekeeping, checked elsewhere.
		switch typ := ev.(map[string]any)["type"].(string); typ {
		case "OperationSent":
			sent++
		case "TimerSet", "TimerCleared":
		default:
			types = append(types, typ)
		}
	}
	want := "AddRequested DispatchRequested OperationCompleted ModifyRequested DispatchRequested OperationCompleted DeleteRequested DispatchRequested OperationCompleted"
	if got := strings.Join(types, " "); got != want || sent != 3 {
		t.Fatalf("history (%d OperationSent, want 3):\n got %s\nwant %s", sent, got, want)
	}
}
