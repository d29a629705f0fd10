package projections_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"shadowbridge/domain"
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
