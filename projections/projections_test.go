package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
	"shadowbridge/projections"
)

var _ projections.Source = (*eventstore.Store)(nil)

type fixture struct {
	store *eventstore.Store
	proj  *projections.Projector
	kv    jetstream.KeyValue
	res   domain.Resource
}

func setup(t *testing.T) *fixture {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	store, err := eventstore.Open(t.Context(), nc, eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	p, err := projections.NewProjector(t.Context(), store.JetStream(), store, projections.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := store.JetStream().KeyValue(t.Context(), "PROV_SHADOWS")
	return &fixture{store: store, proj: p, kv: kv, res: storetest.Resource(t)}
}

func (f *fixture) add(t *testing.T, login string) string {
	id := storetest.NewID()
	if _, _, err := storetest.Decide(t.Context(), t, f.store, f.res, id, domain.Add{Resource: f.res, ShadowID: id,
		OperationID: storetest.NewID(), ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {login}}}); err != nil {
		t.Fatal(err)
	}
	return id
}

func (f *fixture) get(t *testing.T, id string) (domain.ShadowData, bool) {
	e, err := f.kv.Get(t.Context(), "demo."+id)
	if err != nil {
		return domain.ShadowData{}, false
	}
	var d domain.ShadowData
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		t.Fatal(err)
	}
	return d, true
}

func history(t *testing.T, f *fixture, id string) []*eventstore.Record {
	h, err := f.store.History(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestApplyIsIdempotentAndIgnoresOlderVersions(t *testing.T) {
	f := setup(t)
	id := f.add(t, "jack")
	op := ""
	if st, _, _ := f.store.Load(t.Context(), "demo", id); true {
		op = st.Data().PendingOperations[0].ID
	}
	if _, _, err := storetest.Decide(t.Context(), t, f.store, f.res, id, domain.RecordDelivery{Resource: f.res, OperationID: op, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	h := history(t, f, id)
	if err := f.proj.Apply(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	d, ok := f.get(t, id)
	if !ok || d.Version != 3 || d.LifecycleState != domain.LifecycleConceived {
		t.Fatalf("after apply: %+v", d)
	}
	// Redelivery of the same batch, and of the older record alone, change nothing.
	for _, batch := range [][]*eventstore.Record{h, h[:1]} {
		if err := f.proj.Apply(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if d2, _ := f.get(t, id); d2.Version != 3 {
			t.Fatalf("redelivery moved the projection back to version %d", d2.Version)
		}
	}
	// A second projector (another instance, cold cache) also refuses to go back.
	p2, _ := projections.NewProjector(t.Context(), f.store.JetStream(), f.store, projections.DefaultConfig(), nil)
	if err := p2.Apply(t.Context(), h[:1]); err != nil {
		t.Fatal(err)
	}
	if d2, _ := f.get(t, id); d2.Version != 3 {
		t.Fatalf("second projector overwrote a newer version with %d", d2.Version)
	}
}

func TestRunFollowsTheLogAndRebuildRestores(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.proj.Run(ctx) }()
	var ids []string
	for i := range 25 {
		ids = append(ids, f.add(t, fmt.Sprint("u", i)))
	}
	waitAll(t, f, ids)
	cancel()
	<-done
	// Wipe the bucket, rebuild, and everything is back, equal to the stored state.
	for _, id := range ids {
		if err := f.kv.Purge(t.Context(), "demo."+id); err != nil {
			t.Fatal(err)
		}
	}
	var last projections.Progress
	pr, err := f.proj.Rebuild(t.Context(), func(p projections.Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if pr.Shadows != 25 || pr.Last == 0 || last.Phase != "done" {
		t.Fatalf("rebuild progress %+v / %+v", pr, last)
	}
	if _, err := f.kv.Put(t.Context(), "demo.00000000-0000-4000-8000-000000000000", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.proj.Rebuild(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.get(t, "00000000-0000-4000-8000-000000000000"); ok {
		t.Fatal("rebuild kept a shadow the log does not know")
	}
	for _, id := range ids {
		d, ok := f.get(t, id)
		st, _, _ := f.store.Load(t.Context(), "demo", id)
		want, _ := json.Marshal(st.Data())
		got, _ := json.Marshal(d)
		if !ok || string(got) != string(want) {
			t.Fatalf("rebuilt %s:\n got %s\nwant %s", id, got, want)
		}
	}
}

func waitAll(t *testing.T, f *fixture, ids []string) {
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			if _, ok := f.get(t, id); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not projected", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestPendingIndexFollowsTheBucket(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = f.proj.Run(ctx) }()
	a := f.add(t, "a")
	// The instance's read models on one watch (as the service runs them).
	ix, dash, err := projections.Watch(ctx, f.kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := f.add(t, "b")
	all := waitPending(t, ix, "demo", 2)
	if n := ix.Count("demo"); n != 2 || ix.Count("other") != 0 || ix.Count("") != 2 {
		t.Fatalf("count %d", n)
	}
	if page, _ := ix.PendingN(ctx, "", 1); len(page) != 1 || page[0].ShadowID != all[0].ShadowID {
		t.Fatalf("first page %v, want %s", page, all[0].ShadowID)
	}
	// Complete a's add: it leaves the index.
	st, _, _ := f.store.Load(ctx, "demo", a)
	op := st.Data().PendingOperations[0].ID
	for _, c := range []domain.Command{
		domain.RecordDelivery{Resource: f.res, OperationID: op, Attempt: 1},
		domain.Confirm{Resource: f.res, OperationID: op, Result: domain.ResultSuccess},
	} {
		if _, _, err := storetest.Decide(ctx, t, f.store, f.res, a, c); err != nil {
			t.Fatal(err)
		}
	}
	list := waitPending(t, ix, "demo", 1)
	if list[0].ShadowID != b {
		t.Fatalf("pending %s, want %s", list[0].ShadowID, b)
	}
	// The dashboard follows the same watch: a is live, b still proposed.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := dash.Counts(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(c) == 1 && c[0].Shadows == 2 && c[0].ByLifecycle[domain.LifecycleLive] == 1 && c[0].ByLifecycle[domain.LifecycleProposed] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard counts %+v", c)
		}
	}
	if l, _ := ix.Pending(ctx, "other"); len(l) != 0 {
		t.Fatalf("other resource: %d", len(l))
	}
}

func waitPending(t *testing.T, ix *projections.PendingIndex, res string, n int) []domain.ShadowData {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := ix.Pending(t.Context(), res)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) == n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending: %d, want %d", len(l), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A rebuild while the service serves: the projector keeps following the log and new shadows
// keep arriving; when both are done, every shadow is in the bucket with its latest state (the
// rebuild neither prunes shadows created meanwhile nor puts back older versions).
func TestRebuildWhileServing(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.proj.Run(ctx) }()
	var ids []string
	for i := range 300 {
		ids = append(ids, f.add(t, fmt.Sprint("before", i)))
	}
	during := make(chan []string)
	go func() {
		var more []string
		for i := range 300 {
			more = append(more, f.add(t, fmt.Sprint("during", i)))
		}
		during <- more
	}()
	// A second projector instance rebuilds (as `shadowbridge rebuild` does) while writes go on.
	other, err := projections.NewProjector(t.Context(), f.store.JetStream(), f.store, projections.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := other.Rebuild(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	ids = append(ids, <-during...)
	waitAll(t, f, ids)
	time.Sleep(200 * time.Millisecond) // let the projector settle the last batch
	cancel()
	<-done
	for _, id := range ids {
		d, ok := f.get(t, id)
		st, _, _ := f.store.Load(t.Context(), "demo", id)
		if !ok || d.Version != st.Version() {
			t.Fatalf("%s: projected version %d (present %v), log version %d", id, d.Version, ok, st.Version())
		}
	}
}

// TestProjectorsShareTheBucket: writes go out expecting the revision the projector last saw (none
// for a shadow it has not written); another projector's write in between, or a key that exists
// when the cache is cold, makes the expectation fail, and the write is decided again on what
// the bucket holds: newer versions land, older ones never do.
func TestProjectorsShareTheBucket(t *testing.T) {
	f := setup(t)
	id := f.add(t, "jack")
	st, _, _ := f.store.Load(t.Context(), "demo", id)
	op := st.Data().PendingOperations[0].ID
	if err := f.proj.Apply(t.Context(), history(t, f, id)); err != nil {
		t.Fatal(err)
	}
	p2, _ := projections.NewProjector(t.Context(), f.store.JetStream(), f.store, projections.DefaultConfig(), nil)
	steps := []domain.Command{
		domain.RecordDelivery{Resource: f.res, OperationID: op, Attempt: 1},
		domain.Confirm{Resource: f.res, OperationID: op, Result: domain.ResultSuccess, PrimaryIdentifiers: domain.Attributes{"uid": {"u1"}}},
		domain.Modify{Resource: f.res, OperationID: storetest.NewID(), Changes: domain.Changes{"login": {Replace: []any{"jacky"}}}},
	}
	for i, cmd := range steps {
		if _, _, err := storetest.Decide(t.Context(), t, f.store, f.res, id, cmd); err != nil {
			t.Fatal(err)
		}
		h := history(t, f, id)
		last := h[len(h)-1]
		writer, other := f.proj, p2 // turn by turn: each one's cached revision is stale
		if i%2 == 0 {
			writer, other = p2, f.proj
		}
		if err := writer.Apply(t.Context(), []*eventstore.Record{last}); err != nil {
			t.Fatal(err)
		}
		want, _ := last.State()
		if d, _ := f.get(t, id); d.Version != want.Version() {
			t.Fatalf("step %d: projection at version %d, want %d", i, d.Version, want.Version())
		}
		// The other projector, its cache behind, delivers an older record and the same one.
		for _, r := range []*eventstore.Record{h[len(h)-2], last} {
			if err := other.Apply(t.Context(), []*eventstore.Record{r}); err != nil {
				t.Fatal(err)
			}
			if d, _ := f.get(t, id); d.Version != want.Version() {
				t.Fatalf("step %d: the other projector moved the projection to version %d", i, d.Version)
			}
		}
	}
	d, _ := f.get(t, id)
	if len(d.PendingOperations) != 2 || d.PrimaryIdentifiers["uid"][0] != "u1" || d.LifecycleState != domain.LifecycleLive {
		t.Fatalf("final projection %+v", d)
	}
}

// Answers that do not come in time: the writes are made again the careful way (read the bucket,
// compare versions), and the projection ends the same.
func TestProjectorWritesAgainWhatIsNotAnsweredInTime(t *testing.T) {
	defer projections.SetAsyncWriteWait(0)()
	f := setup(t)
	var ids []string
	for i := range 20 {
		ids = append(ids, f.add(t, fmt.Sprint("u", i)))
	}
	var recs []*eventstore.Record
	for _, id := range ids {
		recs = append(recs, history(t, f, id)...)
	}
	for range 2 { // and again: a redelivery changes nothing
		if err := f.proj.Apply(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if d, ok := f.get(t, id); !ok || d.Version != 2 || d.ShadowID != id {
				t.Fatalf("%s: %+v %v", id, d, ok)
			}
		}
	}
}
