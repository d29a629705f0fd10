package projections_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
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

// Every event the log can hold, its fields filled at random (each string, number, time,
// attribute map and list present, empty or nil, values of every allowed type and floats that
// encoding/json writes with an exponent), comes out of AppendJSON as json.Marshal writes it.
// The filler walks the event structs by reflection, so a field added to an event later is filled
// too and fails here until the encoder writes it.
func TestEventJSONIsEncodingJSONs(t *testing.T) {
	names := []string{"AddRequested", "ModifyRequested", "DeleteRequested", "DispatchRequested", "OperationSent",
		"AttemptFailed", "OperationCompleted", "AvailabilityChanged", "AdministrativeAvailabilityChanged",
		"OperationPostponed", "TimerSet", "TimerCleared", "GracePeriodEnded", "OperationRemoved", "ShadowExpired",
		"AccountDiscovered", "ShadowDiscovered", "RecreateRequested", "AccountGone"}
	rng := rand.New(rand.NewPCG(1, 2))
	failures := 0
	for i := range 20000 {
		name := names[i%len(names)]
		ptr, ok := domain.NewEvent(name)
		if !ok {
			t.Fatalf("domain.NewEvent does not know %s", name)
		}
		v := reflect.ValueOf(ptr).Elem()
		fillRandom(rng, v)
		h := projections.HistoryEvent{Seq: uint64(i), Type: name, Event: v.Interface().(domain.Event)}
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

var randomStrings = []string{"", "anne", "Anne Smith", `a"b\c`, "<b>&amp;</b>", "\x00\n\t\u2028", "zoë", "\xff\xfe", "AccountObjectClass"}

// fillRandom sets v (an event or a part of one) to random contents.
func fillRandom(rng *rand.Rand, v reflect.Value) {
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		switch rng.IntN(4) {
		case 0: // zero
		case 1:
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(4e9), 0).UTC()))
		default:
			zone := time.FixedZone("z", (rng.IntN(48)-24)*1800)
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(zone)))
		}
		return
	case reflect.TypeFor[domain.Attributes]():
		if rng.IntN(4) == 0 {
			return // nil
		}
		a := domain.Attributes{}
		for range rng.IntN(4) {
			a[randomStrings[rng.IntN(len(randomStrings))]] = randomValues(rng)
		}
		v.Set(reflect.ValueOf(a))
		return
	case reflect.TypeFor[domain.Changes]():
		if rng.IntN(4) == 0 {
			return
		}
		c := domain.Changes{}
		for range rng.IntN(4) {
			c[randomStrings[rng.IntN(len(randomStrings))]] = domain.AttributeChange{Add: randomValues(rng), Delete: randomValues(rng), Replace: randomValues(rng)}
		}
		v.Set(reflect.ValueOf(c))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(randomStrings[rng.IntN(len(randomStrings))])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt([]int64{0, 1, -1, 42, 1 << 62}[rng.IntN(5)])
	case reflect.Slice:
		if rng.IntN(3) == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), rng.IntN(3), 3)
		for i := range s.Len() {
			fillRandom(rng, s.Index(i))
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(rng, v.Field(i))
			}
		}
	case reflect.Pointer:
		if rng.IntN(2) == 0 {
			p := reflect.New(v.Type().Elem())
			fillRandom(rng, p.Elem())
			v.Set(p)
		}
	case reflect.Map:
		if rng.IntN(3) == 0 {
			return
		}
		m := reflect.MakeMap(v.Type())
		for range rng.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fillRandom(rng, k)
			fillRandom(rng, e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("fillRandom: no rule for " + v.Type().String())
	}
}

// randomValues is a value list as the domain holds them (nil, empty, strings, int64s, bools),
// with now and then a float64, including ones encoding/json writes with an exponent.
func randomValues(rng *rand.Rand) []any {
	switch rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return []any{}
	}
	var vs []any
	for range 1 + rng.IntN(3) {
		switch rng.IntN(5) {
		case 0:
			vs = append(vs, randomStrings[rng.IntN(len(randomStrings))])
		case 1:
			vs = append(vs, rng.Int64()-rng.Int64())
		case 2:
			vs = append(vs, rng.IntN(2) == 0)
		case 3:
			vs = append(vs, []float64{0.5, 1e21, 1e-7, 42, -3.25, math.NaN()}[rng.IntN(6)])
		default:
			vs = append(vs, "user"+strconv.Itoa(rng.IntN(100)))
		}
	}
	return vs
}
