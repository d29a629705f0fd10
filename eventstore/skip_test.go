package eventstore

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"shadowbridge/domain"
)

// skipValue finds the end of every kind of msgpack value, each length form included, and
// refuses every value cut short.
func TestSkipValue(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	values := map[string]any{
		"nil": nil, "true": true, "false": false,
		"fixint": 7, "negfixint": -3, "uint8": uint8(200), "uint16": uint16(60000), "uint32": uint32(1 << 30), "uint64": uint64(1 << 60),
		"int8": int8(-100), "int16": int16(-30000), "int32": int32(-1 << 30), "int64": int64(-1 << 60),
		"float32": float32(1.5), "float64": 2.25,
		"fixstr": "jack", "str8": long(200), "str16": long(60000), "str32": long(70000),
		"bin8": []byte(long(10)), "bin16": []byte(long(300)), "bin32": []byte(long(70000)),
		"time": time.Unix(1763884800, 123456789), "time32": time.Unix(1763884800, 0),
		"fixarray": []any{1, "a", nil}, "array16": make([]int, 20), "array32": make([]int8, 70000),
		"fixmap": map[string]any{"a": 1, "b": []any{"c", map[string]any{"d": 2.5}}},
		"map16": func() map[string]int {
			m := map[string]int{}
			for i := range 40 {
				m[long(i+1)] = i
			}
			return m
		}(),
		"commit": func() any { // a real commit, state and all
			data, err := EncodeCommit("req", fullEvents(), domain.RestoreShadow(fullState()))
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := msgpack.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}(),
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			enc := msgpack.NewEncoder(&buf)
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
			if err := enc.Encode("after"); err != nil {
				t.Fatal(err)
			}
			data := buf.Bytes()
			end, err := skipValue(data, 0)
			if err != nil {
				t.Fatal(err)
			}
			var after string
			if err := msgpack.Unmarshal(data[end:], &after); err != nil || after != "after" {
				t.Fatalf("skipped to %d of %d: the next value reads %q, %v", end, len(data), after, err)
			}
			for cut := range end {
				if _, err := skipValue(data[:cut], 0); err == nil {
					t.Fatalf("value cut at %d of %d: no error", cut, end)
				}
				if end > 2000 && cut > 64 {
					break // the long values: their headers are what matters
				}
			}
		})
	}
	if _, err := skipValue([]byte{0xc1}, 0); err == nil {
		t.Fatal("0xc1 (never used) skipped")
	}
}
