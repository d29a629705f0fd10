package projections

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"shadowbridge/domain"
)

// appendEventJSON appends what json.Marshal(e) returns, byte for byte (the same field order,
// omitted fields, sorted attribute names, escaping and errors), without reflection for the
// shadow's events: an audit writes one or more per record, and encoding/json's reflection was
// the largest single cost of `audit --json`. Any other event (a resource's), and any attribute
// value outside the domain's string, int64 and bool, goes through json.Marshal itself.
func appendEventJSON(b []byte, e domain.Event) ([]byte, error) {
	o := jsonObject{b: append(b, '{')}
	switch x := e.(type) {
	case domain.AddRequested:
		o.str("shadowId", x.ShadowID)
		o.str("resource", x.Resource)
		o.str("objectClass", x.ObjectClass)
		o.str("secondaryIdentifier", x.SecondaryIdentifier)
		o.str("operationId", x.OperationID)
		o.strOmit("requestId", x.RequestID)
		o.attrs("attributes", x.Attributes, false)
		o.strsOmit("order", x.Order)
		if x.Assigned {
			o.key("assigned")
			o.b = append(o.b, "true"...)
		}
		o.strOmit("traceparent", x.TraceParent)
		o.time("time", x.Time)
	case domain.ModifyRequested:
		o.str("operationId", x.OperationID)
		o.strOmit("requestId", x.RequestID)
		o.changes("changes", x.Changes, false)
		o.strsOmit("order", x.Order)
		o.strOmit("traceparent", x.TraceParent)
		o.time("time", x.Time)
	case domain.DeleteRequested:
		o.str("operationId", x.OperationID)
		o.strOmit("requestId", x.RequestID)
		o.strOmit("traceparent", x.TraceParent)
		o.time("time", x.Time)
	case domain.DispatchRequested:
		o.str("operationId", x.OperationID)
		o.int("attempt", int64(x.Attempt))
		o.intOmit("sequence", x.Sequence)
		o.intOmit("previousSequence", x.PreviousSequence)
		o.key("request")
		r := x.Request
		in := jsonObject{b: append(o.b, '{')}
		in.str("operation", string(r.Operation))
		in.str("objectClass", r.ObjectClass)
		in.attrs("attributes", r.Attributes, true)
		in.attrs("primaryIdentifiers", r.PrimaryIdentifiers, true)
		in.attrs("secondaryIdentifiers", r.SecondaryIdentifiers, true)
		in.changes("changes", r.Changes, true)
		in.strsOmit("order", r.Order)
		o.b, o.err = append(in.b, '}'), in.err
		o.strOmit("traceparent", x.TraceParent)
		o.time("time", x.Time)
	case domain.OperationSent:
		o.str("operationId", x.OperationID)
		o.int("attempt", int64(x.Attempt))
		o.strOmit("reference", x.Reference)
		o.time("time", x.Time)
	case domain.AttemptFailed:
		o.str("operationId", x.OperationID)
		o.int("attempt", int64(x.Attempt))
		o.key("error")
		o.b = append(o.b, `{"category":`...)
		o.b = appendJSONString(o.b, string(x.Error.Category))
		o.b = append(o.b, `,"message":`...)
		o.b = append(appendJSONString(o.b, x.Error.Message), '}')
		if x.NotSent {
			o.key("notSent")
			o.b = append(o.b, "true"...)
		}
		o.time("time", x.Time)
	case domain.OperationCompleted:
		o.str("operationId", x.OperationID)
		o.str("result", string(x.Result))
		o.strOmit("message", x.Message)
		o.attrs("primaryIdentifiers", x.PrimaryIdentifiers, true)
		o.str("source", x.Source)
		if !x.GraceUntil.IsZero() {
			o.time("graceUntil", x.GraceUntil)
		}
		o.time("time", x.Time)
	case domain.AccountDiscovered:
		o.str("operationId", x.OperationID)
		o.str("shadowId", x.ShadowID)
		o.attrs("attributes", x.Attributes, true)
		o.attrs("primaryIdentifiers", x.PrimaryIdentifiers, true)
		o.time("time", x.Time)
	case domain.ShadowDiscovered:
		o.str("shadowId", x.ShadowID)
		o.str("resource", x.Resource)
		o.str("objectClass", x.ObjectClass)
		o.str("secondaryIdentifier", x.SecondaryIdentifier)
		o.attrs("attributes", x.Attributes, false)
		o.attrs("primaryIdentifiers", x.PrimaryIdentifiers, true)
		o.strOmit("cause", x.Cause)
		o.time("time", x.Time)
	case domain.RecreateRequested:
		o.str("operationId", x.OperationID)
		o.attrs("attributes", x.Attributes, false)
		o.time("time", x.Time)
	case domain.OperationPostponed:
		o.str("operationId", x.OperationID)
		o.int("attempt", int64(x.Attempt))
		o.strOmit("reason", x.Reason)
		o.time("time", x.Time)
	case domain.TimerSet:
		o.time("at", x.At)
		o.time("time", x.Time)
	case domain.GracePeriodEnded:
		o.str("operationId", x.OperationID)
		o.time("time", x.Time)
	case domain.OperationRemoved:
		o.str("operationId", x.OperationID)
		o.time("time", x.Time)
	case domain.AccountGone:
		o.time("time", x.Time)
	case domain.TimerCleared:
		o.time("time", x.Time)
	case domain.ShadowExpired:
		o.time("time", x.Time)
	default:
		j, err := json.Marshal(e)
		return append(b, j...), err
	}
	if o.err != nil {
		return b, o.err
	}
	return append(o.b, '}'), nil
}

// jsonObject writes one JSON object's members in order; the first error stays in err.
type jsonObject struct {
	b   []byte
	n   int
	err error
}

// key writes a member's name; names are the domain's json tags, plain ASCII.
func (o *jsonObject) key(k string) {
	if o.n > 0 {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObject) str(k, v string) {
	o.key(k)
	o.b = appendJSONString(o.b, v)
}

func (o *jsonObject) strOmit(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *jsonObject) int(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

func (o *jsonObject) intOmit(k string, v int64) {
	if v != 0 {
		o.int(k, v)
	}
}

func (o *jsonObject) strsOmit(k string, v []string) {
	if len(v) == 0 {
		return
	}
	o.key(k)
	o.b = append(o.b, '[')
	for i, s := range v {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendJSONString(o.b, s)
	}
	o.b = append(o.b, ']')
}

// time writes t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds); what it refuses
// (a year outside 0-9999, a zone 24 hours or more away) it refuses itself.
func (o *jsonObject) time(k string, t time.Time) {
	o.key(k)
	if _, off := t.Zone(); t.Year() < 0 || t.Year() > 9999 || off <= -24*3600 || off >= 24*3600 {
		j, err := json.Marshal(t)
		o.b = append(o.b, j...)
		o.fail(err)
		return
	}
	o.b = append(o.b, '"')
	o.b = t.AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

func (o *jsonObject) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// attrs writes an attribute map (nil is null unless omitted; omit drops an empty one, as
// omitempty does), its names sorted as encoding/json sorts a map's keys.
func (o *jsonObject) attrs(k string, a domain.Attributes, omit bool) {
	if omit && len(a) == 0 {
		return
	}
	o.key(k)
	if a == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.b = append(o.b, '{')
	for i, name := range sortedKeys(a) {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = append(appendJSONString(o.b, name), ':')
		o.values(a[name])
	}
	o.b = append(o.b, '}')
}

// changes writes a change map the same way; each change's add and delete are omitted when
// empty, its replace is always there (null when nil).
func (o *jsonObject) changes(k string, c domain.Changes, omit bool) {
	if omit && len(c) == 0 {
		return
	}
	o.key(k)
	if c == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.b = append(o.b, '{')
	for i, name := range sortedKeys(c) {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = append(appendJSONString(o.b, name), ':')
		ch := c[name]
		in := jsonObject{b: append(o.b, '{')}
		if len(ch.Add) > 0 {
			in.key("add")
			in.values(ch.Add)
		}
		if len(ch.Delete) > 0 {
			in.key("delete")
			in.values(ch.Delete)
		}
		in.key("replace")
		in.values(ch.Replace)
		o.b = append(in.b, '}')
		o.fail(in.err)
	}
	o.b = append(o.b, '}')
}

// values writes a value list (nil is null); a value other than a string, an int64 or a bool
// (a float64: its shortest form and exponent rules) is encoding/json's own.
func (o *jsonObject) values(vs []any) {
	if vs == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.b = append(o.b, '[')
	for i, v := range vs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		switch x := v.(type) {
		case string:
			o.b = appendJSONString(o.b, x)
		case int64:
			o.b = strconv.AppendInt(o.b, x, 10)
		case bool:
			o.b = strconv.AppendBool(o.b, x)
		default:
			j, err := json.Marshal(x)
			o.b = append(o.b, j...)
			o.fail(err)
		}
	}
	o.b = append(o.b, ']')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
