package projections_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"shadowbridge/domain"
	"shadowbridge/domain/domaintest"
	"shadowbridge/projections"
)

// AppendJSON writes what json.Marshal writes, byte for byte: every optional field present and
// absent, strings that need escaping (quotes, HTML, control characters, non-ASCII, invalid
// UTF-8), times with and without fractions and zones.
func TestHistoryEventJSONIsEncodingJSONs(t *testing.T) {
	at := time.Date(2026, 11, 30, 8, 0, 1, 123456789, time.UTC)
	for i, h := range []projections.HistoryEvent{
		{},
		{Seq: 1, Time: at, Type: "AddRequested", Resource: "demo", ShadowID: "s", Event: domain.AddRequested{ShadowID: "s", Attributes: domain.Attributes{"login": {"anne"}}}},
		{Seq: 18446744073709551615, Time: at.Truncate(time.Second), Type: "OperationCompleted", Resource: "r", ShadowID: "s", ObjectClass: "AccountObjectClass",
			OperationID: "o", Operation: "modify", Attempt: 3, RequestID: "req", Outcome: "fatal_error", Event: domain.OperationCompleted{Message: `<b>"locked" & \ gone</b>`}},
		{Time: at.In(time.FixedZone("x", 5*3600+1800)), Type: "t\n\t\u2028é", Resource: "<r>", ShadowID: "a&b", RequestID: "\x00\x1f\"", Outcome: "ok\xff", Attempt: -1},
	} {
		want, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "prefix"+string(want) {
			t.Errorf("case %d:\n got %s\nwant prefix%s", i, got, want)
		}
	}
}

// BenchmarkHistoryEventJSON: one audit line, the envelope reflected by encoding/json vs written
// by AppendJSON (the event goes through json.Marshal in both).
func BenchmarkHistoryEventJSON(b *testing.B) {
	h := projections.HistoryEvent{Seq: 123456, Time: time.Now().UTC(), Type: "DispatchRequested", Resource: "demo", ShadowID: "11111111-1111-4111-8111-111111111111",
		ObjectClass: "AccountObjectClass", OperationID: "22222222-2222-4222-8222-222222222222", Operation: "add", Attempt: 1, RequestID: "hr-1", Outcome: "released",
		Event: domain.AddRequested{ShadowID: "11111111-1111-4111-8111-111111111111", Resource: "demo", ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {"user1"}, "shoeSize": {int64(42)}}, Time: time.Now().UTC()}}
	b.Run("encoding_json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(h)
		}
	})
	b.Run("append_json", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = h.AppendJSON(buf[:0])
		}
	})
}

// Every event the log can hold, its fields filled at random (domaintest.RandomEvent), comes out
// of AppendJSON as json.Marshal writes it, error or not.
func TestEventJSONIsEncodingJSONs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	failures := 0
	for i := range 20000 {
		name := domain.EventTypes[i%len(domain.EventTypes)]
		h := projections.HistoryEvent{Seq: uint64(i), Type: name, Event: domaintest.RandomEvent(rng, name)}
		want, werr := json.Marshal(h)
		got, gerr := h.AppendJSON(nil)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%s: error %v, json.Marshal's %v", name, gerr, werr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			if failures++; failures < 5 {
				t.Errorf("%s:\n got %s\nwant %s", name, got, want)
			}
		}
	}
}
