package eventstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"shadowbridge/domain"
)

// An audit writes every event of the log as JSON. Decoding each into its domain struct (maps,
// slices, strings) and reflecting over it with encoding/json was most of the audit's own work,
// so the events are also written straight from their stored bytes: a table per event type gives
// the JSON fields in the struct's order with the struct's omission rules, and each value is
// written as encoding/json writes the Go value the decoder would have produced. Anything the
// tables do not cover (another event type, an encoding our writers do not produce, a duplicate
// attribute name) is decoded and marshalled instead, so the output is json.Marshal's either way
// (TestEventJSONFromBytesIsJSONMarshals checks it on randomly filled events of every type, as
// written by the fast writer and by the reflective encoder).

// EventSummary is what history and audit show of an event beside the event itself.
type EventSummary struct {
	Type          string
	Time          time.Time
	OperationID   string
	Attempt       int                 // DispatchRequested, OperationSent, AttemptFailed, OperationPostponed
	Result        domain.ResultStatus // OperationCompleted
	ErrorCategory domain.Category     // AttemptFailed
	// Source is how a change made on the target was seen (AccountChanged, AccountGone,
	// RecreateRequested), what a confirmation came by (OperationCompleted), or why a shadow was
	// discovered (ShadowDiscovered's cause).
	Source string
}

// Summarize returns a decoded event's summary.
func Summarize(e domain.Event) EventSummary {
	s := EventSummary{Type: e.EventType(), Time: e.EventTime(), OperationID: domain.EventOperationID(e)}
	switch x := e.(type) {
	case domain.DispatchRequested:
		s.Attempt = x.Attempt
	case domain.OperationSent:
		s.Attempt = x.Attempt
	case domain.AttemptFailed:
		s.Attempt, s.ErrorCategory = x.Attempt, x.Error.Category
	case domain.OperationPostponed:
		s.Attempt = x.Attempt
	case domain.OperationCompleted:
		s.Result, s.Source = x.Result, x.Source
	case domain.AccountChanged:
		s.Source = x.Source
	case domain.AccountGone:
		s.Source = x.Source
	case domain.RecreateRequested:
		s.Source = x.Source
	case domain.ShadowDiscovered:
		s.Source = x.Cause
	}
	return s
}

// EventSummaries returns the summaries of the commit's events, in order, reading only the fields
// a summary holds (equal to Summarize of each decoded event). Not safe for concurrent use on one
// Record.
func (r *Record) EventSummaries() ([]EventSummary, error) { return r.AppendEventSummaries(nil) }

// AppendEventSummaries is EventSummaries appending to dst (an audit reuses one slice for all).
func (r *Record) AppendEventSummaries(dst []EventSummary) ([]EventSummary, error) {
	wc, err := r.decode()
	if err != nil {
		return dst, err
	}
	out := slices.Grow(dst, len(wc.Events))[:len(dst)+len(wc.Events)]
	for i, we := range wc.Events {
		i += len(dst)
		s, ok := summaryFromBytes(we.Type, we.Data)
		if !ok {
			e, err := decodeEvent(we)
			if err != nil {
				return dst, fmt.Errorf("record %d (%s): %w", r.Seq, r.Subject, err)
			}
			s = Summarize(e)
		}
		out[i] = s
	}
	return out, nil
}

// AppendEventJSON appends the JSON of the commit's event i: byte for byte what json.Marshal of
// the decoded event returns, error included. Not safe for concurrent use on one Record.
func (r *Record) AppendEventJSON(b []byte, i int) ([]byte, error) {
	wc, err := r.decode()
	if err != nil {
		return b, err
	}
	if i < 0 || i >= len(wc.Events) {
		return b, fmt.Errorf("record %d (%s): no event %d", r.Seq, r.Subject, i)
	}
	we := wc.Events[i]
	if fields, ok := eventFields[we.Type]; ok {
		if out, _, ok := transcodeObject(b, we.Data, 0, fields); ok {
			return out, nil
		}
	}
	e, err := decodeEvent(we)
	if err != nil {
		return b, fmt.Errorf("record %d (%s): %w", r.Seq, r.Subject, err)
	}
	j, err := json.Marshal(e)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// decodeEvent decodes one stored event.
func decodeEvent(we wireEvent) (domain.Event, error) {
	ev, err := decodeEvents(wireCommit{Events: []wireEvent{we}})
	if err != nil {
		return nil, err
	}
	return ev[0], nil
}

// jsonKind is how a field is written: its Go type and json options.
type jsonKind uint8

const (
	kStr          jsonKind = iota // string
	kStrOmit                      // string, omitempty
	kInt                          // int or int64
	kIntOmit                      // int64, omitempty
	kBoolOmit                     // bool, omitempty
	kTime                         // time.Time
	kTimeOmitZero                 // time.Time, omitzero
	kAttrs                        // domain.Attributes
	kAttrsOmit                    // domain.Attributes, omitempty
	kChanges                      // domain.Changes
	kChangesOmit                  // domain.Changes, omitempty
	kStrsOmit                     // []string, omitempty
	kOpError                      // domain.OperationError
	kRequest                      // domain.TargetRequest
)

type jsonField struct {
	name string
	kind jsonKind
}

// The tables of the structs events hold (the events' own, eventFields, are generated in
// events_gen.go).
var (
	requestFields = []jsonField{{"operation", kStr}, {"objectClass", kStr}, {"attributes", kAttrsOmit},
		{"primaryIdentifiers", kAttrsOmit}, {"secondaryIdentifiers", kAttrsOmit}, {"changes", kChangesOmit}, {"order", kStrsOmit}}
	opErrorFields = []jsonField{{"category", kStr}, {"message", kStr}}
)

// maxFields bounds a table's length (the spans of one object live on the stack).
const maxFields = 12

// span is where a field's value lies in the data (start < 0: absent).
type span struct{ start, end int }

// fieldSpans reads the map at data[pos] and returns where each of the fields' values lies (the
// last one when a key repeats, as the decoders keep), and the offset past the map.
func fieldSpans(data []byte, pos int, fields []jsonField) (spans [maxFields]span, next int, ok bool) {
	for i := range spans {
		spans[i].start = -1
	}
	n, pos, ok := mapHeader(data, pos)
	if !ok || n < 0 || len(fields) > maxFields {
		return spans, 0, false
	}
	for range n {
		var key []byte
		if key, pos, ok = strAt(data, pos); !ok {
			return spans, 0, false
		}
		end, err := skipValue(data, pos)
		if err != nil {
			return spans, 0, false
		}
		for i, f := range fields {
			if string(key) == f.name {
				spans[i] = span{pos, end}
				break
			}
		}
		pos = end
	}
	return spans, pos, true
}

// transcodeObject writes the map at data[pos] as the JSON object of fields; ok is false when
// something in it is not for this writer (the caller decodes and marshals instead).
func transcodeObject(b, data []byte, pos int, fields []jsonField) (out []byte, next int, ok bool) {
	spans, next, ok := fieldSpans(data, pos, fields)
	if !ok {
		return b, 0, false
	}
	b = append(b, '{')
	first := true
	for i, f := range fields {
		mark := len(b)
		if !first {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.name...)
		b = append(b, '"', ':')
		var skip bool
		if sp := spans[i]; sp.start < 0 {
			b, skip, ok = appendAbsent(b, f)
		} else {
			b, skip, ok = appendFieldValue(b, data[sp.start:sp.end], f)
		}
		if !ok {
			return b, 0, false
		}
		if skip { // omitted: the key goes too
			b = b[:mark]
			continue
		}
		first = false
	}
	return append(b, '}'), next, true
}

// appendAbsent appends the value of a field the map does not hold: the Go zero value, which the
// omitting kinds leave out (skip).
func appendAbsent(b []byte, f jsonField) (out []byte, skip, ok bool) {
	switch f.kind {
	case kStr:
		return append(b, `""`...), false, true
	case kInt:
		return append(b, '0'), false, true
	case kStrOmit, kIntOmit, kBoolOmit, kTimeOmitZero, kAttrsOmit, kChangesOmit, kStrsOmit:
		return b, true, true
	}
	return b, false, false // rare: let encoding/json write the zero value
}

// appendFieldValue appends the JSON of the msgpack value v of field f, or reports skip when f's
// options leave it out (an empty string, a zero number, ...); ok is false for bytes it does not
// handle (the caller lets encoding/json write the event).
func appendFieldValue(b, v []byte, f jsonField) (out []byte, skip, ok bool) {
	switch f.kind {
	case kStr, kStrOmit:
		s, _, ok := strAt(v, 0)
		if !ok || (f.kind == kStrOmit && len(s) == 0) {
			return b, ok, ok
		}
		return appendJSONStringBytes(b, s), false, true
	case kInt, kIntOmit:
		n, ok := intAt(v)
		if !ok || (f.kind == kIntOmit && n == 0) {
			return b, ok, ok
		}
		return strconv.AppendInt(b, n, 10), false, true
	case kBoolOmit:
		switch v[0] {
		case 0xc3:
			return append(b, "true"...), false, true
		case 0xc2, 0xc0:
			return b, true, true
		}
		return b, false, false
	case kTime, kTimeOmitZero:
		t, ok := timeAt(v)
		if !ok || (f.kind == kTimeOmitZero && t.IsZero()) {
			return b, ok, ok
		}
		b, ok = appendJSONTime(b, t)
		return b, false, ok
	case kAttrs, kAttrsOmit, kChanges, kChangesOmit:
		n, _, ok := mapHeader(v, 0)
		if !ok || ((f.kind == kAttrsOmit || f.kind == kChangesOmit) && n <= 0) {
			return b, ok, ok
		}
		if f.kind == kAttrs || f.kind == kAttrsOmit {
			b, ok = appendAttrs(b, v)
		} else {
			b, ok = appendChanges(b, v)
		}
		return b, false, ok
	case kStrsOmit:
		return appendStrs(b, v)
	case kOpError, kRequest:
		if v[0] == 0xc0 {
			return b, false, false
		}
		inner := opErrorFields
		if f.kind == kRequest {
			inner = requestFields
		}
		b, _, ok = transcodeObject(b, v, 0, inner)
		return b, false, ok
	}
	return b, false, false
}

// appendStrs appends a msgpack array of strings as JSON (skip: an empty one, omitted).
func appendStrs(b, v []byte) (out []byte, skip, ok bool) {
	n, pos, ok := arrayHeader(v, 0)
	if !ok || n <= 0 {
		return b, ok, ok
	}
	b = append(b, '[')
	for j := range n {
		var s []byte
		if s, pos, ok = strAt(v, pos); !ok {
			return b, false, false
		}
		if j > 0 {
			b = append(b, ',')
		}
		b = appendJSONStringBytes(b, s)
	}
	return append(b, ']'), false, true
}

// mapEntry is an entry of a msgpack map with string keys: the key and where its value lies.
type mapEntry struct {
	name       []byte
	start, end int
}

// sortedEntries appends to dst the entries of the map at v[0] (not nil), sorted by key as
// encoding/json sorts a map's keys; ok is false for a key that repeats (the decoders keep the
// last: left to them) or one not encoded as a string.
func sortedEntries(v []byte, dst []mapEntry) ([]mapEntry, bool) {
	n, pos, ok := mapHeader(v, 0)
	if !ok || n < 0 {
		return dst, false
	}
	for range n {
		var name []byte
		if name, pos, ok = strAt(v, pos); !ok {
			return dst, false
		}
		end, err := skipValue(v, pos)
		if err != nil {
			return dst, false
		}
		dst = append(dst, mapEntry{name, pos, end})
		pos = end
	}
	slices.SortFunc(dst, func(x, y mapEntry) int { return bytes.Compare(x.name, y.name) })
	for i := 1; i < len(dst); i++ {
		if bytes.Equal(dst[i-1].name, dst[i].name) {
			return dst, false
		}
	}
	return dst, true
}

// appendSortedMap writes the map at v[0] (nil: null) as a JSON object with its keys sorted,
// each value written by value.
func appendSortedMap(b, v []byte, value func(b, v []byte) ([]byte, bool)) ([]byte, bool) {
	if n, _, ok := mapHeader(v, 0); !ok {
		return b, false
	} else if n < 0 {
		return append(b, "null"...), true
	}
	var stack [16]mapEntry
	entries, ok := sortedEntries(v, stack[:0])
	if !ok {
		return b, false
	}
	b = append(b, '{')
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendJSONStringBytes(b, e.name), ':')
		if b, ok = value(b, v[e.start:e.end]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendAttrs writes an attribute map (nil: null), names sorted.
func appendAttrs(b, v []byte) ([]byte, bool) { return appendSortedMap(b, v, appendValues) }

// appendChanges writes a change map (nil: null), names sorted; each change's add and delete
// are left out when empty, its replace is always there (null when absent or nil).
func appendChanges(b, v []byte) ([]byte, bool) { return appendSortedMap(b, v, appendChange) }

func appendChange(b, v []byte) ([]byte, bool) {
	spans, _, ok := fieldSpans(v, 0, changeFields)
	if !ok {
		return b, false
	}
	b = append(b, '{')
	for j, name := range []string{"add", "delete"} {
		sp := spans[j]
		if sp.start < 0 {
			continue
		}
		if m, _, ok := arrayHeader(v, sp.start); !ok {
			return b, false
		} else if m <= 0 {
			continue // omitempty
		}
		b = append(append(append(b, '"'), name...), `":`...)
		if b, ok = appendValues(b, v[sp.start:sp.end]); !ok {
			return b, false
		}
		b = append(b, ',')
	}
	b = append(b, `"replace":`...)
	if sp := spans[2]; sp.start < 0 {
		b = append(b, "null"...)
	} else if b, ok = appendValues(b, v[sp.start:sp.end]); !ok {
		return b, false
	}
	return append(b, '}'), true
}

// changeFields are domain.AttributeChange's keys (only their names are used).
var changeFields = []jsonField{{"add", kStrsOmit}, {"delete", kStrsOmit}, {"replace", kStrsOmit}}

// appendValues writes a value list (nil: null) as the decoder's values would be written:
// strings, integers (int64, or uint64 past its range), booleans, nil and float64s; anything
// else is the decoder's.
func appendValues(b, v []byte) ([]byte, bool) {
	n, pos, ok := arrayHeader(v, 0)
	if !ok {
		return b, false
	}
	if n < 0 {
		return append(b, "null"...), true
	}
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		if pos >= len(v) {
			return b, false
		}
		c := v[pos]
		switch {
		case c == 0xc0:
			b, pos = append(b, "null"...), pos+1
		case c == 0xc2 || c == 0xc3:
			b, pos = strconv.AppendBool(b, c == 0xc3), pos+1
		case c == 0xcf: // uint64: the loose decoder keeps it unsigned
			if pos+9 > len(v) {
				return b, false
			}
			b, pos = strconv.AppendUint(b, binary.BigEndian.Uint64(v[pos+1:]), 10), pos+9
		case c == 0xcb:
			if pos+9 > len(v) {
				return b, false
			}
			f := math.Float64frombits(binary.BigEndian.Uint64(v[pos+1:]))
			j, err := json.Marshal(f)
			if err != nil {
				return b, false // NaN or infinite: the decoder's path reports it
			}
			b, pos = append(b, j...), pos+9
		case c&0xe0 == 0xa0 || (c >= 0xd9 && c <= 0xdb):
			var s []byte
			if s, pos, ok = strAt(v, pos); !ok {
				return b, false
			}
			b = appendJSONStringBytes(b, s)
		default:
			x, size, ok := fixedInt(c, v[pos+1:])
			if !ok {
				return b, false
			}
			b, pos = strconv.AppendInt(b, x, 10), pos+1+size
		}
	}
	return append(b, ']'), true
}

// summaryFromBytes reads an event's summary fields from its stored bytes; ok is false when the
// type or an encoding is not for this reader.
func summaryFromBytes(typ string, data []byte) (EventSummary, bool) {
	fields, ok := eventFields[typ]
	if !ok {
		return EventSummary{}, false
	}
	spans, _, ok := fieldSpans(data, 0, fields)
	if !ok {
		return EventSummary{}, false
	}
	s := EventSummary{Type: typ}
	for i, f := range fields {
		sp := spans[i]
		if sp.start < 0 {
			continue
		}
		v := data[sp.start:sp.end]
		switch f.name {
		case "time":
			if s.Time, ok = timeAt(v); !ok {
				return s, false
			}
		case "operationId", "result", "source", "cause":
			str, _, ok := strAt(v, 0)
			if !ok {
				return s, false
			}
			switch f.name {
			case "result":
				s.Result = domain.ResultStatus(str)
			case "operationId":
				s.OperationID = string(str)
			default:
				s.Source = string(str)
			}
		case "attempt":
			n, ok := intAt(v)
			if !ok {
				return s, false
			}
			s.Attempt = int(n)
		case "error":
			in, _, ok := fieldSpans(v, 0, opErrorFields)
			if !ok {
				return s, false
			}
			if in[0].start >= 0 {
				str, _, ok := strAt(v[in[0].start:in[0].end], 0)
				if !ok {
					return s, false
				}
				s.ErrorCategory = domain.Category(str)
			}
		}
	}
	return s, true
}

// appendJSONTime writes t as time.Time's MarshalJSON does; ok is false for what it refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	if _, off := t.Zone(); t.Year() < 0 || t.Year() > 9999 || off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendJSONStringBytes writes s quoted: printable ASCII as it is, anything else (quotes,
// backslashes, HTML's <, > and &, control characters, non-ASCII) through json.Marshal, so the
// escaping is encoding/json's own.
func appendJSONStringBytes(b, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(string(s))
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
