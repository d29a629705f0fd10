package bridge

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"

	"shadowbridge/domain"
)

// Transformation names, as midPoint spells them.
const (
	SimplifiedJSON          = "simplifiedJson"
	SimplifiedQualifiedJSON = "simplifiedQualifiedJson"
	FullJSON                = "fullJson"
)

// NSResourceInstance is midPoint's "ri" namespace, which qualifies object class and attribute
// names in simplifiedQualifiedJson (midPoint's QNameUtil.qNameToUri: namespace#localName).
const NSResourceInstance = "http://midpoint.evolveum.com/xml/ns/public/resource/instance-3"

// Transform renders a request the way midPoint's predefined transformations do:
//
//   - simplifiedJson: midPoint's JsonRequest with local names, serialized as Jackson does with
//     NON_NULL inclusion (null fields left out, empty maps kept), fields in declaration order
//     (operation, objectClass, attributes, primaryIdentifiers, secondaryIdentifiers, changes), and
//     every map in java.util.HashMap iteration order (midPoint fills HashMaps in the order the
//     attributes come; ours come in the order of the request). midPoint pretty-prints; this output
//     is compact, which is the form midPoint's documentation shows.
//   - simplifiedQualifiedJson: the same with qualified names (namespace#localName, namespace "ri").
//   - fullJson: midPoint's Prism serialization of AsyncProvisioningOperationRequestedType. It
//     cannot be reproduced byte for byte without Prism; it is refused as a configuration error.
//
// Add carries attributes; modify carries primaryIdentifiers, secondaryIdentifiers and changes
// {attr: {add, delete, replace}}; delete carries only the identifiers.
func Transform(name string, r domain.TargetRequest) ([]byte, error) {
	var q func(string) string
	switch name {
	case "", SimplifiedJSON:
		q = func(s string) string { return s }
	case SimplifiedQualifiedJSON:
		q = func(s string) string { return NSResourceInstance + "#" + s }
	case FullJSON:
		return nil, fmt.Errorf("%w: transformation %q (midPoint's Prism serialization) is not supported; use %s or %s",
			domain.CategoryConfiguration, name, SimplifiedJSON, SimplifiedQualifiedJSON)
	default:
		return nil, fmt.Errorf("%w: unknown transformation %q (want %s, %s or %s)", domain.CategoryConfiguration, name,
			SimplifiedJSON, SimplifiedQualifiedJSON, FullJSON)
	}
	var b bytes.Buffer
	b.WriteString(`{"operation":`)
	jsonString(&b, string(r.Operation))
	b.WriteString(`,"objectClass":`)
	jsonString(&b, q(r.ObjectClass))
	switch r.Operation {
	case domain.ChangeAdd:
		b.WriteString(`,"attributes":`)
		writeAttrs(&b, r.Attributes, domain.OrderNames(r.Order, r.Attributes.Names()), q)
	case domain.ChangeModify, domain.ChangeDelete:
		b.WriteString(`,"primaryIdentifiers":`)
		writeAttrs(&b, r.PrimaryIdentifiers, r.PrimaryIdentifiers.Names(), q)
		b.WriteString(`,"secondaryIdentifiers":`)
		writeAttrs(&b, r.SecondaryIdentifiers, r.SecondaryIdentifiers.Names(), q)
		if r.Operation == domain.ChangeModify {
			b.WriteString(`,"changes":`)
			writeChanges(&b, r.Changes, domain.OrderNames(r.Order, r.Changes.Names()), q)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeAttrs(b *bytes.Buffer, a domain.Attributes, insertion []string, q func(string) string) {
	b.WriteByte('{')
	for i, k := range javaHashMapOrder(insertion, q) {
		if i > 0 {
			b.WriteByte(',')
		}
		jsonString(b, q(k))
		b.WriteByte(':')
		writeValues(b, a[k])
	}
	b.WriteByte('}')
}

func writeChanges(b *bytes.Buffer, c domain.Changes, insertion []string, q func(string) string) {
	b.WriteByte('{')
	for i, k := range javaHashMapOrder(insertion, q) {
		if i > 0 {
			b.WriteByte(',')
		}
		jsonString(b, q(k))
		b.WriteString(":{")
		ch, sep := c[k], ""
		if len(ch.Add) > 0 {
			b.WriteString(`"add":`)
			writeValues(b, ch.Add)
			sep = ","
		}
		if len(ch.Delete) > 0 {
			b.WriteString(sep + `"delete":`)
			writeValues(b, ch.Delete)
			sep = ","
		}
		if ch.Replace != nil { // present and empty: remove every value
			b.WriteString(sep + `"replace":`)
			writeValues(b, ch.Replace)
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
}

func writeValues(b *bytes.Buffer, vs []any) {
	b.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		switch x := v.(type) {
		case string:
			jsonString(b, x)
		case int64:
			b.WriteString(strconv.FormatInt(x, 10))
		case float64:
			b.WriteString(javaDouble(x))
		case bool:
			b.WriteString(strconv.FormatBool(x))
		default:
			jsonString(b, fmt.Sprint(x))
		}
	}
	b.WriteByte(']')
}

// jsonString writes s as Jackson does: escapes for the quote, the backslash and control
// characters (short forms where JSON has them, \u00XX otherwise); everything else, including
// '<', '&', '/' and non-ASCII, as is.
func jsonString(b *bytes.Buffer, s string) {
	const hexDigits = "0123456789ABCDEF"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// javaDouble formats f as Java's Double.toString: plain decimal with at least one fraction digit
// for 1e-3 <= |f| < 1e7, else computerized scientific notation (1.0E7, 1.5E-4), shortest digits.
func javaDouble(f float64) string {
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	abs := math.Abs(f)
	if abs >= 1e-3 && abs < 1e7 {
		point := exp + 1 // digits before the decimal point
		switch {
		case point <= 0:
			return sign + "0." + strings.Repeat("0", -point) + digits
		case point >= len(digits):
			return sign + digits + strings.Repeat("0", point-len(digits)) + ".0"
		default:
			return sign + digits[:point] + "." + digits[point:]
		}
	}
	frac := digits[1:]
	if frac == "" {
		frac = "0"
	}
	return sign + digits[:1] + "." + frac + "E" + strconv.Itoa(exp)
}

// javaStringHash is java.lang.String.hashCode (over UTF-16 code units).
func javaStringHash(s string) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(s)) {
		h = 31*h + int32(u)
	}
	return h
}

// javaHashMapOrder returns keys (given in insertion order) in the iteration order of a
// java.util.HashMap created with default capacity and filled in that order: by bucket
// (hash ^ hash>>>16) & (capacity-1), then insertion order within a bucket. The capacity starts at
// 16 and doubles whenever the size exceeds 3/4 of it. (Buckets of 8 or more colliding keys, which
// Java turns into trees, are not modelled.) q maps a name to the key midPoint would use.
func javaHashMapOrder(keys []string, q func(string) string) []string {
	capacity := 16
	for len(keys) > capacity*3/4 {
		capacity *= 2
	}
	bucket := func(k string) int {
		h := uint32(javaStringHash(q(k)))
		return int((h ^ h>>16) & uint32(capacity-1))
	}
	out := slices.Clone(keys)
	slices.SortStableFunc(out, func(a, b string) int { return bucket(a) - bucket(b) })
	return out
}
