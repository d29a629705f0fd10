package eventstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"shadowbridge/domain"
)

// Reflection-free readers for what every consumer of the log decodes: the commit envelope and
// the shadow state (the dispatcher, the projector, history, as-of and audit read them for every
// record). They read what the writers in fastcodec.go write and what the reflective encoder of
// earlier versions wrote (maps keyed by the json names); a key they do not know is skipped, so a
// newer field never breaks an older reader. codec_test checks them against the reflective
// decoder field by field.

// readers are reused whole (decoder, byte reader): one is needed per record read.
var readers = sync.Pool{New: func() any { return &reader{d: msgpack.NewDecoder(nil)} }}

// reader reads the encodings msgpack/v5 writes for our values (fixed and short maps, arrays,
// strings and integers, booleans, nil, time extensions) straight from the bytes, and hands any
// other encoding to a msgpack decoder positioned at the same byte, so what it returns is what
// the decoder returns. (Through the decoder alone, a byte reader behind an interface, the
// decoding was most of an audit's own time.)
type reader struct {
	d    *msgpack.Decoder
	data []byte
	pos  int          // the next byte to read
	br   bytes.Reader // d reads it directly (a bytes.Reader is a ByteScanner: no read-ahead)
	err  error
}

func newReader(data []byte) *reader {
	r := readers.Get().(*reader)
	r.data, r.pos, r.err = data, 0, nil
	r.br.Reset(data)
	r.d.Reset(&r.br) // clears the options too
	r.d.UseLooseInterfaceDecoding(true)
	return r
}

// release returns the reader for reuse; the caller keeps nothing of it.
func (r *reader) release() {
	r.data = nil
	r.br.Reset(nil)
	readers.Put(r)
}

// next returns the code of the next value; ok is false after an error or at the end (the
// caller then lets the decoder report it).
func (r *reader) next() (c byte, ok bool) {
	if r.err != nil || r.pos >= len(r.data) {
		return 0, false
	}
	return r.data[r.pos], true
}

// viaDecoder runs one decoder call from pos and moves pos past what it read.
func (r *reader) viaDecoder(fn func(d *msgpack.Decoder) error) {
	if r.err != nil {
		return
	}
	if _, err := r.br.Seek(int64(r.pos), io.SeekStart); err != nil {
		r.fail(err)
		return
	}
	r.fail(fn(r.d))
	r.pos = len(r.data) - r.br.Len()
}

// raw returns the next value's bytes, a slice of the data (not a copy), and moves past it.
func (r *reader) raw() []byte {
	if r.err != nil {
		return nil
	}
	start := r.pos
	end, err := skipValue(r.data, start)
	if err != nil {
		r.fail(err)
		return nil
	}
	r.pos = end
	return r.data[start:end:end]
}

func (r *reader) fail(err error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

// mapLen returns the length of a map, -1 for nil.
func (r *reader) mapLen() int {
	if n, next, ok := mapHeader(r.data, r.pos); ok && r.err == nil {
		r.pos = next
		return n
	}
	n := 0
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { n, err = d.DecodeMapLen(); return })
	return n
}

// arrayLen returns the length of an array, -1 for nil.
func (r *reader) arrayLen() int {
	if n, next, ok := arrayHeader(r.data, r.pos); ok && r.err == nil {
		r.pos = next
		return n
	}
	n := 0
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { n, err = d.DecodeArrayLen(); return })
	return n
}

// str reads a string ("" for nil, as the decoder does).
func (r *reader) str() string {
	if b, next, ok := strAt(r.data, r.pos); ok && r.err == nil {
		r.pos = next
		return string(b)
	}
	var s string
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { s, err = d.DecodeString(); return })
	return s
}

// int reads an integer of any width (0 for nil, as the decoder does).
func (r *reader) int() int64 {
	c, ok := r.next()
	if ok {
		if n, size, ok := fixedInt(c, r.data[r.pos+1:]); ok {
			r.pos += 1 + size
			return n
		}
	}
	var n int64
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { n, err = d.DecodeInt64(); return })
	return n
}

// fixedInt decodes an integer whose code is c and whose bytes follow in b, as the decoder's
// DecodeInt64 does; size is how many bytes of b it used. ok is false for other codes, nil
// included (the callers differ on it), and for short data.
func fixedInt(c byte, b []byte) (n int64, size int, ok bool) {
	if msgpcode.IsFixedNum(c) {
		return int64(int8(c)), 0, true
	}
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		size = 1
	case msgpcode.Uint16, msgpcode.Int16:
		size = 2
	case msgpcode.Uint32, msgpcode.Int32:
		size = 4
	case msgpcode.Uint64, msgpcode.Int64:
		size = 8
	default:
		return 0, 0, false
	}
	if len(b) < size {
		return 0, 0, false
	}
	switch c {
	case msgpcode.Uint8:
		n = int64(b[0])
	case msgpcode.Int8:
		n = int64(int8(b[0]))
	case msgpcode.Uint16:
		n = int64(binary.BigEndian.Uint16(b))
	case msgpcode.Int16:
		n = int64(int16(binary.BigEndian.Uint16(b)))
	case msgpcode.Uint32:
		n = int64(binary.BigEndian.Uint32(b))
	case msgpcode.Int32:
		n = int64(int32(binary.BigEndian.Uint32(b)))
	default:
		n = int64(binary.BigEndian.Uint64(b))
	}
	return n, size, true
}

func (r *reader) boolean() bool {
	if c, ok := r.next(); ok && (c == msgpcode.True || c == msgpcode.False) {
		r.pos++
		return c == msgpcode.True
	}
	var b bool
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { b, err = d.DecodeBool(); return })
	return b
}

// tm reads a time: msgpack's time extension (-1) as the decoder reads it (timeAt), anything
// else through the decoder.
func (r *reader) tm() time.Time {
	if c, ok := r.next(); ok {
		n := 0
		switch c {
		case msgpcode.FixExt4:
			n = 6
		case msgpcode.FixExt8:
			n = 10
		case msgpcode.Ext8:
			n = 15
		}
		if n > 0 && r.pos+n <= len(r.data) {
			if t, ok := timeAt(r.data[r.pos : r.pos+n]); ok {
				r.pos += n
				return t
			}
		}
	}
	var t time.Time
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { t, err = d.DecodeTime(); return })
	return t.UTC()
}

func (r *reader) skip() { r.raw() }

// isNil consumes a nil if one is next.
func (r *reader) isNil() bool {
	if c, ok := r.next(); ok && c == msgpcode.Nil {
		r.pos++
		return true
	}
	return false
}

// each calls fn for every key of a map (nil: none). The key is the data's own bytes (no copy,
// no allocation): the readers only compare it with the names they know.
func (r *reader) each(fn func(key []byte)) {
	n := r.mapLen()
	for i := 0; i < n && r.err == nil; i++ {
		fn(r.keyBytes())
	}
}

// keyBytes reads a map key as a slice of the data (a key encoded otherwise is decoded).
func (r *reader) keyBytes() []byte {
	if r.err == nil {
		if s, next, ok := strAt(r.data, r.pos); ok {
			r.pos = next
			return s
		}
	}
	return []byte(r.str())
}

func (r *reader) values() []any {
	n := r.arrayLen()
	if n < 0 {
		return nil
	}
	out := make([]any, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.value())
	}
	return out
}

// value reads one attribute value as the decoder's DecodeInterfaceLoose does: strings, small
// integers (int64), booleans and nil here, anything else (wider integers, floats) through it.
func (r *reader) value() any {
	c, ok := r.next()
	switch {
	case !ok:
	case msgpcode.IsFixedNum(c):
		r.pos++
		return int64(int8(c))
	case c == msgpcode.True || c == msgpcode.False:
		r.pos++
		return c == msgpcode.True
	case c == msgpcode.Nil:
		r.pos++
		return nil
	case msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32:
		if b, next, ok := strAt(r.data, r.pos); ok {
			r.pos = next
			return string(b)
		}
	}
	var v any
	r.viaDecoder(func(d *msgpack.Decoder) (err error) { v, err = d.DecodeInterfaceLoose(); return })
	return v
}

func (r *reader) strs() []string {
	n := r.arrayLen()
	if n < 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.str())
	}
	return out
}

func (r *reader) attrs() domain.Attributes {
	n := r.mapLen()
	if n < 0 {
		return nil
	}
	out := make(domain.Attributes, n)
	for i := 0; i < n && r.err == nil; i++ {
		k := r.str()
		out[k] = r.values()
	}
	return out
}

func (r *reader) changes() domain.Changes {
	n := r.mapLen()
	if n < 0 {
		return nil
	}
	out := make(domain.Changes, n)
	for i := 0; i < n && r.err == nil; i++ {
		name := r.str()
		var c domain.AttributeChange
		r.each(func(k []byte) {
			switch string(k) {
			case "add":
				c.Add = r.values()
			case "delete":
				c.Delete = r.values()
			case "replace":
				if !r.isNil() {
					c.Replace = r.values()
				}
			default:
				r.skip()
			}
		})
		out[name] = c
	}
	return out
}

func (r *reader) delta() domain.Delta {
	var d domain.Delta
	r.each(func(k []byte) {
		switch string(k) {
		case "changeType":
			d.ChangeType = domain.ChangeType(r.str())
		case "attributes":
			d.Attributes = r.attrs()
		case "changes":
			d.Changes = r.changes()
		case "order":
			d.Order = r.strs()
		default:
			r.skip()
		}
	})
	return d
}

func (r *reader) pendingOp() domain.PendingOperation {
	var p domain.PendingOperation
	r.each(func(k []byte) {
		switch string(k) {
		case "id":
			p.ID = r.str()
		case "type":
			p.Type = domain.OperationType(r.str())
		case "delta":
			p.Delta = r.delta()
		case "executionStatus":
			p.ExecutionStatus = domain.ExecutionStatus(r.str())
		case "resultStatus":
			p.ResultStatus = domain.ResultStatus(r.str())
		case "attemptNumber":
			p.AttemptNumber = int(r.int())
		case "requestTimestamp":
			p.RequestTimestamp = r.tm()
		case "lastAttemptTimestamp":
			p.LastAttemptTimestamp = r.tm()
		case "completionTimestamp":
			p.CompletionTimestamp = r.tm()
		case "asynchronousOperationReference":
			p.AsynchronousOperationReference = r.str()
		case "lastError":
			if !r.isNil() {
				e := r.opError()
				p.LastError = &e
			}
		case "requestId":
			p.RequestID = r.str()
		case "message":
			p.Message = r.str()
		case "gracePeriodEnd":
			p.GracePeriodEnd = r.tm()
		case "sequence":
			p.Sequence = r.int()
		case "traceparent":
			p.TraceParent = r.str()
		default:
			r.skip()
		}
	})
	return p
}

func (r *reader) shadow() domain.ShadowData {
	var d domain.ShadowData
	r.each(func(k []byte) {
		switch string(k) {
		case "shadowId":
			d.ShadowID = r.str()
		case "resource":
			d.Resource = r.str()
		case "objectClass":
			d.ObjectClass = r.str()
		case "lifecycleState":
			d.LifecycleState = domain.Lifecycle(r.str())
		case "exists":
			d.Exists = r.boolean()
		case "dead":
			d.Dead = r.boolean()
		case "assigned":
			d.Assigned = r.boolean()
		case "primaryIdentifiers":
			d.PrimaryIdentifiers = r.attrs()
		case "secondaryIdentifiers":
			d.SecondaryIdentifiers = r.attrs()
		case "attributes":
			d.Attributes = r.attrs()
		case "pendingOperations":
			n := r.arrayLen()
			if n >= 0 {
				d.PendingOperations = make([]domain.PendingOperation, 0, n)
			}
			for i := 0; i < n && r.err == nil; i++ {
				d.PendingOperations = append(d.PendingOperations, r.pendingOp())
			}
		case "createTimestamp":
			d.CreateTimestamp = r.tm()
		case "modifyTimestamp":
			d.ModifyTimestamp = r.tm()
		case "deathTimestamp":
			d.DeathTimestamp = r.tm()
		case "expired":
			d.Expired = r.boolean()
		case "lastSequence":
			d.LastSequence = r.int()
		case "deliveredSequence":
			d.DeliveredSequence = r.int()
		case "targetChange":
			d.TargetChange = r.targetChange()
		case "version":
			d.Version = r.int()
		default:
			r.skip()
		}
	})
	return d
}

func (r *reader) targetChange() *domain.TargetChange {
	var tc domain.TargetChange
	r.each(func(k []byte) {
		switch string(k) {
		case "kind":
			tc.Kind = r.str()
		case "source":
			tc.Source = r.str()
		case "reconciliation":
			tc.Reconciliation = r.str()
		case "attributes":
			tc.Attributes = r.strs()
		case "time":
			tc.Time = r.tm()
		default:
			r.skip()
		}
	})
	return &tc
}

// readState decodes a shadow state without reflection.
func readState(raw []byte) (domain.ShadowData, error) {
	r := newReader(raw)
	defer r.release()
	d := r.shadow()
	return d, r.err
}

// readCommit decodes the commit envelope without reflection; events and state stay raw.
// knownEventTypes are the names of the events, to read a commit's type names without allocating.
var knownEventTypes = func() map[string]string {
	m := map[string]string{}
	for _, name := range domain.EventTypes {
		m[name] = name
	}
	return m
}()

// eventType reads an event type name: a known one without allocating.
func (r *reader) eventType() string {
	if r.err == nil {
		if s, next, ok := strAt(r.data, r.pos); ok {
			if name, known := knownEventTypes[string(s)]; known {
				r.pos = next
				return name
			}
		}
	}
	return r.str()
}

func readCommit(data []byte) (wireCommit, error) {
	var wc wireCommit
	r := newReader(data)
	defer r.release()
	r.each(func(k []byte) {
		switch string(k) {
		case "v":
			wc.V = int(r.int())
		case "r":
			wc.RequestID = r.str()
		case "e":
			n := r.arrayLen()
			if n > 0 {
				wc.Events = make([]wireEvent, 0, min(n, 64))
			}
			for i := 0; i < n && r.err == nil; i++ {
				var we wireEvent
				r.each(func(k []byte) {
					switch string(k) {
					case "t":
						we.Type = r.eventType()
					case "d":
						we.Data = r.raw()
					default:
						r.skip()
					}
				})
				wc.Events = append(wc.Events, we)
			}
		case "s":
			wc.State = r.raw()
		default:
			r.skip()
		}
	})
	if r.err != nil {
		return wc, fmt.Errorf("%w: %w", ErrCorrupt, r.err)
	}
	return wc, nil
}

func (r *reader) targetRequest() domain.TargetRequest {
	var t domain.TargetRequest
	r.each(func(k []byte) {
		switch string(k) {
		case "operation":
			t.Operation = domain.ChangeType(r.str())
		case "objectClass":
			t.ObjectClass = r.str()
		case "attributes":
			t.Attributes = r.attrs()
		case "primaryIdentifiers":
			t.PrimaryIdentifiers = r.attrs()
		case "secondaryIdentifiers":
			t.SecondaryIdentifiers = r.attrs()
		case "changes":
			t.Changes = r.changes()
		case "order":
			t.Order = r.strs()
		default:
			r.skip()
		}
	})
	return t
}

// readDecisionTime reads the "time" of a commit's first event without decoding the events:
// what an as-of query compares, for every commit of a shadow. ok is false when the first event
// has no time field (the caller decodes it then).
func readDecisionTime(data []byte) (t time.Time, ok bool, err error) {
	r := newReader(data)
	defer r.release()
	// Stop at the first event's time: the rest (other events, the whole state) is not read.
	r.each(func(k []byte) {
		if string(k) != "e" {
			r.skip()
			return
		}
		if r.arrayLen() < 1 {
			return
		}
		r.each(func(k []byte) {
			if string(k) != "d" {
				r.skip()
				return
			}
			r.each(func(k []byte) {
				if string(k) != "time" {
					r.skip()
					return
				}
				t, ok = r.tm(), true
				r.fail(errFound)
			})
			if !ok {
				r.fail(errFound) // no time in the first event: the caller decodes it
			}
		})
	})
	if r.err != nil && !errors.Is(r.err, errFound) {
		return time.Time{}, false, fmt.Errorf("%w: %w", ErrCorrupt, r.err)
	}
	return t, ok, nil
}

// errFound stops a reader that has what it looked for.
var errFound = errors.New("found")

// OpSummary is what history and audit show of an operation: its change type and request id.
type OpSummary struct {
	ID         string
	ChangeType domain.ChangeType
	RequestID  string
}

// StateSummary is the part of a commit's state that history and audit read.
type StateSummary struct {
	ObjectClass string
	Ops         []OpSummary // in the state's order (a shadow holds a few: a slice, not a map)
}

// Op returns the summary of the operation with this id (the last one, should the state hold
// two).
func (s StateSummary) Op(id string) (OpSummary, bool) {
	for i := len(s.Ops) - 1; i >= 0; i-- {
		if s.Ops[i].ID == id {
			return s.Ops[i], true
		}
	}
	return OpSummary{}, false
}

// readStateSummary reads the object class and the operations' change types and request ids,
// skipping attributes, identifiers and the rest.
func readStateSummary(raw []byte) (StateSummary, error) {
	var s StateSummary
	r := newReader(raw)
	defer r.release()
	r.each(func(k []byte) {
		switch string(k) {
		case "objectClass":
			s.ObjectClass = r.str()
		case "pendingOperations":
			n := r.arrayLen()
			for i := 0; i < n && r.err == nil; i++ {
				var op OpSummary
				r.each(func(k []byte) {
					switch string(k) {
					case "id":
						op.ID = r.str()
					case "requestId":
						op.RequestID = r.str()
					case "delta":
						r.each(func(k []byte) {
							if string(k) == "changeType" {
								op.ChangeType = domain.ChangeType(r.str())
								return
							}
							r.skip()
						})
					default:
						r.skip()
					}
				})
				if s.Ops == nil {
					s.Ops = make([]OpSummary, 0, n)
				}
				s.Ops = append(s.Ops, op)
			}
		default:
			r.skip()
		}
	})
	if r.err != nil {
		return s, fmt.Errorf("%w: %w", ErrCorrupt, r.err)
	}
	return s, nil
}

func (r *reader) opError() (e domain.OperationError) {
	r.each(func(k []byte) {
		switch string(k) {
		case "category":
			e.Category = domain.Category(r.str())
		case "message":
			e.Message = r.str()
		default:
			r.skip()
		}
	})
	return e
}
