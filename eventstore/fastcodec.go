package eventstore

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"shadowbridge/domain"
)

// Reflection-free msgpack writers for the types on the append path. They produce exactly what the
// reflective encoder would produce with the json tags (maps keyed by the json names), so the
// reflective decoder reads both; codec_test checks that every field of every event and of the
// shadow survives a round trip. Zero-valued optional fields are left out, as omitempty does.

type writer struct {
	e   *msgpack.Encoder
	err error
}

func (w *writer) fail(err error) {
	if w.err == nil && err != nil {
		w.err = err
	}
}

func (w *writer) mapLen(n int)    { w.fail(w.e.EncodeMapLen(n)) }
func (w *writer) key(k string)    { w.fail(w.e.EncodeString(k)) }
func (w *writer) str(k, v string) { w.key(k); w.fail(w.e.EncodeString(v)) }
func (w *writer) num(k string, v int64) {
	w.key(k)
	w.fail(w.e.EncodeInt(v))
}
func (w *writer) boolean(k string, v bool) { w.key(k); w.fail(w.e.EncodeBool(v)) }
func (w *writer) tm(k string, t time.Time) { w.key(k); w.fail(w.e.EncodeTime(t)) }

// count returns how many of the conditions hold (the map length of optional fields).
func count(conds ...bool) int {
	n := 0
	for _, c := range conds {
		if c {
			n++
		}
	}
	return n
}

func (w *writer) value(v any) {
	switch x := v.(type) {
	case string:
		w.fail(w.e.EncodeString(x))
	case int64:
		w.fail(w.e.EncodeInt(x))
	case float64:
		w.fail(w.e.EncodeFloat64(x))
	case bool:
		w.fail(w.e.EncodeBool(x))
	default:
		w.fail(w.e.Encode(x))
	}
}

func (w *writer) values(vs []any) {
	w.fail(w.e.EncodeArrayLen(len(vs)))
	for _, v := range vs {
		w.value(v)
	}
}

func (w *writer) attrs(a domain.Attributes) {
	w.mapLen(len(a))
	for k, vs := range a {
		w.fail(w.e.EncodeString(k))
		w.values(vs)
	}
}

func (w *writer) changes(c domain.Changes) {
	w.mapLen(len(c))
	for k, ch := range c {
		w.fail(w.e.EncodeString(k))
		// replace has no omitempty: nil (no replace) and [] (remove all) must stay different.
		w.mapLen(1 + count(len(ch.Add) > 0, len(ch.Delete) > 0))
		if len(ch.Add) > 0 {
			w.key("add")
			w.values(ch.Add)
		}
		if len(ch.Delete) > 0 {
			w.key("delete")
			w.values(ch.Delete)
		}
		w.key("replace")
		if ch.Replace == nil {
			w.fail(w.e.EncodeNil())
		} else {
			w.values(ch.Replace)
		}
	}
}

func (w *writer) strs(k string, v []string) {
	w.key(k)
	w.fail(w.e.EncodeArrayLen(len(v)))
	for _, s := range v {
		w.fail(w.e.EncodeString(s))
	}
}

func (w *writer) delta(d domain.Delta) {
	w.mapLen(1 + count(len(d.Attributes) > 0, len(d.Changes) > 0, len(d.Order) > 0))
	w.str("changeType", string(d.ChangeType))
	if len(d.Attributes) > 0 {
		w.key("attributes")
		w.attrs(d.Attributes)
	}
	if len(d.Changes) > 0 {
		w.key("changes")
		w.changes(d.Changes)
	}
	if len(d.Order) > 0 {
		w.strs("order", d.Order)
	}
}

func (w *writer) opError(e domain.OperationError) {
	w.mapLen(2)
	w.str("category", string(e.Category))
	w.str("message", e.Message)
}

func (w *writer) pendingOp(p *domain.PendingOperation) {
	w.mapLen(7 + count(!p.LastAttemptTimestamp.IsZero(), !p.CompletionTimestamp.IsZero(), p.AsynchronousOperationReference != "",
		p.LastError != nil, p.RequestID != "", p.Message != "", !p.GracePeriodEnd.IsZero(), p.Sequence != 0, p.TraceParent != ""))
	w.str("id", p.ID)
	w.str("type", string(p.Type))
	w.key("delta")
	w.delta(p.Delta)
	w.str("executionStatus", string(p.ExecutionStatus))
	w.str("resultStatus", string(p.ResultStatus))
	w.num("attemptNumber", int64(p.AttemptNumber))
	w.tm("requestTimestamp", p.RequestTimestamp)
	if !p.LastAttemptTimestamp.IsZero() {
		w.tm("lastAttemptTimestamp", p.LastAttemptTimestamp)
	}
	if !p.CompletionTimestamp.IsZero() {
		w.tm("completionTimestamp", p.CompletionTimestamp)
	}
	if p.AsynchronousOperationReference != "" {
		w.str("asynchronousOperationReference", p.AsynchronousOperationReference)
	}
	if p.LastError != nil {
		w.key("lastError")
		w.opError(*p.LastError)
	}
	if p.RequestID != "" {
		w.str("requestId", p.RequestID)
	}
	if p.Message != "" {
		w.str("message", p.Message)
	}
	if !p.GracePeriodEnd.IsZero() {
		w.tm("gracePeriodEnd", p.GracePeriodEnd)
	}
	if p.Sequence != 0 {
		w.num("sequence", p.Sequence)
	}
	if p.TraceParent != "" {
		w.str("traceparent", p.TraceParent)
	}
}

func (w *writer) shadow(d *domain.ShadowData) {
	w.mapLen(13 + count(!d.ModifyTimestamp.IsZero(), !d.DeathTimestamp.IsZero(), d.Expired, d.LastSequence != 0, d.DeliveredSequence != 0, d.TargetChange != nil))
	w.str("shadowId", d.ShadowID)
	w.str("resource", d.Resource)
	w.str("objectClass", d.ObjectClass)
	w.str("lifecycleState", string(d.LifecycleState))
	w.boolean("exists", d.Exists)
	w.boolean("dead", d.Dead)
	w.boolean("assigned", d.Assigned)
	w.key("primaryIdentifiers")
	w.attrs(d.PrimaryIdentifiers)
	w.key("secondaryIdentifiers")
	w.attrs(d.SecondaryIdentifiers)
	w.key("attributes")
	w.attrs(d.Attributes)
	w.key("pendingOperations")
	w.fail(w.e.EncodeArrayLen(len(d.PendingOperations)))
	for i := range d.PendingOperations {
		w.pendingOp(&d.PendingOperations[i])
	}
	w.tm("createTimestamp", d.CreateTimestamp)
	if !d.ModifyTimestamp.IsZero() {
		w.tm("modifyTimestamp", d.ModifyTimestamp)
	}
	if !d.DeathTimestamp.IsZero() {
		w.tm("deathTimestamp", d.DeathTimestamp)
	}
	if d.Expired {
		w.boolean("expired", true)
	}
	if d.LastSequence != 0 {
		w.num("lastSequence", d.LastSequence)
	}
	if d.DeliveredSequence != 0 {
		w.num("deliveredSequence", d.DeliveredSequence)
	}
	if tc := d.TargetChange; tc != nil {
		w.key("targetChange")
		w.mapLen(3 + count(tc.Reconciliation != "", tc.Attributes != nil))
		w.str("kind", tc.Kind)
		w.str("source", tc.Source)
		if tc.Reconciliation != "" {
			w.str("reconciliation", tc.Reconciliation)
		}
		if tc.Attributes != nil {
			w.strs("attributes", tc.Attributes)
		}
		w.tm("time", tc.Time)
	}
	w.num("version", d.Version)
}

func (w *writer) targetRequest(r domain.TargetRequest) {
	w.mapLen(2 + count(len(r.Attributes) > 0, len(r.PrimaryIdentifiers) > 0, len(r.SecondaryIdentifiers) > 0, len(r.Changes) > 0, len(r.Order) > 0))
	w.str("operation", string(r.Operation))
	w.str("objectClass", r.ObjectClass)
	if len(r.Attributes) > 0 {
		w.key("attributes")
		w.attrs(r.Attributes)
	}
	if len(r.PrimaryIdentifiers) > 0 {
		w.key("primaryIdentifiers")
		w.attrs(r.PrimaryIdentifiers)
	}
	if len(r.SecondaryIdentifiers) > 0 {
		w.key("secondaryIdentifiers")
		w.attrs(r.SecondaryIdentifiers)
	}
	if len(r.Changes) > 0 {
		w.key("changes")
		w.changes(r.Changes)
	}
	if len(r.Order) > 0 {
		w.strs("order", r.Order)
	}
}

func (w *writer) shadowAny(v any) error {
	d, ok := v.(*domain.ShadowData)
	if !ok {
		return fmt.Errorf("unexpected state type %T", v)
	}
	w.shadow(d)
	return w.err
}
