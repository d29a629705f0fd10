package domain

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what one command may carry. A shadow is stored as one message of the event log, so
// what it holds must fit NATS' payload limit with room to grow, and names and identifiers become
// index keys and headers. Each limit is refused with ErrLimit, naming the limit.
const (
	// MaxAttributes is the number of attributes one add or modify may name.
	MaxAttributes = 1000
	// MaxValues is the number of values of one attribute in one add, or of one change.
	MaxValues = 10000
	// MaxValueBytes is the length of one string value in bytes (UTF-8).
	MaxValueBytes = 64 << 10
	// MaxNameBytes is the length of an attribute name.
	MaxNameBytes = 256
	// MaxRequestIDBytes is the length of a request id.
	MaxRequestIDBytes = 256
)

// ErrLimit is a command over one of the limits above.
var ErrLimit = newError(CategorySchema, "limit exceeded")

// checkName refuses an empty, overlong or unprintable attribute name.
func checkName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: empty attribute name", ErrInvalidValue)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: attribute name of %d bytes (the limit is %d)", ErrLimit, len(name), MaxNameBytes)
	case hasControl(name):
		return fmt.Errorf("%w: attribute name %q contains control characters", ErrInvalidValue, name)
	}
	return nil
}

// checkValues refuses too many values or an overlong string value.
func checkValues(attr string, vs []any) error {
	if len(vs) > MaxValues {
		return fmt.Errorf("%w: attribute %q has %d values (the limit is %d)", ErrLimit, attr, len(vs), MaxValues)
	}
	for _, v := range vs {
		if s, ok := v.(string); ok && len(s) > MaxValueBytes {
			return fmt.Errorf("%w: attribute %q: a value of %d bytes (the limit is %d)", ErrLimit, attr, len(s), MaxValueBytes)
		}
	}
	return nil
}

// CheckIdentifierValue refuses a value that cannot name an account: a blank string or one with
// control characters (a login of "" or "bob\n" would be a second, invisible account).
func CheckIdentifierValue(attr string, v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	switch {
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("%w: identifier %q is blank", ErrInvalidValue, attr)
	case hasControl(s):
		return fmt.Errorf("%w: identifier %q contains control characters", ErrInvalidValue, attr)
	}
	return nil
}

// CheckRequestID refuses a request id that is too long, not UTF-8, or has control characters.
// The empty request id (none) is fine.
func CheckRequestID(id string) error {
	switch {
	case len(id) > MaxRequestIDBytes:
		return fmt.Errorf("%w: requestId of %d bytes (the limit is %d)", ErrLimit, len(id), MaxRequestIDBytes)
	case !utf8.ValidString(id) || hasControl(id):
		return fmt.Errorf("%w: requestId contains control characters", ErrInvalidCommand)
	}
	return nil
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }
