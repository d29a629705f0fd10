package eventstore

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"

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

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newEncoder(buf *bytes.Buffer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(buf)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	return enc
}

func marshal(v any) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := newEncoder(buf).Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

func unmarshal(data []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetCustomStructTag("json")
	// Integers come back as int64 and floats as float64 whatever their wire width, so attribute
	// values keep the types the domain allows.
	dec.UseLooseInterfaceDecoding(true)
	return dec.Decode(v)
}

func encodeCommit(requestID string, events []domain.Event, state domain.Shadow) ([]byte, error) {
	wc := wireCommit{V: wireVersion, RequestID: requestID, Events: make([]wireEvent, len(events))}
	for i, e := range events {
		b, err := marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
		}
		wc.Events[i] = wireEvent{Type: e.EventType(), Data: b}
	}
	s, err := marshal(state.Data())
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	wc.State = s
	return marshal(wc)
}

func decodeCommit(data []byte) (wireCommit, error) {
	var wc wireCommit
	if err := unmarshal(data, &wc); err != nil {
		return wc, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if wc.V < 1 || wc.V > wireVersion {
		return wc, fmt.Errorf("%w: commit format version %d (this build reads up to %d)", ErrCorrupt, wc.V, wireVersion)
	}
	return wc, nil
}

func decodeEvents(wc wireCommit) ([]domain.Event, error) {
	out := make([]domain.Event, len(wc.Events))
	for i, we := range wc.Events {
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
	var d domain.ShadowData
	if err := unmarshal(raw, &d); err != nil {
		return domain.Shadow{}, fmt.Errorf("%w: state: %w", ErrCorrupt, err)
	}
	return domain.RestoreShadow(d), nil
}
