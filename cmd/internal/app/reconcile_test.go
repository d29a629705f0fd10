package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
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

// listingTarget is a target system on AMQP that keeps its accounts (uid -> attributes), applies
// adds, and answers a list request with pages of two accounts on the confirmation address.
func listingTarget(ctx context.Context, t *testing.T, b amqptest.Broker, requests, confirmations string, accounts map[string]map[string][]any, mu *sync.Mutex) {
	r := b.Receiver(t, requests)
	s := b.Sender(t, confirmations)
	send := func(corr any, body any) error {
		data, _ := json.Marshal(body)
		return s.Send(ctx, &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: corr}, Value: string(data)}, nil)
	}
	go func() {
		for {
			m, err := r.Receive(ctx, nil)
			if err != nil {
				return
			}
			var req struct {
				Operation  string           `json:"operation"`
				Attributes map[string][]any `json:"attributes"`
			}
			_ = json.Unmarshal([]byte(m.Value.(string)), &req)
			switch req.Operation {
			case "add":
				uid := "u-" + m.ApplicationProperties["shadowId"].(string)[:8]
				mu.Lock()
				accounts[uid] = req.Attributes
				mu.Unlock()
				err = send(m.Properties.MessageID, map[string]any{"resultStatus": "success", "primaryIdentifiers": map[string][]any{"uid": {uid}}})
			case "list":
				run := m.ApplicationProperties["operationId"].(string)
				mu.Lock()
				var page []map[string]any
				n := 0
				for uid, attrs := range accounts {
					page = append(page, map[string]any{"primaryIdentifiers": map[string][]any{"uid": {uid}}, "attributes": attrs})
					if len(page) == 2 {
						n++
						err = errors.Join(err, send(run, map[string]any{"reconciliationId": run, "page": n, "accounts": page}))
						page = nil
					}
				}
				mu.Unlock()
				n++
				err = errors.Join(err, send(run, map[string]any{"reconciliationId": run, "page": n, "last": true, "accounts": page}))
			}
			if err != nil {
				return
			}
			_ = r.AcceptMessage(ctx, m)
		}
	}()
}

// Reconciliation through Artemis: the list request goes out on the request queue, the target's
// pages come back on the confirmation address, several of them, applied in order.
func TestReconciliationThroughArtemis(t *testing.T) {
	b := amqptest.Artemis(t)
	requests, confirmations := b.Queue(t, "r-requests"), b.Queue(t, "r-confirmations")
	e := start(t, amqpConfig(t, b.URL, requests, confirmations, true), app.Options{})
	accounts := map[string]map[string][]any{}
	var mu sync.Mutex
	listingTarget(t.Context(), t, b, requests, confirmations, accounts, &mu)
	var ids []string
	for i := range 5 {
		r := add(t, e.app, fmt.Sprint("artemis-r", i))
		ids = append(ids, r.ShadowID)
		waitFor(t, "the add confirmed", 20*time.Second, func() bool { return shadow(t, e.app, r.ShadowID).LifecycleState == domain.LifecycleLive })
	}
	mu.Lock()
	uid := shadow(t, e.app, ids[0]).PrimaryIdentifiers["uid"][0].(string)
	accounts[uid] = map[string][]any{"login": {"artemis-r0"}, "mail": {"changed@target"}} // changed on the target
	delete(accounts, shadow(t, e.app, ids[1]).PrimaryIdentifiers["uid"][0].(string))      // deleted there
	accounts["u-outside"] = map[string][]any{"login": {"artemis-outside"}}                // created there
	mu.Unlock()

	out, err := e.app.Service.Reconcile(t.Context(), "fs", "")
	if err != nil {
		t.Fatal(err)
	}
	var res domain.ResourceData
	waitFor(t, "the run finished", 30*time.Second, func() bool {
		r, err := e.app.Service.ResourceState(t.Context(), "fs")
		res = r
		return err == nil && r.Reconciliation != nil && r.Reconciliation.ID == out.ReconciliationID && r.Reconciliation.State != domain.RunRunning
	})
	want := domain.ReconciliationCounts{Accounts: 5, Unchanged: 3, Changed: 1, Discovered: 1, Gone: 1}
	if r := res.Reconciliation; r.State != domain.RunFinished || r.Pages != 3 || r.Counts != want {
		t.Fatalf("run %+v, want finished after 3 pages with %+v", r, want)
	}
	if a := shadow(t, e.app, ids[0]).Attributes; len(a["mail"]) != 1 {
		t.Errorf("the change on the target did not reach the cache: %v", a)
	}
	if !shadow(t, e.app, ids[1]).Dead {
		t.Error("the account deleted on the target left its shadow alive")
	}
	// explain and history say the change came from the target.
	saysTarget(t, e.app, ids[0], "AccountChanged", "changed on the target (seen by reconciliation)", "the target changed mail outside shadowbridge (seen by reconciliation "+out.ReconciliationID)
	saysTarget(t, e.app, ids[1], "AccountGone", "gone from the target (seen by reconciliation)", "the account is gone from the target, deleted outside shadowbridge (seen by reconciliation")
	outside, err := e.app.Service.Resolve(t.Context(), "fs", "AccountObjectClass", domain.Attributes{"uid": {"u-outside"}})
	if err != nil {
		t.Fatal(err)
	}
	saysTarget(t, e.app, outside, "ShadowDiscovered", "found on the target (seen by reconciliation)", "the account was made on the target outside shadowbridge and had no shadow (seen by reconciliation")
}

// saysTarget checks that the shadow's history has an event of type typ with the outcome, and that
// its explanation says why.
func saysTarget(t *testing.T, a *app.App, shadowID, typ, outcome, why string) {
	t.Helper()
	h, err := a.Service.History(t.Context(), shadowID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range h {
		found = found || ev.Type == typ && ev.Outcome == outcome
	}
	if !found {
		t.Errorf("history of %s has no %s with outcome %q: %+v", shadowID, typ, outcome, h)
	}
	x, err := a.Service.Explain(t.Context(), shadowID)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range x.Why {
		if strings.Contains(w, why) {
			return
		}
	}
	t.Errorf("explain of %s does not say %q: %q", shadowID, why, x.Why)
}

// A resource's reconciliation schedule (reconcile: {every: ...}) runs by itself, from a repeating
// schedule in the log; an instance started again finds it armed and does not push it back.
func TestScheduledReconciliation(t *testing.T) {
	old := app.MinReconcileEvery
	app.MinReconcileEvery = time.Second
	t.Cleanup(func() { app.MinReconcileEvery = old })
	cfg := app.DefaultConfig()
	cfg.Resources[0].Reconcile = &app.ReconcileConfig{Every: app.Duration(2 * time.Second)}
	e := start(t, cfg, app.Options{NoSampleEdits: true})
	ctx := t.Context()
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass",
		"attributes": map[string]any{"login": []any{"scheduled"}}})["shadowId"].(string)
	uid := e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive }).PrimaryIdentifiers["uid"][0].(string)
	js, _ := jetstream.New(e.nc)
	accounts, err := js.KeyValue(ctx, "PROV_SAMPLE_ACCOUNTS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Put(ctx, "demo."+uid, []byte(`{"login":["scheduled"],"fullName":["Found By The Schedule"]}`)); err != nil {
		t.Fatal(err)
	}
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool {
		return len(d.Attributes["fullName"]) == 1 && d.Attributes["fullName"][0] == "Found By The Schedule"
	})
	stream, err := js.Stream(ctx, "PROV_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	before, err := stream.GetLastMsgForSubject(ctx, "prov.timer.demo.reconciliation")
	if err != nil {
		t.Fatalf("no schedule in the log: %v", err)
	}
	if err := e.app.Store.EnsureRepeatingTimer(ctx, "demo", "reconciliation", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if after, err := stream.GetLastMsgForSubject(ctx, "prov.timer.demo.reconciliation"); err != nil || after.Sequence != before.Sequence {
		t.Fatalf("a second start armed the schedule again (%v): the next run would move", err)
	}
	if r, err := e.app.Service.ResourceState(ctx, "demo"); err != nil || r.Reconciliation == nil || r.Reconciliation.Counts.Changed+r.Reconciliation.Counts.Unchanged == 0 {
		t.Fatalf("no scheduled run recorded: %+v %v", r.Reconciliation, err)
	}
}
