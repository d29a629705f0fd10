package eventstore

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"shadowbridge/domain"
	"shadowbridge/domain/domaintest"
)

// commitOf stores one event the way this build does (the fast writer) or the way the reflective
// encoder of earlier builds did.
func commitOf(t *testing.T, e domain.Event, reflective bool) *Record {
	t.Helper()
	var body []byte
	var err error
	if reflective {
		var data []byte
		if data, err = marshal(e); err == nil {
			body, err = marshal(wireCommit{V: 1, Events: []wireEvent{{Type: e.EventType(), Data: data}}, State: msgpack.RawMessage{0xc0}})
		}
	} else {
		body, err = encodeCommitWith("", []domain.Event{e}, func(w *writer) error { return w.e.EncodeNil() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return &Record{Seq: 1, Subject: "prov.evt.r.s", data: body}
}

// Every event type, fields filled at random and stored by either encoder: AppendEventJSON
// returns what json.Marshal of the decoded event returns (error or not), EventSummaries what
// Summarize of it returns, and most of them come from the bytes, not from the fallback.
func TestEventJSONFromBytesIsJSONMarshals(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fromBytes, total, failures := 0, 0, 0
	transcoded := map[string]bool{}
	for i := range 20000 {
		name := domain.EventTypes[i%len(domain.EventTypes)]
		e := domaintest.RandomEvent(rng, name)
		for _, reflective := range []bool{false, true} {
			rec := commitOf(t, e, reflective)
			evs, err := rec.Events()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want, werr := json.Marshal(evs[0])
			got, gerr := (&Record{Seq: 1, Subject: rec.Subject, data: rec.data}).AppendEventJSON([]byte("x"), 0)
			switch {
			case (werr == nil) != (gerr == nil):
				t.Fatalf("%s (reflective %v): error %v, json.Marshal's %v", name, reflective, gerr, werr)
			case werr == nil && !bytes.Equal(got, append([]byte("x"), want...)):
				if failures++; failures < 5 {
					t.Errorf("%s (reflective %v):\n got %s\nwant x%s", name, reflective, got, want)
				}
			}
			sums, err := (&Record{Seq: 1, Subject: rec.Subject, data: rec.data}).EventSummaries()
			if err != nil || len(sums) != 1 || !reflect.DeepEqual(sums[0], Summarize(evs[0])) {
				t.Fatalf("%s (reflective %v): summary %+v %v, want %+v", name, reflective, sums, err, Summarize(evs[0]))
			}
			wc, _ := rec.decode()
			if fields, ok := eventFields[name]; ok {
				total++
				if _, _, ok := transcodeObject(nil, wc.Events[0].Data, 0, fields); ok {
					fromBytes++
					transcoded[name] = true
				}
			}
		}
	}
	for name := range eventFields {
		if !transcoded[name] {
			t.Errorf("no %s was written from its bytes", name)
		}
	}
	if fromBytes < total/2 {
		t.Errorf("%d of %d events written from their bytes, the rest decoded", fromBytes, total)
	}
	t.Logf("%d of %d events written from their bytes", fromBytes, total)
	if _, err := (&Record{Seq: 1, data: commitOf(t, domain.TimerCleared{}, false).data}).AppendEventJSON(nil, 1); err == nil {
		t.Error("event 1 of a commit of one: no error")
	}
}

// The field tables are the event structs as encoding/json sees them: every exported field's
// json name in order, with the kind its Go type and options call for.
func TestEventFieldTablesMatchTheStructs(t *testing.T) {
	kindOf := func(f reflect.StructField) (string, jsonKind, bool) {
		tag := strings.Split(f.Tag.Get("json"), ",")
		opt := strings.Join(tag[1:], ",")
		omitEmpty, omitZero := opt == "omitempty", opt == "omitzero"
		typ := f.Type
		switch {
		case typ == reflect.TypeFor[time.Time]() && omitZero:
			return tag[0], kTimeOmitZero, true
		case typ == reflect.TypeFor[time.Time]() && opt == "":
			return tag[0], kTime, true
		case typ == reflect.TypeFor[domain.Attributes]():
			return tag[0], map[bool]jsonKind{true: kAttrsOmit, false: kAttrs}[omitEmpty], opt == "" || omitEmpty
		case typ == reflect.TypeFor[domain.Changes]():
			return tag[0], map[bool]jsonKind{true: kChangesOmit, false: kChanges}[omitEmpty], opt == "" || omitEmpty
		case typ == reflect.TypeFor[domain.OperationError]() && opt == "":
			return tag[0], kOpError, true
		case typ == reflect.TypeFor[domain.TargetRequest]() && opt == "":
			return tag[0], kRequest, true
		case typ == reflect.TypeFor[[]string]() && omitEmpty:
			return tag[0], kStrsOmit, true
		case typ.Kind() == reflect.String:
			return tag[0], map[bool]jsonKind{true: kStrOmit, false: kStr}[omitEmpty], opt == "" || omitEmpty
		case typ.Kind() == reflect.Int || typ.Kind() == reflect.Int64:
			return tag[0], map[bool]jsonKind{true: kIntOmit, false: kInt}[omitEmpty], opt == "" || omitEmpty
		case typ.Kind() == reflect.Bool && omitEmpty:
			return tag[0], kBoolOmit, true
		}
		return tag[0], 0, false
	}
	check := func(name string, typ reflect.Type, table []jsonField) {
		var want []jsonField
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() || f.Tag.Get("json") == "-" {
				continue
			}
			n, k, ok := kindOf(f)
			if !ok {
				t.Errorf("%s.%s: no kind for %s `%s`", name, f.Name, f.Type, f.Tag)
				continue
			}
			want = append(want, jsonField{n, k})
		}
		if !reflect.DeepEqual(table, want) {
			t.Errorf("%s:\n table %v\nstruct %v", name, table, want)
		}
		if len(table) > maxFields {
			t.Errorf("%s: %d fields, more than maxFields", name, len(table))
		}
	}
	for name, table := range eventFields {
		ptr, ok := domain.NewEvent(name)
		if !ok {
			t.Fatalf("domain.NewEvent does not know %s", name)
		}
		check(name, reflect.TypeOf(ptr).Elem(), table)
	}
	check("TargetRequest", reflect.TypeFor[domain.TargetRequest](), requestFields)
	check("OperationError", reflect.TypeFor[domain.OperationError](), opErrorFields)
}
