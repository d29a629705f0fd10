package eventstore

// The events' fast writers and readers and their JSON field tables are generated from the
// domain's event structs (eventstore/internal/eventgen).
//go:generate go run ./internal/eventgen

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"shadowbridge/domain"
)

// wireVersion is the commit format version. Decoders accept every version up to it.
const wireVersion = 1

// wireCommit is one JetStream message: the events of one decision and the shadow they produced.
// Keeping the resulting state in the commit makes a load one direct get, with no replay, while the
// events stay the source of truth (Fold(events) == state is checked by the contract tests).
type wireCommit struct {
	V         int                `msgpack:"v"`
	RequestID string             `msgpack:"r,omitempty"`
	Events    []wireEvent        `msgpack:"e"`
	State     msgpack.RawMessage `msgpack:"s"`
}

type wireEvent struct {
	Type string             `msgpack:"t"`
	Data msgpack.RawMessage `msgpack:"d"`
}

var (
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	encPool = sync.Pool{New: func() any { return msgpack.NewEncoder(nil) }}
)

func getEncoder(buf *bytes.Buffer) *msgpack.Encoder {
	enc := encPool.Get().(*msgpack.Encoder)
	enc.Reset(buf) // Reset clears the options too: set them every time
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	return enc
}

func marshal(v any) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	enc := getEncoder(buf)
	defer encPool.Put(enc)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// Times decode in UTC on the reflective path too (msgpack's own decoder gives the local zone):
// the same record must decode to the same values, and encode to the same JSON, in every zone.
func init() {
	msgpack.Register(time.Time{}, nil, func(d *msgpack.Decoder, v reflect.Value) error {
		t, err := d.DecodeTime()
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(t.UTC()))
		return nil
	})
}

func unmarshal(data []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetCustomStructTag("json")
	// Integers come back as int64 and floats as float64 whatever their wire width, so attribute
	// values keep the types the domain allows.
	dec.UseLooseInterfaceDecoding(true)
	return dec.Decode(v)
}

// encodeCommit writes the wireCommit layout in one pass (no intermediate encodings): this is the
// hot path of every append.
func encodeCommit(requestID string, events []domain.Event, state domain.Shadow) ([]byte, error) {
	return encodeCommitWith(requestID, events, func(w *writer) error { return state.View(w.shadowAny) })
}

// encodeCommitWith encodes a commit whose state is written by writeState.
func encodeCommitWith(requestID string, events []domain.Event, writeState func(*writer) error) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	enc := getEncoder(buf)
	defer encPool.Put(enc)
	n := 3
	if requestID != "" {
		n = 4
	}
	err := errors.Join(enc.EncodeMapLen(n), enc.EncodeString("v"), enc.EncodeInt(wireVersion))
	if requestID != "" {
		err = errors.Join(err, enc.EncodeString("r"), enc.EncodeString(requestID))
	}
	err = errors.Join(err, enc.EncodeString("e"), enc.EncodeArrayLen(len(events)))
	w := &writer{e: enc}
	for _, e := range events {
		err = errors.Join(err, enc.EncodeMapLen(2), enc.EncodeString("t"), enc.EncodeString(e.EventType()), enc.EncodeString("d"))
		if !w.event(e) {
			w.fail(enc.Encode(e))
		}
		if w.err != nil {
			return nil, fmt.Errorf("encode %s: %w", e.EventType(), w.err)
		}
	}
	err = errors.Join(err, enc.EncodeString("s"))
	if err != nil {
		return nil, err
	}
	if err := writeState(w); err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return bytes.Clone(buf.Bytes()), nil
}

func decodeCommit(data []byte) (wireCommit, error) {
	wc, err := readCommit(data)
	if err != nil {
		return wc, err
	}
	if wc.V < 1 || wc.V > wireVersion {
		return wc, fmt.Errorf("%w: commit format version %d (this build reads up to %d)", ErrCorrupt, wc.V, wireVersion)
	}
	return wc, nil
}

func decodeEvents(wc wireCommit) ([]domain.Event, error) {
	out := make([]domain.Event, len(wc.Events))
	for i, we := range wc.Events {
		if e, ok, err := readEvent(we.Type, we.Data); ok {
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, we.Type, err)
			}
			out[i] = e
			continue
		}
		ptr, ok := domain.NewEvent(we.Type)
		if !ok {
			return nil, fmt.Errorf("%w: unknown event type %q", ErrCorrupt, we.Type)
		}
		if err := unmarshal(we.Data, ptr); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, we.Type, err)
		}
		out[i] = reflect.ValueOf(ptr).Elem().Interface().(domain.Event)
	}
	return out, nil
}

func decodeState(raw []byte) (domain.Shadow, error) {
	d, err := readState(raw)
	if err != nil {
		return domain.Shadow{}, fmt.Errorf("%w: state: %w", ErrCorrupt, err)
	}
	return domain.AdoptShadow(d), nil // d was decoded for this shadow alone
}

// EncodeCommit encodes a commit body exactly as Append stores it (for tools and benchmarks that
// publish commits in bulk).
func EncodeCommit(requestID string, events []domain.Event, state domain.Shadow) ([]byte, error) {
	return encodeCommit(requestID, events, state)
}
