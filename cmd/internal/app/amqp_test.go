package app_test

import (
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

	"github.com/Azure/go-amqp"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

func amqpConfig(t testing.TB, url, requests, confirmations string, confirm bool) app.Config {
	t.Helper()
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp: {url: %q, address: %q, confirmationAddress: %q}}
    operationExecutionConfirmation: %v
    consistency: {operationRetryMaxAttempts: 100}
`, url, requests, confirmations, confirm))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// targetSystem consumes requests and confirms each one, assigning uids on add.
func targetSystem(ctx context.Context, t testing.TB, b amqptest.Broker, requests, confirmations string) {
	r := b.Receiver(t, requests)
	s := b.Sender(t, confirmations)
	go func() {
		for {
			m, err := r.Receive(ctx, nil)
			if err != nil {
				return
			}
			var req map[string]any
			_ = json.Unmarshal([]byte(m.Value.(string)), &req)
			body := `{"resultStatus":"success","message":"done"}`
			if req["operation"] == "add" {
				body = fmt.Sprintf(`{"resultStatus":"success","primaryIdentifiers":{"uid":["u-%s"]}}`, m.ApplicationProperties["shadowId"].(string)[:8])
			}
			cm := &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: m.Properties.MessageID}, Value: body}
			if err := s.Send(ctx, cm, nil); err != nil {
				return
			}
			_ = r.AcceptMessage(ctx, m)
		}
	}()
}

func add(t *testing.T, a *app.App, login string) service.Reply {
	t.Helper()
	r, err := a.Service.Provision(t.Context(), service.Request{Verb: "add", Resource: "fs", ObjectClass: "AccountObjectClass",
		Attributes: domain.Attributes{"login": {login}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shadow(t *testing.T, a *app.App, id string) domain.ShadowData {
	st, _, err := a.Store.Load(t.Context(), "fs", id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Data()
}

func TestAMQPRequestsAndConfirmationsEndToEnd(t *testing.T) {
	b := amqptest.Start(t)
	req, conf := b.Queue(t, "e2e-requests"), b.Queue(t, "e2e-confirmations")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	targetSystem(ctx, t, b, req, conf)
	e := start(t, amqpConfig(t, b.URL, req, conf, true), app.Options{})
	var ids []string
	for i := range 20 {
		ids = append(ids, add(t, e.app, fmt.Sprint("user", i)).ShadowID)
	}
	for _, id := range ids {
		// The confirmation may overtake the dispatcher's report of the delivery; the report,
		// recorded after it, fills in the reference.
		waitFor(t, "live "+id, 20*time.Second, func() bool {
			d := shadow(t, e.app, id)
			return d.LifecycleState == domain.LifecycleLive && len(d.PrimaryIdentifiers["uid"]) == 1 &&
				d.PendingOperations[0].AsynchronousOperationReference != ""
		})
		p := shadow(t, e.app, id).PendingOperations[0]
		if p.AsynchronousOperationReference != p.ID || p.ResultStatus != domain.ResultSuccess {
			t.Fatalf("operation %+v", p)
		}
	}
	// A modify travels with the confirmed uid.
	r, err := e.app.Service.Provision(t.Context(), service.Request{Verb: "modify", Resource: "fs", ShadowID: ids[0],
		Changes: domain.Changes{"fullName": {Replace: []any{"Jack"}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "modify confirmed", 20*time.Second, func() bool {
		p, _ := restoreOp(shadow(t, e.app, ids[0]), r.OperationID)
		return p.ResultStatus == domain.ResultSuccess
	})
}

func restoreOp(d domain.ShadowData, id string) (domain.PendingOperation, bool) {
	for _, p := range d.PendingOperations {
		if p.ID == id {
			return p, true
		}
	}
	return domain.PendingOperation{}, false
}

// The broker is unreachable when the service starts: operations are accepted and stay pending as
// retries; when the broker is reachable, a refresh delivers every one of them.
func TestAMQPBrokerUnreachableAtStart(t *testing.T) {
	for _, b := range amqptest.Matrix(t) {
		t.Run(b.Name, func(t *testing.T) { testAMQPBrokerUnreachableAtStart(t, b) })
	}
}

func testAMQPBrokerUnreachableAtStart(t *testing.T, b amqptest.Broker) {
	q := b.Queue(t, "down-at-start")
	proxy := amqptest.ReserveProxy(t, b.HostPort()) // refuses connections for now
	url := b.Via(proxy)
	e := start(t, amqpConfig(t, url, q, "", false), app.Options{})
	var ids []string
	for i := range 10 {
		ids = append(ids, add(t, e.app, fmt.Sprint("u", i)).ShadowID)
	}
	for _, id := range ids {
		waitFor(t, "failed attempt recorded", 20*time.Second, func() bool {
			p := shadow(t, e.app, id).PendingOperations[0]
			return p.AttemptNumber == 1 && p.Type == domain.TypeRetry
		})
		p := shadow(t, e.app, id).PendingOperations[0]
		if p.Completed() || p.ExecutionStatus != domain.StatusExecuting || p.LastError.Category != domain.CategoryCommunication {
			t.Fatalf("pending operation %+v", p)
		}
	}
	waitFor(t, "resource down while the broker is unreachable", 10*time.Second, func() bool {
		res, err := e.app.Service.ResourceState(t.Context(), "fs")
		return err == nil && res.Availability == domain.AvailabilityDown && len(res.Changes) == 1
	})
	proxy.Restore()
	r := b.Receiver(t, q)
	waitFor(t, "all delivered after recovery", 30*time.Second, func() bool {
		if _, err := e.app.Service.Refresh(t.Context(), "fs", "", true); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if !shadow(t, e.app, id).Exists {
				return false
			}
		}
		return true
	})
	waitFor(t, "resource up again", 10*time.Second, func() bool {
		res, err := e.app.Service.ResourceState(t.Context(), "fs")
		return err == nil && res.Availability == domain.AvailabilityUp && len(res.Changes) == 2
	})
	out := e.ok(t, "prov.query.resource", map[string]any{"resource": "fs"})
	if out["availability"] != "up" || len(out["changes"].([]any)) != 2 {
		t.Fatalf("prov.query.resource: %v", out)
	}
	msgs := amqptest.ReceiveN(t, r, len(ids), 10*time.Second)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.ApplicationProperties["shadowId"].(string)] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("shadow %s never reached the broker", id)
		}
	}
}

// The connection is cut while requests flow; after it returns every operation id arrives, and
// the only duplicates are re-sends carrying the same message-id.
func TestAMQPConnectionCutMidStream(t *testing.T) {
	for _, b := range amqptest.Matrix(t) {
		t.Run(b.Name, func(t *testing.T) { testAMQPConnectionCutMidStream(t, b) })
	}
}

func testAMQPConnectionCutMidStream(t *testing.T, b amqptest.Broker) {
	q := b.Queue(t, "cut")
	proxy := amqptest.NewProxy(t, b.HostPort())
	url := b.Via(proxy)
	e := start(t, amqpConfig(t, url, q, "", false), app.Options{})
	r := b.Receiver(t, q)
	var mu sync.Mutex
	got := map[string]int{} // operation id -> deliveries
	bad := ""
	go func() {
		for {
			m, err := r.Receive(context.Background(), nil)
			if err != nil {
				return
			}
			_ = r.AcceptMessage(context.Background(), m)
			id, _ := m.Properties.MessageID.(amqp.UUID)
			mu.Lock()
			if id.String() != m.ApplicationProperties["operationId"] {
				bad = fmt.Sprintf("message-id %v != operationId %v", id, m.ApplicationProperties["operationId"])
			}
			got[id.String()]++
			mu.Unlock()
		}
	}()
	var ops []string
	for i := range 300 {
		ops = append(ops, add(t, e.app, fmt.Sprint("c", i)).OperationID)
		if i == 150 {
			proxy.Cut()
			time.Sleep(200 * time.Millisecond)
			proxy.Restore()
		}
	}
	waitFor(t, "every operation at the broker", 60*time.Second, func() bool {
		if _, err := e.app.Service.Refresh(t.Context(), "fs", "", true); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, op := range ops {
			if got[op] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if bad != "" {
		t.Fatal(bad)
	}
	dups := 0
	for op, n := range got {
		if !slices.Contains(ops, op) {
			t.Fatalf("unknown operation %s at the broker", op)
		}
		dups += n - 1
	}
	t.Logf("%s: %d operations, %d re-sent duplicates (same message-id)", b.Name, len(ops), dups)
	if b.Artemis() && dups > 0 {
		t.Fatalf("Artemis let %d re-sends through: _AMQ_DUPL_ID must drop them", dups)
	}
}

// An AMQP confirmation is read with the NATS confirm command's decoder: a body the confirm
// command refuses (an unknown field, a key given twice, no resultStatus, another operation's id)
// is refused on the confirmation address too, counted as malformed, and leaves the operation
// waiting; the same confirmation written correctly completes it.
func TestAMQPConfirmationsAreReadLikeTheConfirmCommand(t *testing.T) {
	b := amqptest.Start(t)
	req, conf := b.Queue(t, "strict-requests"), b.Queue(t, "strict-confirmations")
	e := start(t, amqpConfig(t, b.URL, req, conf, true), app.Options{})
	r := add(t, e.app, "strict")
	waitFor(t, "sent", 20*time.Second, func() bool {
		return shadow(t, e.app, r.ShadowID).PendingOperations[0].ExecutionStatus == domain.StatusExecuting
	})
	snd := b.Sender(t, conf)
	send := func(body string) {
		m := &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: r.OperationID}, Value: body}
		if err := snd.Send(t.Context(), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	bad := []string{
		`{"resultStatus":"success","primaryIdentifers":{"uid":["u-1"]}}`,
		`{"resultStatus":"success","resultStatus":"fatal_error"}`,
		`{"message":"done"}`,
		`{"resultStatus":"success","operationId":"00000000-0000-4000-8000-000000000000"}`,
	}
	for _, body := range bad {
		send(body)
		// The NATS confirm command refuses the same body (with the operation named).
		natsBody := strings.Replace(body, `{`, fmt.Sprintf(`{"operationId":%q,`, r.OperationID), 1)
		if strings.Contains(body, `"operationId"`) {
			natsBody = body
		}
		msg, err := e.nc.Request("prov.cmd.fs.confirm", []byte(natsBody), 5*time.Second)
		if err != nil || msg.Header.Get("Nats-Service-Error-Code") == "" {
			t.Fatalf("the confirm command took %s: %v %s", natsBody, err, msg.Data)
		}
	}
	rec := httptest.NewRecorder()
	waitFor(t, "the bad confirmations refused", 20*time.Second, func() bool {
		rec = httptest.NewRecorder()
		e.app.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return metric(t, rec.Body.String(), `shadowbridge_confirmations_refused_total{reason="malformed",resource="fs"}`) == float64(len(bad))
	})
	if p := shadow(t, e.app, r.ShadowID).PendingOperations[0]; p.Completed() {
		t.Fatalf("a refused confirmation completed the operation: %+v", p)
	}
	send(`{"resultStatus":"success","primaryIdentifiers":{"uid":["u-1"]}}`)
	waitFor(t, "confirmed", 20*time.Second, func() bool {
		d := shadow(t, e.app, r.ShadowID)
		return d.LifecycleState == domain.LifecycleLive && len(d.PrimaryIdentifiers["uid"]) == 1
	})
}
