package app_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/projections"
)

// One record that is not ours (garbage published on a shadow's subject, or on a resource's) breaks
// nothing for good (issue 23): the shadow's state comes from its last good commit, get, history
// and modify answer, a modify is stored after the bad record, maintenance and the dashboard work,
// the skip is counted, and audit and verify list the record and go on to the end.
func TestARecordThatIsNotOursIsContained(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	ctx := t.Context()
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"requestId": "p-1", "objectClass": "AccountObjectClass",
		"attributes": map[string]any{"login": []any{"poisoned"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	other := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass",
		"attributes": map[string]any{"login": []any{"healthy"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", other, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })

	var bad uint64
	for _, subject := range []string{"prov.evt.demo." + id, "prov.res.demo"} {
		ack, err := e.app.Store.JetStream().Publish(ctx, subject, []byte("not a commit"))
		if err != nil {
			t.Fatal(err)
		}
		if bad == 0 {
			bad = ack.Sequence
		}
	}

	if out, code := e.call(t, "prov.query.shadow", map[string]any{"shadowId": id}); code != "" || out["lifecycleState"] != "live" {
		t.Fatalf("get of the poisoned shadow: %s %v", code, out)
	}
	if out, code := e.call(t, "prov.query.history", map[string]any{"shadowId": id}); code != "" || len(out["events"].([]any)) == 0 {
		t.Fatalf("history of the poisoned shadow: %s %v", code, out)
	}
	e.ok(t, "prov.cmd.demo.modify", map[string]any{"shadowId": id,
		"changes": map[string]any{"fullName": map[string]any{"replace": []any{"After"}}}})
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool {
		return len(d.Attributes["fullName"]) == 1 && d.Attributes["fullName"][0] == "After"
	})
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": true, "reason": "poison"})
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": false})
	rec := httptest.NewRecorder()
	e.app.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/dashboard", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/api/dashboard: %d %s", rec.Code, rec.Body)
	}

	rec = httptest.NewRecorder()
	e.app.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `shadowbridge_records_skipped_total{reader="load"}`) {
		t.Fatal("the skipped records are not counted in /metrics")
	}
	var out bytes.Buffer
	p, err := projections.AuditJSON(ctx, e.app.Store, eventstore.ScanOptions{}, func(projections.HistoryEvent) bool { return true }, &out, nil)
	if err != nil || !slices.Contains(p.Skipped, bad) || !strings.Contains(out.String(), id) {
		t.Fatalf("audit: %v, skipped %v (want %d among them)", err, p.Skipped, bad)
	}

	rep, err := projections.Verify(ctx, e.app.Store, e.kv, projections.VerifyOptions{Full: true, Recheck: time.Second})
	if err != nil {
		t.Fatalf("verify stopped: %v", err)
	}
	if !has(rep, "decode", id, false) {
		t.Fatalf("verify did not list the bad record; findings:\n%s", findings(rep))
	}
	if rep.Shadows < 2 {
		t.Fatalf("verify did not go on past the bad record: %d shadows", rep.Shadows)
	}
}
