package eventstore

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The reader's primitives return what msgpack's decoder returns, error or not, and stop where it
// stops, for every encoding of every value shape: each integer width, strings around the fixstr,
// str8 and str16 limits, floats, nil, booleans, times in each extension size and the legacy
// forms, maps and arrays around the fixed and 16-bit limits, and every truncation of each.
func TestReaderPrimitivesMatchTheDecoder(t *testing.T) {
	var encodings [][]byte
	enc := func(fn func(e *msgpack.Encoder) error) {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		if err := fn(e); err != nil {
			t.Fatal(err)
		}
		encodings = append(encodings, buf.Bytes())
	}
	for _, n := range []int64{0, 1, 31, 127, 128, 255, 256, 65535, 65536, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt64, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt64} {
		enc(func(e *msgpack.Encoder) error { return e.EncodeInt(n) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeInt64(n) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeInt8(int8(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeInt16(int16(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeInt32(int32(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeUint8(uint8(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeUint16(uint16(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeUint32(uint32(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeUint64(uint64(n)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeUint(uint64(n)) })
	}
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		enc(func(e *msgpack.Encoder) error { return e.EncodeString(s) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeBytes([]byte(s)) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeMapLen(n) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeArrayLen(n) })
	}
	for _, v := range []any{nil, true, false, 1.5, float32(2.5), math.Inf(1), map[string]any{"a": 1}, []any{"x", 2}, []byte{1}} {
		enc(func(e *msgpack.Encoder) error { return e.Encode(v) })
	}
	for _, tm := range []time.Time{{}, time.Unix(0, 0), time.Unix(1<<32-1, 0), time.Unix(1<<32, 0), time.Unix(1763884800, 123456789),
		time.Unix(1<<34-1, 999999999), time.Unix(1<<34, 1), time.Unix(-1, 5), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)} {
		enc(func(e *msgpack.Encoder) error { return e.EncodeTime(tm) })
		enc(func(e *msgpack.Encoder) error { return e.EncodeString(tm.Format(time.RFC3339Nano)) })
		enc(func(e *msgpack.Encoder) error { // the legacy form
			_ = e.EncodeArrayLen(2)
			_ = e.EncodeInt(tm.Unix())
			return e.EncodeInt(int64(tm.Nanosecond()))
		})
	}
	type primitive struct {
		name string
		fast func(r *reader) any
		slow func(d *msgpack.Decoder) (any, error)
	}
	primitives := []primitive{
		{"mapLen", func(r *reader) any { return r.mapLen() }, func(d *msgpack.Decoder) (any, error) { return d.DecodeMapLen() }},
		{"arrayLen", func(r *reader) any { return r.arrayLen() }, func(d *msgpack.Decoder) (any, error) { return d.DecodeArrayLen() }},
		{"str", func(r *reader) any { return r.str() }, func(d *msgpack.Decoder) (any, error) { return d.DecodeString() }},
		{"keyBytes", func(r *reader) any { return string(r.keyBytes()) }, func(d *msgpack.Decoder) (any, error) { return d.DecodeString() }},
		{"int", func(r *reader) any { return r.int() }, func(d *msgpack.Decoder) (any, error) { return d.DecodeInt64() }},
		{"boolean", func(r *reader) any { return r.boolean() }, func(d *msgpack.Decoder) (any, error) { return d.DecodeBool() }},
		{"tm", func(r *reader) any { return r.tm() }, func(d *msgpack.Decoder) (any, error) { t, err := d.DecodeTime(); return t.UTC(), err }},
		{"value", func(r *reader) any { return r.value() }, func(d *msgpack.Decoder) (any, error) { return d.DecodeInterfaceLoose() }},
	}
	checked := 0
	for _, full := range encodings {
		for cut := len(full); cut >= 0; cut-- {
			data := full[:cut]
			for _, p := range primitives {
				r := newReader(data)
				got := p.fast(r)
				gotErr, gotPos := r.err, r.pos
				r.release()
				br := bytes.NewReader(data)
				d := msgpack.NewDecoder(br)
				d.UseLooseInterfaceDecoding(true)
				want, wantErr := p.slow(d)
				wantPos := len(data) - br.Len()
				switch {
				case (gotErr == nil) != (wantErr == nil):
					t.Errorf("%s of % x: error %v, the decoder's %v", p.name, data, gotErr, wantErr)
				case gotErr == nil && !reflect.DeepEqual(got, want):
					t.Errorf("%s of % x: %#v, the decoder's %#v", p.name, data, got, want)
				case gotErr == nil && gotPos != wantPos:
					t.Errorf("%s of % x: stopped at %d, the decoder at %d", p.name, data, gotPos, wantPos)
				}
				checked++
			}
			if cut < len(full)-16 {
				break // long values: the last bytes and a few cuts are enough
			}
		}
	}
	t.Logf("%d decodings compared", checked)
}
