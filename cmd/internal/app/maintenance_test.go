package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// Maintenance (over NATS, as an administrator sets it) holds every operation: a new add and a
// retry that falls due both wait without reaching the broker and without counting attempts; the
// end of maintenance releases them at once, in order.
func TestMaintenanceHoldsOperationsWithoutCountingAttempts(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "maintenance")
	proxy := amqptest.ReserveProxy(t, b.HostPort())
	url := b.Via(proxy)
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: {url: %q, address: %q}}
    consistency: {operationRetryPeriod: 1s, operationRetryMaxAttempts: 2}
`, url, q))
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg, app.Options{SweepInterval: 500 * time.Millisecond})

	// Broker unreachable: the first attempt fails and the operation waits for its retry.
	retried := add(t, e.app, "retried").ShadowID
	waitFor(t, "first attempt failed", 15*time.Second, func() bool {
		p := shadow(t, e.app, retried).PendingOperations[0]
		return p.Type == domain.TypeRetry && p.AttemptNumber == 1
	})
	// Bad requests are refused and change nothing.
	for _, body := range []string{`{}`, `{"maintenance":"yes"}`, `{"maintenance":true,"why":"x"}`} {
		if _, code := e.call(t, "prov.cmd.fs.maintenance", body); code != "400" {
			t.Fatalf("maintenance %s: code %q, want 400", body, code)
		}
	}
	if _, code := e.call(t, "prov.cmd.nope.maintenance", `{"maintenance":true}`); code != "404" {
		t.Fatalf("unknown resource: code %q, want 404", code)
	}
	st := e.ok(t, "prov.cmd.fs.maintenance", map[string]any{"maintenance": true, "reason": "upgrade"})
	if st["administrativeAvailabilityStatus"] != "maintenance" {
		t.Fatalf("reply %v", st)
	}
	proxy.Restore() // the broker is back, but the resource is in maintenance

	held := add(t, e.app, "held").ShadowID
	r := b.Receiver(t, q)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second) // retry period 1s, sweep 0.5s: several chances to leak
	m, err := r.Receive(ctx, nil)
	cancel()
	if err == nil {
		t.Fatalf("a message reached the broker in maintenance: %v", m.ApplicationProperties)
	}
	if p := shadow(t, e.app, held).PendingOperations[0]; p.ExecutionStatus != domain.StatusRequested || p.AttemptNumber != 0 {
		t.Fatalf("new add in maintenance: %+v", p)
	}
	if p := shadow(t, e.app, retried).PendingOperations[0]; p.AttemptNumber != 1 || p.Completed() {
		t.Fatalf("retry in maintenance (max attempts 2): %+v", p)
	}
	res := e.ok(t, "prov.query.resource", map[string]any{"resource": "fs"})
	if res["administrativeAvailabilityStatus"] != "maintenance" {
		t.Fatalf("resource %v", res)
	}

	e.ok(t, "prov.cmd.fs.maintenance", map[string]any{"maintenance": false})
	msgs := amqptest.ReceiveN(t, r, 2, 20*time.Second)
	attempts := map[string]string{}
	for _, m := range msgs {
		attempts[fmt.Sprint(m.ApplicationProperties["shadowId"])] = fmt.Sprint(m.ApplicationProperties["attempt"])
	}
	if attempts[held] != "1" || attempts[retried] != "2" {
		t.Fatalf("attempts after maintenance: %v", attempts)
	}
	for _, id := range []string{held, retried} {
		waitFor(t, "delivered after maintenance", 10*time.Second, func() bool { return shadow(t, e.app, id).Exists })
	}
	res = e.ok(t, "prov.query.resource", map[string]any{"resource": "fs"})
	if ch, _ := res["administrativeChanges"].([]any); len(ch) != 2 {
		t.Fatalf("administrative changes %v", res["administrativeChanges"])
	}
}
