package app_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// The target's change notifications over NATS (prov.cmd.<resource>.notify): the shadow follows
// a change made outside shadowbridge, an account without a shadow is discovered, one gone makes
// its shadow die, nothing is compared while an operation is on its way, bad notifications are
// refused, and a request id answers once.
func TestChangeNotifications(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	notify := func(body map[string]any) (map[string]any, string) {
		body["objectClass"] = "AccountObjectClass"
		return e.call(t, "prov.cmd.demo.notify", body)
	}
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass",
		"attributes": map[string]any{"login": []any{"nina"}, "fullName": []any{"Nina"}}})["shadowId"].(string)
	uid := e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive }).PrimaryIdentifiers["uid"][0]

	out, code := notify(map[string]any{"requestId": "n-1", "change": "modify", "primaryIdentifiers": map[string]any{"uid": []any{uid}},
		"attributes": map[string]any{"fullName": []any{"Nina Outside"}, "mail": []any{"nina@x"}}})
	if code != "" || out["outcome"] != "changed" || out["shadowId"] != id {
		t.Fatalf("a change made on the target: %s %v", code, out)
	}
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool {
		return len(d.Attributes["fullName"]) == 1 && d.Attributes["fullName"][0] == "Nina Outside" && len(d.Attributes["mail"]) == 1
	})
	if again, _ := notify(map[string]any{"requestId": "n-1", "change": "modify", "primaryIdentifiers": map[string]any{"uid": []any{uid}},
		"attributes": map[string]any{"fullName": []any{"Nina Outside"}, "mail": []any{"nina@x"}}}); again["outcome"] != "changed" {
		t.Fatalf("the same request id answered %v, want its first answer", again)
	}
	if out, _ := notify(map[string]any{"change": "modify", "attributes": map[string]any{"login": []any{"nina"}, "mail": []any{"nina@x"}}}); out["outcome"] != "unchanged" {
		t.Fatalf("a notification of what the cache holds: %v", out)
	}
	h := e.ok(t, "prov.query.history", map[string]any{"shadowId": id})
	if !strings.Contains(toJSON(t, h), `"AccountChanged"`) {
		t.Fatalf("history does not record the change from the target: %v", h)
	}

	// An account nobody asked for: a live shadow of its own.
	out, code = notify(map[string]any{"change": "add", "primaryIdentifiers": map[string]any{"uid": []any{"u-outside"}},
		"attributes": map[string]any{"login": []any{"outsider"}, "fullName": []any{"Made Outside"}}})
	if code != "" || out["outcome"] != "discovered" {
		t.Fatalf("an account without a shadow: %s %v", code, out)
	}
	found := e.waitShadow(t, "demo", out["shadowId"].(string), func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	if found.Attributes["fullName"][0] != "Made Outside" || found.PrimaryIdentifiers["uid"][0] != "u-outside" {
		t.Fatalf("discovered shadow %+v", found)
	}

	// While a modify waits (maintenance), nothing is compared.
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": true, "reason": "test"})
	e.ok(t, "prov.cmd.demo.modify", map[string]any{"shadowId": id, "changes": map[string]any{"fullName": map[string]any{"replace": []any{"Nina B."}}}})
	if out, _ := notify(map[string]any{"change": "modify", "primaryIdentifiers": map[string]any{"uid": []any{uid}},
		"attributes": map[string]any{"mail": []any{"other@x"}}}); out["outcome"] != "skipped" {
		t.Fatalf("a notification racing a modify: %v", out)
	}
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": false})
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.Attributes["fullName"][0] == "Nina B." })

	// Gone on the target: the shadow dies; a delete nobody holds is nothing to do.
	if out, _ := notify(map[string]any{"change": "delete", "primaryIdentifiers": map[string]any{"uid": []any{uid}}}); out["outcome"] != "gone" {
		t.Fatalf("a delete on the target: %v", out)
	}
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.Dead })
	if out, _ := notify(map[string]any{"change": "delete", "primaryIdentifiers": map[string]any{"uid": []any{"u-never"}}}); out["outcome"] != "unknown" {
		t.Fatalf("a delete of an unknown account: %v", out)
	}

	for _, bad := range []map[string]any{
		{"change": "rename", "attributes": map[string]any{"login": []any{"x"}}},
		{"change": "modify", "attributes": map[string]any{"fullName": []any{"no identifier"}}},
		{"change": "modify", "attributes": map[string]any{"login": []any{"x"}}, "colour": 1},
	} {
		if out, code := notify(bad); code != "400" {
			t.Errorf("%v: %s %v, want 400", bad, code, out)
		}
	}
	if out, code := e.call(t, "prov.cmd.demo.notify", map[string]any{"change": "add", "attributes": map[string]any{"login": []any{"x"}}}); code != "400" {
		t.Errorf("without objectClass: %s %v", code, out)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The same notifications through Artemis, on the resource's notification address (a
// Python/JMS target would send them there): applied once per message id, a malformed one
// dead-lettered without stopping the others.
func TestChangeNotificationsThroughArtemis(t *testing.T) {
	b := amqptest.Artemis(t)
	requests, confirmations, notifications := b.Queue(t, "n-requests"), b.Queue(t, "n-confirmations"), b.Queue(t, "n-notifications")
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp: {url: %q, address: %q, confirmationAddress: %q, notificationAddress: %q}}
    operationExecutionConfirmation: true
`, b.URL, requests, confirmations, notifications))
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg, app.Options{})
	targetSystem(t.Context(), t, b, requests, confirmations)
	r := add(t, e.app, "amqp-nina")
	waitFor(t, "the add confirmed", 20*time.Second, func() bool { return shadow(t, e.app, r.ShadowID).LifecycleState == domain.LifecycleLive })
	uid := shadow(t, e.app, r.ShadowID).PrimaryIdentifiers["uid"][0]

	snd := b.Sender(t, notifications)
	send := func(id, body string) {
		m := &amqp.Message{Properties: &amqp.MessageProperties{MessageID: id}, Value: body}
		if err := snd.Send(t.Context(), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	send("bad-1", `{"change":"rename"}`)
	body := fmt.Sprintf(`{"change":"modify","objectClass":"AccountObjectClass","primaryIdentifiers":{"uid":[%q]},"attributes":{"fullName":["Over AMQP"]}}`, uid)
	send("n-1", body)
	waitFor(t, "the notification applied", 20*time.Second, func() bool {
		a := shadow(t, e.app, r.ShadowID).Attributes["fullName"]
		return len(a) == 1 && a[0] == "Over AMQP"
	})
	send("n-1", body) // redelivered: answered from its record, nothing new
	send("n-2", fmt.Sprintf(`{"change":"delete","objectClass":"AccountObjectClass","primaryIdentifiers":{"uid":[%q]}}`, uid))
	waitFor(t, "the delete on the target", 20*time.Second, func() bool { return shadow(t, e.app, r.ShadowID).Dead })
	changes := 0
	for _, rec := range history(t, e.app, r.ShadowID) {
		if rec == "AccountChanged" {
			changes++
		}
	}
	if changes != 1 {
		t.Fatalf("%d AccountChanged events for one notification sent twice", changes)
	}
}

func history(t *testing.T, a *app.App, id string) []string {
	t.Helper()
	recs, err := a.Store.History(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range recs {
		types = append(types, r.Types...)
	}
	return types
}

// The walkthrough's question, "what if someone edits the account on the target?", asked of the
// sample target: an edit made directly in its bucket (PROV_SAMPLE_ACCOUNTS, <resource>.<uid>)
// reaches the shadow, an account put there by hand gets a shadow, one deleted there makes its
// shadow die.
func TestEditsInTheSampleBucketReachTheShadows(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	ctx := t.Context()
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass",
		"attributes": map[string]any{"login": []any{"edith"}, "fullName": []any{"Edith"}}})["shadowId"].(string)
	uid := e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive }).PrimaryIdentifiers["uid"][0].(string)
	js, _ := jetstream.New(e.nc)
	accounts, err := js.KeyValue(ctx, "PROV_SAMPLE_ACCOUNTS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Put(ctx, "demo."+uid, []byte(`{"login":["edith"],"fullName":["Edith Edited"],"mail":["e@x"]}`)); err != nil {
		t.Fatal(err)
	}
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool {
		return len(d.Attributes["fullName"]) == 1 && d.Attributes["fullName"][0] == "Edith Edited" && len(d.Attributes["mail"]) == 1
	})
	if _, err := accounts.Put(ctx, "demo.u-by-hand", []byte(`{"login":["byhand"],"fullName":["By Hand"]}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a shadow for the account made by hand", 20*time.Second, func() bool {
		owner, err := e.app.Service.Resolve(ctx, "demo", "AccountObjectClass", domain.Attributes{"uid": {"u-by-hand"}})
		return err == nil && owner != ""
	})
	if err := accounts.Delete(ctx, "demo."+uid); err != nil {
		t.Fatal(err)
	}
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.Dead })
}
