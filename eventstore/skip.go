package eventstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// errShort is a msgpack value cut short.
var errShort = errors.New("msgpack: value cut short")

// skipValue returns the offset just past the msgpack value that starts at data[i]. It walks the
// bytes without decoding or copying anything: msgpack's own Skip reads every string into a
// scratch buffer, and finding where a commit's events and state end was a third of an audit's
// decoding.
func skipValue(data []byte, i int) (int, error) {
	for items := 1; items > 0; items-- {
		if i >= len(data) {
			return 0, errShort
		}
		c := data[i]
		size, n := 1, 0 // bytes of this item's own, and the items it contains
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c <= 0x8f:
			n = 2 * int(c&0x0f)
		case c <= 0x9f:
			n = int(c & 0x0f)
		case c <= 0xbf:
			size = 1 + int(c&0x1f)
		default:
			switch c {
			case 0xcc, 0xd0:
				size = 2
			case 0xcd, 0xd1, 0xd4:
				size = 3
			case 0xd5:
				size = 4
			case 0xca, 0xce, 0xd2:
				size = 5
			case 0xd6:
				size = 6
			case 0xcb, 0xcf, 0xd3:
				size = 9
			case 0xd7:
				size = 10
			case 0xd8:
				size = 18
			case 0xc4, 0xd9: // bin8, str8
				l, err := length(data, i, 1)
				if err != nil {
					return 0, err
				}
				size = 2 + l
			case 0xc5, 0xda:
				l, err := length(data, i, 2)
				if err != nil {
					return 0, err
				}
				size = 3 + l
			case 0xc6, 0xdb:
				l, err := length(data, i, 4)
				if err != nil {
					return 0, err
				}
				size = 5 + l
			case 0xc7: // ext8: length, type, data
				l, err := length(data, i, 1)
				if err != nil {
					return 0, err
				}
				size = 3 + l
			case 0xc8:
				l, err := length(data, i, 2)
				if err != nil {
					return 0, err
				}
				size = 4 + l
			case 0xc9:
				l, err := length(data, i, 4)
				if err != nil {
					return 0, err
				}
				size = 6 + l
			case 0xdc, 0xde:
				l, err := length(data, i, 2)
				if err != nil {
					return 0, err
				}
				size, n = 3, l
				if c == 0xde {
					n = 2 * l
				}
			case 0xdd, 0xdf:
				l, err := length(data, i, 4)
				if err != nil {
					return 0, err
				}
				size, n = 5, l
				if c == 0xdf {
					n = 2 * l
				}
			default:
				return 0, fmt.Errorf("msgpack: invalid code %#x at %d", c, i)
			}
		}
		i += size
		if i > len(data) {
			return 0, errShort
		}
		if n > len(data)-i { // every item is at least a byte: a count past the end is corrupt
			return 0, errShort
		}
		items += n
	}
	return i, nil
}

// length reads the big-endian length of width bytes that follows the code at data[i].
func length(data []byte, i, width int) (int, error) {
	if i+1+width > len(data) {
		return 0, errShort
	}
	b := data[i+1 : i+1+width]
	switch width {
	case 1:
		return int(b[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b)), nil
	default:
		return int(binary.BigEndian.Uint32(b)), nil
	}
}

// The byte-level readers below read the encodings msgpack writes for our values straight from
// the bytes, without copying; the reader (fastdecode.go) and the JSON writer of stored events
// (eventjson.go) share them, and hand anything else to the decoder.

// mapHeader reads a map's length (-1: nil).
func mapHeader(v []byte, pos int) (n, next int, ok bool) {
	if pos >= len(v) {
		return 0, 0, false
	}
	switch c := v[pos]; {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), pos + 1, true
	case c == 0xc0:
		return -1, pos + 1, true
	case c == 0xde && pos+3 <= len(v):
		return int(binary.BigEndian.Uint16(v[pos+1:])), pos + 3, true
	case c == 0xdf && pos+5 <= len(v):
		return int(binary.BigEndian.Uint32(v[pos+1:])), pos + 5, true
	}
	return 0, 0, false
}

// arrayHeader reads an array's length (-1: nil).
func arrayHeader(v []byte, pos int) (n, next int, ok bool) {
	if pos >= len(v) {
		return 0, 0, false
	}
	switch c := v[pos]; {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), pos + 1, true
	case c == 0xc0:
		return -1, pos + 1, true
	case c == 0xdc && pos+3 <= len(v):
		return int(binary.BigEndian.Uint16(v[pos+1:])), pos + 3, true
	case c == 0xdd && pos+5 <= len(v):
		return int(binary.BigEndian.Uint32(v[pos+1:])), pos + 5, true
	}
	return 0, 0, false
}

// strAt reads a string's bytes, a slice of v (nil reads as empty, as the decoders read it).
func strAt(v []byte, pos int) (s []byte, next int, ok bool) {
	if pos >= len(v) {
		return nil, 0, false
	}
	c := v[pos]
	start, n := pos+1, 0
	switch {
	case c == 0xc0:
		return nil, pos + 1, true
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xd9 && pos+2 <= len(v):
		start, n = pos+2, int(v[pos+1])
	case c == 0xda && pos+3 <= len(v):
		start, n = pos+3, int(binary.BigEndian.Uint16(v[pos+1:]))
	case c == 0xdb && pos+5 <= len(v):
		start, n = pos+5, int(binary.BigEndian.Uint32(v[pos+1:]))
	default:
		return nil, 0, false
	}
	if start+n > len(v) {
		return nil, 0, false
	}
	return v[start : start+n], start + n, true
}

// intAt reads an integer as the decoders read one into an int or int64 (nil: 0).
func intAt(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	if v[0] == 0xc0 {
		return 0, true
	}
	n, _, ok := fixedInt(v[0], v[1:])
	return n, ok
}

// timeAt reads msgpack's time extension (-1) of 4, 8 or 12 bytes, in UTC (msgpack's decoder
// gives the local zone, and a shadow decoded in Kolkata must encode to the same JSON as one
// decoded in UTC: verify compares them); ok is false for anything else.
func timeAt(v []byte) (time.Time, bool) {
	var t time.Time
	switch {
	case len(v) == 6 && v[0] == 0xd6 && v[1] == 0xff:
		t = time.Unix(int64(binary.BigEndian.Uint32(v[2:])), 0)
	case len(v) == 10 && v[0] == 0xd7 && v[1] == 0xff:
		x := binary.BigEndian.Uint64(v[2:])
		t = time.Unix(int64(x&0x00000003ffffffff), int64(x>>34))
	case len(v) == 15 && v[0] == 0xc7 && v[1] == 12 && v[2] == 0xff:
		t = time.Unix(int64(binary.BigEndian.Uint64(v[7:])), int64(binary.BigEndian.Uint32(v[3:])))
	default:
		return t, false
	}
	return t.UTC(), true
}
