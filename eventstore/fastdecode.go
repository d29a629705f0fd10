package eventstore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

type reader struct {
	d    *msgpack.Decoder
	data []byte
	br   bytes.Reader // d reads it directly (a bytes.Reader is a ByteScanner: no read-ahead)
	err  error
}

func newReader(data []byte) *reader {
	r := readers.Get().(*reader)
	r.data, r.err = data, nil
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

// raw returns the next value's bytes, a slice of the data (not a copy), and moves past it.
func (r *reader) raw() []byte {
	if r.err != nil {
		return nil
	}
	start := len(r.data) - r.br.Len()
	end, err := skipValue(r.data, start)
	if err != nil {
		r.fail(err)
		return nil
	}
	_, err = r.br.Seek(int64(end), 0)
	r.fail(err)
	return r.data[start:end:end]
}

func (r *reader) fail(err error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

// mapLen returns the length of a map, -1 for nil.
func (r *reader) mapLen() int {
	n, err := r.d.DecodeMapLen()
	r.fail(err)
	return n
}

func (r *reader) arrayLen() int {
	n, err := r.d.DecodeArrayLen()
	r.fail(err)
	return n
}

func (r *reader) str() string {
	s, err := r.d.DecodeString()
	r.fail(err)
	return s
}

func (r *reader) int() int64 {
	n, err := r.d.DecodeInt64()
	r.fail(err)
	return n
}

func (r *reader) boolean() bool {
	b, err := r.d.DecodeBool()
	r.fail(err)
	return b
}

func (r *reader) tm() time.Time {
	t, err := r.d.DecodeTime()
	r.fail(err)
	return t
}

func (r *reader) skip() { r.raw() }

// isNil consumes a nil if one is next.
func (r *reader) isNil() bool {
	c, err := r.d.PeekCode()
	if err != nil {
		r.fail(err)
		return false
	}
	if c == msgpcode.Nil {
		r.fail(r.d.DecodeNil())
		return true
	}
	return false
}

// each calls fn for every key of a map (nil: none).
func (r *reader) each(fn func(key string)) {
	n := r.mapLen()
	for i := 0; i < n && r.err == nil; i++ {
		fn(r.key())
	}
}

// key reads a map key. Keys are few (field names, attribute names) and read in every record:
// a short one is looked up among those seen before instead of allocated again.
func (r *reader) key() string {
	pos := len(r.data) - r.br.Len()
	if r.err != nil || pos >= len(r.data) || r.data[pos]&0xe0 != 0xa0 { // not a fixstr
		return r.str()
	}
	end := pos + 1 + int(r.data[pos]&0x1f)
	if end > len(r.data) {
		return r.str()
	}
	seen := knownKeys.Load()
	k, ok := (*seen)[string(r.data[pos+1:end])]
	if !ok {
		k = string(r.data[pos+1 : end])
		rememberKey(seen, k)
	}
	_, err := r.br.Seek(int64(end), 0)
	r.fail(err)
	return k
}

// knownKeys is the keys read so far, an immutable map replaced whole when one is added (reads
// need no lock); it stops growing at maxKnownKeys.
var knownKeys atomic.Pointer[map[string]string]

const maxKnownKeys = 4096

func init() { knownKeys.Store(&map[string]string{}) }

func rememberKey(seen *map[string]string, k string) {
	if len(*seen) >= maxKnownKeys {
		return
	}
	next := make(map[string]string, len(*seen)+1)
	for a, b := range *seen {
		next[a] = b
	}
	next[k] = k
	knownKeys.CompareAndSwap(seen, &next) // a lost race only means the key is added later
}

func (r *reader) values() []any {
	n := r.arrayLen()
	if n < 0 {
		return nil
	}
	out := make([]any, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		v, err := r.d.DecodeInterfaceLoose()
		r.fail(err)
		out = append(out, v)
	}
	return out
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
		r.each(func(k string) {
			switch k {
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
	r.each(func(k string) {
		switch k {
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
	r.each(func(k string) {
		switch k {
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
				var e domain.OperationError
				r.each(func(k string) {
					switch k {
					case "category":
						e.Category = domain.Category(r.str())
					case "message":
						e.Message = r.str()
					default:
						r.skip()
					}
				})
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
	r.each(func(k string) {
		switch k {
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
		case "version":
			d.Version = r.int()
		default:
			r.skip()
		}
	})
	return d
}

// readState decodes a shadow state without reflection.
func readState(raw []byte) (domain.ShadowData, error) {
	r := newReader(raw)
	defer r.release()
	d := r.shadow()
	return d, r.err
}

// readCommit decodes the commit envelope without reflection; events and state stay raw.
func readCommit(data []byte) (wireCommit, error) {
	var wc wireCommit
	r := newReader(data)
	defer r.release()
	r.each(func(k string) {
		switch k {
		case "v":
			wc.V = int(r.int())
		case "r":
			wc.RequestID = r.str()
		case "e":
			n := r.arrayLen()
			for i := 0; i < n && r.err == nil; i++ {
				var we wireEvent
				r.each(func(k string) {
					switch k {
					case "t":
						we.Type = r.str()
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
	r.each(func(k string) {
		switch k {
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

// readEvent decodes the events every decision records without reflection; ok is false for the
// other types (the caller decodes those reflectively).
func readEvent(typ string, raw []byte) (e domain.Event, ok bool, err error) {
	r := newReader(raw)
	defer r.release()
	switch typ {
	case "AddRequested":
		var x domain.AddRequested
		r.each(func(k string) {
			switch k {
			case "shadowId":
				x.ShadowID = r.str()
			case "resource":
				x.Resource = r.str()
			case "objectClass":
				x.ObjectClass = r.str()
			case "secondaryIdentifier":
				x.SecondaryIdentifier = r.str()
			case "operationId":
				x.OperationID = r.str()
			case "requestId":
				x.RequestID = r.str()
			case "traceparent":
				x.TraceParent = r.str()
			case "attributes":
				x.Attributes = r.attrs()
			case "order":
				x.Order = r.strs()
			case "assigned":
				x.Assigned = r.boolean()
			case "time":
				x.Time = r.tm()
			default:
				r.skip()
			}
		})
		e = x
	case "ModifyRequested":
		var x domain.ModifyRequested
		r.each(func(k string) {
			switch k {
			case "operationId":
				x.OperationID = r.str()
			case "requestId":
				x.RequestID = r.str()
			case "traceparent":
				x.TraceParent = r.str()
			case "changes":
				x.Changes = r.changes()
			case "order":
				x.Order = r.strs()
			case "time":
				x.Time = r.tm()
			default:
				r.skip()
			}
		})
		e = x
	case "DeleteRequested":
		var x domain.DeleteRequested
		r.each(func(k string) {
			switch k {
			case "operationId":
				x.OperationID = r.str()
			case "requestId":
				x.RequestID = r.str()
			case "traceparent":
				x.TraceParent = r.str()
			case "time":
				x.Time = r.tm()
			default:
				r.skip()
			}
		})
		e = x
	case "DispatchRequested":
		var x domain.DispatchRequested
		r.each(func(k string) {
			switch k {
			case "operationId":
				x.OperationID = r.str()
			case "attempt":
				x.Attempt = int(r.int())
			case "sequence":
				x.Sequence = r.int()
			case "previousSequence":
				x.PreviousSequence = r.int()
			case "request":
				x.Request = r.targetRequest()
			case "traceparent":
				x.TraceParent = r.str()
			case "time":
				x.Time = r.tm()
			default:
				r.skip()
			}
		})
		e = x
	case "OperationSent":
		var x domain.OperationSent
		r.each(func(k string) {
			switch k {
			case "operationId":
				x.OperationID = r.str()
			case "attempt":
				x.Attempt = int(r.int())
			case "reference":
				x.Reference = r.str()
			case "time":
				x.Time = r.tm()
			default:
				r.skip()
			}
		})
		e = x
	case "OperationCompleted":
		var x domain.OperationCompleted
		r.each(func(k string) {
			switch k {
			case "operationId":
				x.OperationID = r.str()
			case "result":
				x.Result = domain.ResultStatus(r.str())
			case "message":
				x.Message = r.str()
			case "primaryIdentifiers":
				x.PrimaryIdentifiers = r.attrs()
			case "source":
				x.Source = r.str()
			case "graceUntil":
				x.GraceUntil = r.tm()
			case "time":
				x.Time = r.tm()
			default:
				r.skip()
			}
		})
		e = x
	default:
		return nil, false, nil
	}
	return e, true, r.err
}

// readDecisionTime reads the "time" of a commit's first event without decoding the events:
// what an as-of query compares, for every commit of a shadow. ok is false when the first event
// has no time field (the caller decodes it then).
func readDecisionTime(data []byte) (t time.Time, ok bool, err error) {
	r := newReader(data)
	defer r.release()
	// Stop at the first event's time: the rest (other events, the whole state) is not read.
	r.each(func(k string) {
		if k != "e" {
			r.skip()
			return
		}
		if r.arrayLen() < 1 {
			return
		}
		r.each(func(k string) {
			if k != "d" {
				r.skip()
				return
			}
			r.each(func(k string) {
				if k != "time" {
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
	ChangeType domain.ChangeType
	RequestID  string
}

// StateSummary is the part of a commit's state that history and audit read.
type StateSummary struct {
	ObjectClass string
	Ops         map[string]OpSummary // by operation id
}

// readStateSummary reads the object class and the operations' change types and request ids,
// skipping attributes, identifiers and the rest.
func readStateSummary(raw []byte) (StateSummary, error) {
	var s StateSummary
	r := newReader(raw)
	defer r.release()
	r.each(func(k string) {
		switch k {
		case "objectClass":
			s.ObjectClass = r.str()
		case "pendingOperations":
			n := r.arrayLen()
			for i := 0; i < n && r.err == nil; i++ {
				var id string
				var op OpSummary
				r.each(func(k string) {
					switch k {
					case "id":
						id = r.str()
					case "requestId":
						op.RequestID = r.str()
					case "delta":
						r.each(func(k string) {
							if k == "changeType" {
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
					s.Ops = make(map[string]OpSummary, n)
				}
				s.Ops[id] = op
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
