package eventstore

import (
	"encoding/binary"
	"errors"
	"fmt"
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
