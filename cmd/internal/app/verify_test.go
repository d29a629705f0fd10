package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/storetest"
	"shadowbridge/projections"
)

// verify runs the checker against the running app and returns its findings.
func verify(t *testing.T, e *env, recheck time.Duration) projections.VerifyReport {
	t.Helper()
	rep, err := projections.Verify(t.Context(), e.app.Store, e.kv, projections.VerifyOptions{Full: true, Recheck: recheck})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func has(rep projections.VerifyReport, check, shadowID string, notice bool) bool {
	for _, f := range rep.Findings {
		if f.Check == check && (shadowID == "" || f.ShadowID == shadowID) && f.Notice == notice {
			return true
		}
	}
	return false
}

// verify is clean on a healthy log beside a running service, and reports each kind of
// corruption seeded into it: a projection entry deleted, a timer dropped, a claim forged, an
// operation missing from the index, a request id decided twice, a request id both refused and
// decided, a state that is not the fold of its events.
func TestVerifyFindsSeededCorruption(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	ctx := t.Context()
	var ids []string
	for i := range 9 {
		id := e.ok(t, "prov.cmd.demo.add", map[string]any{"requestId": fmt.Sprint("v-", i), "objectClass": "AccountObjectClass",
			"attributes": map[string]any{"login": []any{fmt.Sprint("v", i)}}})["shadowId"].(string)
		ids = append(ids, id)
	}
	for _, id := range ids {
		e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	}
	store := e.app.Store
	waitFor(t, "retention timers armed", 10*time.Second, func() bool {
		for _, id := range ids {
			if _, armed, err := store.ArmedTimer(ctx, "demo", id); err != nil || !armed {
				return false
			}
		}
		return true
	})
	clean := verify(t, e, 2*time.Second)
	if clean.Violations() != 0 || clean.Shadows != len(ids) || clean.Folded == 0 {
		t.Fatalf("a healthy log: %d violations in %d shadows (%d folded): %v", clean.Violations(), clean.Shadows, clean.Folded, clean.Findings)
	}

	js, _ := jetstream.New(e.nc)
	index, err := js.KeyValue(ctx, "PROV_INDEX")
	if err != nil {
		t.Fatal(err)
	}
	// 1. A projection entry deleted.
	if err := e.kv.Delete(ctx, "demo."+ids[0]); err != nil {
		t.Fatal(err)
	}
	// 2. A timer dropped.
	if err := store.CancelTimer(ctx, "demo", ids[1]); err != nil {
		t.Fatal(err)
	}
	// 3. A claim forged: shadow 2's login now names shadow 3 as its holder.
	st2, _, _ := store.Load(ctx, "demo", ids[2])
	if _, err := index.Put(ctx, eventstore.ClaimKey(st2.Claims()[0]), []byte(ids[3])); err != nil {
		t.Fatal(err)
	}
	// 4. An operation missing from the index.
	st4, _, _ := store.Load(ctx, "demo", ids[4])
	if err := index.Delete(ctx, "op."+st4.Data().PendingOperations[0].ID); err != nil {
		t.Fatal(err)
	}
	// 5. One request id decided twice (two modifies stored with the same id, no reservation).
	res := e.app.Service.Catalog()["demo"]
	for range 2 {
		if _, err := store.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: ids[5], RequestID: "twice",
			Decide: func(st domain.Shadow) ([]domain.Event, error) {
				return domain.Decide(st, domain.Modify{Resource: res, OperationID: newID(), RequestID: "twice",
					Changes: domain.Changes{"mail": {Add: []any{newID()}}}}, time.Now())
			}}); err != nil {
			t.Fatal(err)
		}
	}
	// 6. A stored state that is not the fold of its events: a commit of a fresh shadow whose
	// state claims another version.
	forged := newID()
	ev, err := domain.Decide(domain.Shadow{}, domain.Add{Resource: res, ShadowID: forged, OperationID: newID(), ObjectClass: "AccountObjectClass",
		Attributes: domain.Attributes{"login": {"forged"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := domain.Fold(domain.Fold(domain.Shadow{}, ev), ev[:1])
	if _, err := store.Append(ctx, eventstore.Commit{Resource: "demo", ShadowID: forged, Events: ev, State: wrong}); err != nil {
		t.Fatal(err)
	}

	// 7. A second add stored on that shadow, and 8. a second live shadow with its login.
	if _, err := store.Append(ctx, eventstore.Commit{Resource: "demo", ShadowID: forged, ExpectedSeq: mustSeq(t, store, forged), Events: ev, State: domain.Fold(wrong, ev)}); err != nil {
		t.Fatal(err)
	}
	twin := newID()
	ev2, err := domain.Decide(domain.Shadow{}, domain.Add{Resource: res, ShadowID: twin, OperationID: newID(), ObjectClass: "AccountObjectClass",
		Attributes: domain.Attributes{"login": {"forged"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, eventstore.Commit{Resource: "demo", ShadowID: twin, Events: ev2, State: domain.Fold(domain.Shadow{}, ev2)}); err != nil {
		t.Fatal(err)
	}

	// 10. A projection entry that differs from the log, 11. one that is not JSON.
	if en, err := e.kv.Get(ctx, "demo."+ids[6]); err != nil {
		t.Fatal(err)
	} else if _, err := e.kv.Put(ctx, "demo."+ids[6], []byte(strings.Replace(string(en.Value()), `"v6"`, `"someone else"`, 1))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kv.Put(ctx, "demo."+ids[7], []byte("not json")); err != nil {
		t.Fatal(err)
	}
	// 12. An expired shadow still in the projection: shadow 8 deleted, expired (decided a
	// retention later), and its last projection entry put back.
	e.ok(t, "prov.cmd.demo.delete", map[string]any{"shadowId": ids[8]})
	dead := e.waitShadow(t, "demo", ids[8], func(d domain.ShadowData) bool { return d.Dead })
	if _, err := store.Update(ctx, eventstore.UpdateOptions{Resource: "demo", ShadowID: ids[8],
		Decide: func(st domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(st, domain.Refresh{Resource: res}, time.Now().Add(400*time.Hour))
		}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expired shadow leaves the projection", 10*time.Second, func() bool {
		_, err := e.kv.Get(ctx, "demo."+ids[8])
		return err != nil
	})
	deadJSON, _ := json.Marshal(dead)
	if _, err := e.kv.Put(ctx, "demo."+ids[8], deadJSON); err != nil {
		t.Fatal(err)
	}
	// 9. A request id answered two ways: shadow 0's add, its record turned into a refusal.
	refusal, _ := json.Marshal(eventstore.RequestRecord{Fingerprint: "f", ShadowID: ids[0],
		Refused: &eventstore.Refusal{Category: domain.CategoryAlreadyExists, Message: "taken"}})
	if _, err := index.Put(ctx, eventstore.RequestKey("demo", "v-0"), refusal); err != nil {
		t.Fatal(err)
	}

	rep := verify(t, e, 500*time.Millisecond)
	for _, w := range []struct {
		check, shadow string
		notice        bool
		detail        string
	}{
		{"projection", ids[0], false, ""},
		{"timer", ids[1], false, ""},
		{"claim", ids[2], false, ""}, // its login is not claimed by it
		{"claim", ids[3], true, ""},  // the forged holder does not hold it: stale
		{"operation-index", ids[4], false, ""},
		{"request-once", ids[5], false, ""},
		{"request-once", ids[0], false, ""}, // refused and decided
		{"projection", ids[6], false, "differs"},
		{"projection", ids[7], false, "undecodable"},
		{"projection", ids[8], false, "expired"},
		{"fold", forged, false, ""},
		{"one-add", forged, false, ""},
		{"unique-identifier", "", false, ""},
	} {
		if !hasDetail(rep, w.check, w.shadow, w.notice, w.detail) {
			t.Errorf("%s of %s (notice %v) not reported; findings:\n%s", w.check, w.shadow, w.notice, findings(rep))
		}
	}
	if rep.Violations() < 6 {
		t.Errorf("%d violations:\n%s", rep.Violations(), findings(rep))
	}
}

func hasDetail(rep projections.VerifyReport, check, shadowID string, notice bool, detail string) bool {
	for _, f := range rep.Findings {
		if f.Check == check && (shadowID == "" || f.ShadowID == shadowID) && f.Notice == notice && strings.Contains(f.Detail, detail) {
			return true
		}
	}
	return false
}

func findings(rep projections.VerifyReport) string {
	var b strings.Builder
	for _, f := range rep.Findings {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

var newID = storetest.NewID

func mustSeq(t *testing.T, s *eventstore.Store, id string) uint64 {
	t.Helper()
	_, seq, err := s.Load(t.Context(), "demo", id)
	if err != nil || seq == 0 {
		t.Fatalf("load %s: %d %v", id, seq, err)
	}
	return seq
}

// movingLoads is the store with every load of one shadow answering a newer record: a shadow that
// keeps changing while verify looks at it.
type movingLoads struct {
	*eventstore.Store
	id string
	n  atomic.Uint64
}

func (m *movingLoads) Load(ctx context.Context, resource, id string) (domain.Shadow, uint64, error) {
	st, seq, err := m.Store.Load(ctx, resource, id)
	if id == m.id {
		seq += m.n.Add(1)
	}
	return st, seq, err
}

// verify reports an operation that was released, passed by the dispatcher and never attempted
// (stuck), and a shadow that keeps changing through its rechecks (a notice, not silence).
func TestVerifyFindsStuckAndChanging(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{NoDispatcher: true})
	ctx := t.Context()
	stuck := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"stuck"}}})["shadowId"].(string)
	moving := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"moving"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", moving, func(d domain.ShadowData) bool { return d.ShadowID == moving })
	// A dispatcher that acknowledged every record and sent nothing.
	js, _ := jetstream.New(e.nc)
	c, err := js.CreateOrUpdateConsumer(ctx, "PROV_EVENTS", jetstream.ConsumerConfig{Durable: "PROV_DISPATCHER", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "prov.evt.>"})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.kv.Delete(ctx, "demo."+moving); err != nil {
		t.Fatal(err)
	}
	rep, err := projections.Verify(ctx, &movingLoads{Store: e.app.Store, id: moving}, e.kv, projections.VerifyOptions{Full: true, Recheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !hasDetail(rep, "stuck", stuck, false, "no attempt is recorded") {
		t.Errorf("the stuck operation is not reported:\n%s", findings(rep))
	}
	if !has(rep, "changing", moving, true) || has(rep, "projection", moving, false) {
		t.Errorf("the shadow that kept changing is not reported as such:\n%s", findings(rep))
	}
}
