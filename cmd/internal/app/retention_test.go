package app_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// Grace, retention and dead-shadow expiry driven by timers, on the demo resource with short
// periods: gestating -> live, the completed add leaves the shadow, a deleted shadow is a corpse,
// then a tombstone, then leaves the projection while its events stay in the log.
func TestGraceRetentionAndExpiryEndToEnd(t *testing.T) {
	cfg := app.DefaultConfig()
	d := app.Duration(time.Second)
	r := app.Duration(2 * time.Second)
	x := app.Duration(3 * time.Second)
	cfg.Resources[0].Consistency = app.ConsistencyConfig{PendingOperationGracePeriod: &d, PendingOperationRetentionPeriod: &r, DeadShadowRetentionPeriod: &x}
	e := start(t, cfg, app.Options{SweepInterval: -1})
	out := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"jack"}}})
	id := out["shadowId"].(string)
	e.waitShadow(t, "demo", id, func(s domain.ShadowData) bool { return s.LifecycleState == domain.LifecycleGestating })
	e.waitShadow(t, "demo", id, func(s domain.ShadowData) bool { return s.LifecycleState == domain.LifecycleLive })
	e.waitShadow(t, "demo", id, func(s domain.ShadowData) bool { return len(s.PendingOperations) == 0 })
	e.ok(t, "prov.cmd.demo.delete", map[string]any{"shadowId": id})
	e.waitShadow(t, "demo", id, func(s domain.ShadowData) bool { return s.LifecycleState == domain.LifecycleCorpse })
	e.waitShadow(t, "demo", id, func(s domain.ShadowData) bool { return s.LifecycleState == domain.LifecycleTombstone })
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.kv.Get(t.Context(), "demo."+id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired shadow still in the projection: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h := e.ok(t, "prov.query.history", map[string]any{"shadowId": id})
	last := h["events"].([]any)
	if typ := last[len(last)-1].(map[string]any)["type"]; typ != "ShadowExpired" && typ != "TimerCleared" {
		t.Fatalf("last event %v", typ)
	}
}
