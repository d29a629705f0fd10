package app_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/projections"
)

// Reconciliation of the sample target, whose bucket was edited by hand while nothing notified
// shadowbridge: the changed account's cache follows it, the deleted one's shadow dies, the one
// created by hand gets a shadow, the untouched one stays; a second request while it runs joins
// it; the run's counts say so, and verify is clean.
func TestReconciliationOfTheSampleTarget(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{NoSampleEdits: true})
	ctx := t.Context()
	ids := map[string]string{}
	uids := map[string]string{}
	for _, login := range []string{"changed", "deleted", "untouched"} {
		id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass",
			"attributes": map[string]any{"login": []any{login}, "fullName": []any{login}}})["shadowId"].(string)
		ids[login] = id
		uids[login] = e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive }).PrimaryIdentifiers["uid"][0].(string)
	}
	js, _ := jetstream.New(e.nc)
	accounts, err := js.KeyValue(ctx, "PROV_SAMPLE_ACCOUNTS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Put(ctx, "demo."+uids["changed"], []byte(`{"login":["changed"],"fullName":["Changed By Hand"]}`)); err != nil {
		t.Fatal(err)
	}
	if err := accounts.Delete(ctx, "demo."+uids["deleted"]); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Put(ctx, "demo.u-hand", []byte(`{"login":["byhand"],"fullName":["By Hand"]}`)); err != nil {
		t.Fatal(err)
	}

	out := e.ok(t, "prov.cmd.demo.reconcile", map[string]any{"requestId": "recon-1"})
	run := out["reconciliationId"].(string)
	if again := e.ok(t, "prov.cmd.demo.reconcile", map[string]any{"requestId": "recon-1"}); again["reconciliationId"] != run {
		t.Fatalf("the same request id: %v, want %s", again, run)
	}
	var res domain.ResourceData
	waitFor(t, "the run finished", 30*time.Second, func() bool {
		r, err := e.app.Service.ResourceState(ctx, "demo")
		res = r
		return err == nil && r.Reconciliation != nil && r.Reconciliation.ID == run && r.Reconciliation.State != domain.RunRunning
	})
	got := res.Reconciliation
	want := domain.ReconciliationCounts{Accounts: 3, Unchanged: 1, Changed: 1, Discovered: 1, Gone: 1}
	if got.State != domain.RunFinished || got.Counts != want || !got.LastPage {
		t.Fatalf("run %+v, want finished with %+v", got, want)
	}
	if a := shadowOf(t, e, ids["changed"]); a.Attributes["fullName"][0] != "Changed By Hand" {
		t.Errorf("changed: %v", a.Attributes)
	}
	if d := shadowOf(t, e, ids["deleted"]); !d.Dead {
		t.Errorf("deleted on the target, the shadow lives: %+v", d)
	}
	if owner, err := e.app.Service.Resolve(ctx, "demo", "AccountObjectClass", domain.Attributes{"uid": {"u-hand"}}); err != nil || owner == "" {
		t.Errorf("the account made by hand has no shadow: %v", err)
	}
	waitFor(t, "the projection", 10*time.Second, func() bool {
		rep, err := projections.Verify(ctx, e.app.Store, e.kv, projections.VerifyOptions{Full: true, Recheck: 500 * time.Millisecond})
		return err == nil && rep.Violations() == 0
	})

	// A second run finds nothing more to do.
	out = e.ok(t, "prov.cmd.demo.reconcile", map[string]any{})
	waitFor(t, "the second run finished", 30*time.Second, func() bool {
		r, err := e.app.Service.ResourceState(ctx, "demo")
		res = r
		return err == nil && r.Reconciliation.ID == out["reconciliationId"] && r.Reconciliation.State == domain.RunFinished
	})
	if c := res.Reconciliation.Counts; c.Changed+c.Discovered+c.Gone != 0 || c.Accounts != 3 {
		t.Fatalf("second run: %+v", c)
	}
}

func shadowOf(t *testing.T, e *env, id string) domain.ShadowData {
	t.Helper()
	st, _, err := e.app.Store.Load(t.Context(), "demo", id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Data()
}

// A reconciliation racing a burst of modifies of the same accounts undoes none of them: every
// shadow ends with its last acknowledged change, equal to the target's account.
func TestReconciliationRacingModifies(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{NoSampleEdits: true})
	ctx := t.Context()
	const n = 20
	ids := make([]string, n)
	for i := range n {
		ids[i] = e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass",
			"attributes": map[string]any{"login": []any{fmt.Sprint("race", i)}, "v": []any{"0"}}})["shadowId"].(string)
	}
	for _, id := range ids {
		e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for k := 1; k <= 5; k++ {
				e.ok(t, "prov.cmd.demo.modify", map[string]any{"shadowId": id, "changes": map[string]any{"v": map[string]any{"replace": []any{fmt.Sprint(k)}}}})
			}
		})
	}
	runs := 0
	for range 3 { // runs while the modifies go on
		out := e.ok(t, "prov.cmd.demo.reconcile", map[string]any{})
		waitFor(t, "the run finished", 30*time.Second, func() bool {
			r, err := e.app.Service.ResourceState(ctx, "demo")
			return err == nil && r.Reconciliation.ID == out["reconciliationId"] && r.Reconciliation.State == domain.RunFinished
		})
		runs++
	}
	wg.Wait()
	js, _ := jetstream.New(e.nc)
	accounts, err := js.KeyValue(ctx, "PROV_SAMPLE_ACCOUNTS")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		d := e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return len(d.Attributes["v"]) == 1 && d.Attributes["v"][0] == "5" })
		for _, typ := range history(t, e.app, id) {
			if typ == "AccountChanged" || typ == "AccountGone" {
				t.Fatalf("shadow %s: a reconciliation took a change on its way for drift (%s)", id, typ)
			}
		}
		en, err := accounts.Get(ctx, "demo."+d.PrimaryIdentifiers["uid"][0].(string))
		if err != nil || !strings.Contains(string(en.Value()), `"v":["5"]`) {
			t.Fatalf("account of %s at the target: %s %v", id, en.Value(), err)
		}
	}
	t.Logf("%d runs during %d x 5 modifies", runs, n)
}
