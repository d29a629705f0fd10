package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"shadowbridge/domain"
	"shadowbridge/domain/domaintest"
)

// Every field set to a non-zero value, so a field the fast writer forgets shows up as a diff.
func fullEvents() []domain.Event {
	at := time.Unix(1763884800, 123456789).UTC()
	attrs := domain.Attributes{"login": {"jack"}, "n": {int64(42)}, "f": {1.5}, "b": {true}}
	ch := domain.Changes{"a": {Add: []any{"x"}, Delete: []any{int64(1)}}, "r": {Replace: []any{"y"}}, "clear": {Replace: []any{}}}
	tr := domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "C", Attributes: attrs, PrimaryIdentifiers: domain.Attributes{"uid": {"u"}},
		SecondaryIdentifiers: domain.Attributes{"login": {"jack"}}, Changes: ch, Order: []string{"r", "a"}}
	return []domain.Event{
		domain.AddRequested{ShadowID: "s", Resource: "r", ObjectClass: "C", SecondaryIdentifier: "login", OperationID: "o", RequestID: "q", Attributes: attrs, Order: []string{"login", "n"}, Assigned: true, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Time: at},
		domain.ModifyRequested{OperationID: "o", RequestID: "q", Changes: ch, Order: []string{"clear", "a", "r"}, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332-01", Time: at},
		domain.DeleteRequested{OperationID: "o", RequestID: "q", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203333-01", Time: at},
		domain.DispatchRequested{OperationID: "o", Attempt: 3, Sequence: 4, PreviousSequence: 2, Request: tr, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203335-01", Time: at},
		domain.OperationSent{OperationID: "o", Attempt: 2, Reference: "ref", Time: at},
		domain.AttemptFailed{OperationID: "o", Attempt: 2, Error: domain.OperationError{Category: domain.CategorySecurity, Message: "m"}, NotSent: true, Time: at},
		domain.OperationCompleted{OperationID: "o", Result: domain.ResultWarning, Message: "m", PrimaryIdentifiers: domain.Attributes{"uid": {int64(7)}}, Source: "s", GraceUntil: at.Add(9), Time: at},
	}
}

func fullState() domain.ShadowData {
	at := time.Unix(1763884800, 5).UTC()
	return domain.ShadowData{
		ShadowID: "s", Resource: "r", ObjectClass: "C", LifecycleState: domain.LifecycleCorpse, Exists: true, Dead: true, Assigned: true,
		PrimaryIdentifiers: domain.Attributes{"uid": {"u"}}, SecondaryIdentifiers: domain.Attributes{"login": {"j"}},
		Attributes: domain.Attributes{"login": {"j"}, "n": {int64(-3)}},
		PendingOperations: []domain.PendingOperation{{
			ID: "o", Type: domain.TypeRetry, Delta: domain.Delta{ChangeType: domain.ChangeAdd, Attributes: domain.Attributes{"a": {"b"}},
				Changes: domain.Changes{"c": {Replace: []any{}}}, Order: []string{"a"}},
			ExecutionStatus: domain.StatusExecuting, ResultStatus: domain.ResultInProgress, AttemptNumber: 2, RequestTimestamp: at,
			LastAttemptTimestamp: at.Add(1), CompletionTimestamp: at.Add(2), AsynchronousOperationReference: "ref",
			LastError: &domain.OperationError{Category: domain.CategoryCommunication, Message: "down"}, RequestID: "q", Message: "msg", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203334-01",
			GracePeriodEnd: at.Add(5), Sequence: 3,
		}},
		CreateTimestamp: at, ModifyTimestamp: at.Add(3), DeathTimestamp: at.Add(4), Expired: true, LastSequence: 3, DeliveredSequence: 2, Version: 9,
		TargetChange: &domain.TargetChange{Kind: domain.TargetChanged, Source: "reconciliation", Reconciliation: "run", Attributes: []string{"mail", "n"}, Time: at.Add(6)},
	}
}

func TestFastWriterCoversEveryField(t *testing.T) {
	events := fullEvents()
	// Every event type the domain knows is in the fixture.
	for _, name := range []string{"AddRequested", "ModifyRequested", "DeleteRequested", "DispatchRequested", "OperationSent", "AttemptFailed", "OperationCompleted"} {
		found := false
		for _, e := range events {
			found = found || e.EventType() == name
		}
		if !found {
			t.Fatalf("fixture misses %s", name)
		}
	}
	checkAllFieldsSet(t, reflect.ValueOf(fullState()), "ShadowData")
	for _, e := range events {
		checkAllFieldsSet(t, reflect.ValueOf(e), e.EventType())
	}
	state := domain.RestoreShadow(fullState())
	data, err := encodeCommit("req", events, state)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := decodeCommit(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEvents(wc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		if !reflect.DeepEqual(got[i], events[i]) {
			t.Errorf("%s:\n got %#v\nwant %#v", events[i].EventType(), got[i], events[i])
		}
	}
	st, err := decodeState(wc.State)
	if err != nil {
		t.Fatal(err)
	}
	if want := fullState(); !reflect.DeepEqual(st.Data(), want) {
		t.Errorf("state:\n got %#v\nwant %#v", st.Data(), want)
	}
	if wc.RequestID != "req" {
		t.Errorf("request id %q", wc.RequestID)
	}
	// The fast writer and the reflective encoder produce the same bytes for the state.
	var buf bytes.Buffer
	enc := getEncoder(&buf)
	w := &writer{e: enc}
	full := fullState()
	w.shadow(&full)
	ref, err := marshal(full)
	if err != nil || w.err != nil {
		t.Fatal(err, w.err)
	}
	if len(ref) != buf.Len() {
		t.Errorf("fast state is %d bytes, reflective %d", buf.Len(), len(ref))
	}
}

// checkAllFieldsSet fails if a struct field (recursively) has its zero value.
func checkAllFieldsSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || v.Type() == reflect.TypeOf(time.Time{}) {
		return
	}
	for i := range v.NumField() {
		f := v.Field(i)
		name := path + "." + v.Type().Field(i).Name
		if f.IsZero() {
			t.Errorf("fixture leaves %s zero", name)
			continue
		}
		switch f.Kind() {
		case reflect.Struct, reflect.Pointer:
			checkAllFieldsSet(t, f, name)
		case reflect.Slice:
			for j := range f.Len() {
				checkAllFieldsSet(t, f.Index(j), name)
			}
		}
	}
}

// The reflection-free readers agree with the reflective decoder, on bytes from the fast writer
// and on bytes from the reflective encoder (what older versions wrote), and skip keys they do not
// know (what newer versions may write).
func TestFastReadersMatchTheReflectiveDecoder(t *testing.T) {
	full := fullState()
	reflective, err := marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := &writer{e: getEncoder(&buf)}
	w.shadow(&full)
	withUnknown, err := marshal(map[string]any{"shadowId": "s", "futureField": map[string]any{"x": []any{1, "y"}}, "version": 3,
		"pendingOperations": []any{map[string]any{"id": "o", "futureOpField": true, "lastError": nil, "delta": map[string]any{"changeType": "modify",
			"changes": map[string]any{"a": map[string]any{"replace": nil, "add": []any{int8(1), 2.5, "z", false}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{"fast writer": bytes.Clone(buf.Bytes()), "reflective encoder": reflective, "unknown keys": withUnknown} {
		var want domain.ShadowData
		if err := unmarshal(raw, &want); err != nil {
			t.Fatalf("%s: reflective: %v", name, err)
		}
		got, err := readState(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", name, got, want)
		}
	}
	for _, ev := range fullEvents() {
		raw, err := marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		ptr, _ := domain.NewEvent(ev.EventType())
		if err := unmarshal(raw, ptr); err != nil {
			t.Fatal(err)
		}
		want := reflect.ValueOf(ptr).Elem().Interface()
		got, ok, err := readEvent(ev.EventType(), raw)
		if !ok {
			continue // decoded reflectively
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v\n got %#v\nwant %#v", ev.EventType(), err, got, want)
		}
	}
	if _, err := readState([]byte{0x81, 0xa1}); err == nil {
		t.Error("a truncated state decoded")
	}
	if _, err := readCommit([]byte{0x82, 0xa1, 'v'}); err == nil {
		t.Error("a truncated commit decoded")
	}
}

// BenchmarkDecodeState: the reflection-free reader vs the reflective decoder on one shadow state.
func BenchmarkDecodeState(b *testing.B) {
	full := fullState()
	raw, err := marshal(full)
	if err != nil {
		b.Fatal(err)
	}
	var reflective, fast time.Duration
	for range b.N {
		start := time.Now()
		for range 1000 {
			var d domain.ShadowData
			if err := unmarshal(raw, &d); err != nil {
				b.Fatal(err)
			}
		}
		reflective += time.Since(start)
		start = time.Now()
		for range 1000 {
			if _, err := readState(raw); err != nil {
				b.Fatal(err)
			}
		}
		fast += time.Since(start)
	}
	b.ReportMetric(float64(reflective.Nanoseconds())/float64(b.N*1000), "raw:ns/state")
	b.ReportMetric(float64(fast.Nanoseconds())/float64(b.N*1000), "ns/state")
	b.ReportMetric(float64(reflective)/float64(fast), "speedup")
}

// DecisionTime reads the first event's time without decoding the events: the same time as
// Events()[0].EventTime() for every event type, whichever comes first in the commit.
func TestDecisionTimeMatchesTheFirstEvent(t *testing.T) {
	state := domain.RestoreShadow(fullState())
	events := fullEvents()
	for i, e := range events { // distinct times, so that reading another event's time shows
		v := reflect.New(reflect.TypeOf(e)).Elem()
		v.Set(reflect.ValueOf(e))
		f := v.FieldByName("Time")
		f.Set(reflect.ValueOf(f.Interface().(time.Time).Add(time.Duration(i+1) * time.Second)))
		events[i] = v.Interface().(domain.Event)
	}
	for i := range events {
		ordered := append([]domain.Event{events[i]}, events[:i]...)
		data, err := encodeCommit("req", ordered, state)
		if err != nil {
			t.Fatal(err)
		}
		r := &Record{data: data}
		got, err := r.DecisionTime()
		if err != nil || !got.Equal(events[i].EventTime()) {
			t.Errorf("%s first: %v %v, want %v", events[i].EventType(), got, err, events[i].EventTime())
		}
	}
	if got, err := (&Record{data: mustEncode(t, nil, state)}).DecisionTime(); err != nil || !got.IsZero() {
		t.Errorf("no events: %v %v", got, err)
	}
}

func mustEncode(t *testing.T, events []domain.Event, state domain.Shadow) []byte {
	data, err := encodeCommit("", events, state)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The names a commit's types are read against are the domain's, each one an event it decodes.
func TestEventTypesAreTheDomains(t *testing.T) {
	for _, name := range domain.EventTypes {
		ptr, ok := domain.NewEvent(name)
		if !ok || knownEventTypes[name] != name {
			t.Errorf("%s: known to NewEvent %v, read without allocating %v", name, ok, knownEventTypes[name] == name)
			continue
		}
		if e, _ := reflect.ValueOf(ptr).Elem().Interface().(domain.Event); e == nil || e.EventType() != name {
			t.Errorf("%s: NewEvent's event is not named so", name)
		}
	}
}

// The generated writers and readers (events_gen.go) agree with the reflective codec for every
// shadow event, on random events and on zero ones: what the generated writer writes reads back,
// through the generated reader, as the reflective decoder reads it; and what the reflective
// encoder wrote (older versions) reads the same through the generated reader. (Compared as
// printed: a NaN attribute value is not DeepEqual to itself.)
func TestGeneratedEventCodecsMatchTheReflectiveOnes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	reflective := func(name string, data []byte) string {
		p, _ := domain.NewEvent(name)
		if err := unmarshal(data, p); err != nil {
			t.Fatalf("%s: reflective decode: %v", name, err)
		}
		return fmt.Sprintf("%#v", reflect.ValueOf(p).Elem().Interface())
	}
	covered := 0
	for _, name := range domain.EventTypes {
		for i := range 100 {
			e := domaintest.RandomEvent(rng, name)
			if i == 0 {
				p, _ := domain.NewEvent(name)
				e = reflect.ValueOf(p).Elem().Interface().(domain.Event)
			}
			var buf bytes.Buffer
			w := &writer{e: getEncoder(&buf)}
			if !w.event(e) {
				break // a resource's event: the reflective codec writes it
			}
			covered += min(i, 1)
			if w.err != nil {
				t.Fatal(w.err)
			}
			got, ok, err := readEvent(name, buf.Bytes())
			if want := reflective(name, buf.Bytes()); !ok || err != nil || fmt.Sprintf("%#v", got) != want {
				t.Fatalf("%s from the generated writer: %v %v\n got %#v\nwant %s", name, ok, err, got, want)
			}
			old, err := marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err = readEvent(name, old)
			if want := reflective(name, old); !ok || err != nil || fmt.Sprintf("%#v", got) != want {
				t.Fatalf("%s from the reflective encoder: %v %v\n got %#v\nwant %s", name, ok, err, got, want)
			}
		}
	}
	if covered == 0 {
		t.Fatal("no event went through the generated codecs")
	}
}

// A record reads the same in every time zone: times decode in UTC on the generated and the
// reflective path alike (msgpack's decoder gives the local zone, and a shadow decoded in Kolkata
// encoded to other JSON than the projection's: verify reported it as a violation).
func TestTimesDecodeInUTC(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	s := fullState()
	in := s
	in.CreateTimestamp = s.CreateTimestamp.In(ist)
	in.PendingOperations = slices.Clone(s.PendingOperations)
	in.PendingOperations[0].RequestTimestamp = s.PendingOperations[0].RequestTimestamp.In(ist)
	data, err := encodeCommit("req", []domain.Event{domain.OperationSent{OperationID: "o", Attempt: 1, Time: s.CreateTimestamp.In(ist)}}, domain.RestoreShadow(in))
	if err != nil {
		t.Fatal(err)
	}
	wc, err := decodeCommit(data)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := decodeState(wc.State)
	if err != nil {
		t.Fatal(err)
	}
	var slow domain.ShadowData
	if err := unmarshal(wc.State, &slow); err != nil {
		t.Fatal(err)
	}
	events, err := decodeEvents(wc)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(s)
	for name, got := range map[string]any{"generated": fast.Data(), "reflective": slow} {
		if b, _ := json.Marshal(got); !bytes.Equal(b, want) {
			t.Errorf("%s decoding: %s\nwant %s", name, b, want)
		}
	}
	if at := events[0].EventTime(); at.Location() != time.UTC {
		t.Errorf("event time in %v", at.Location())
	}
}
