package domain

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
)

// Attributes maps an attribute name to its values. A value is a string, an int64, a float64 or a
// bool, and keeps that type from the request to the target system (a shoe size of 42 stays the
// number 42). Use NormalizeValue to bring other Go numbers into that set.
type Attributes map[string][]any

// Clone returns a deep copy; values are immutable scalars, so copying the slices is enough.
func (a Attributes) Clone() Attributes {
	if a == nil {
		return nil
	}
	out := make(Attributes, len(a))
	for k, v := range a {
		out[k] = slices.Clone(v)
	}
	return out
}

// Names returns the attribute names in sorted order (deterministic output for logs and tests).
func (a Attributes) Names() []string {
	names := slices.Collect(maps.Keys(a))
	sort.Strings(names)
	return names
}

// NormalizeValue returns v as one of the allowed value types or ErrInvalidValue. Integral numbers
// become int64 so that equality and encodings are stable.
func NormalizeValue(v any) (any, error) {
	switch x := v.(type) {
	case string, bool, int64:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("%w: %d does not fit in int64", ErrInvalidValue, x)
		}
		return int64(x), nil
	case float32:
		return normFloat(float64(x))
	case float64:
		return normFloat(x)
	case nil:
		return nil, fmt.Errorf("%w: null is not a value (delete the value instead)", ErrInvalidValue)
	default:
		return nil, fmt.Errorf("%w: %T (use a string, number or boolean)", ErrInvalidValue, v)
	}
}

func normFloat(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: %v is not a finite number", ErrInvalidValue, f)
	}
	return f, nil
}

func normalizeValues(attr string, vs []any) ([]any, error) {
	if err := checkValues(attr, vs); err != nil {
		return nil, err
	}
	out := make([]any, 0, len(vs))
	for _, v := range vs {
		n, err := NormalizeValue(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", attr, err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func normalizeAttributes(in Attributes) (Attributes, error) {
	if len(in) > MaxAttributes {
		return nil, fmt.Errorf("%w: %d attributes (the limit is %d)", ErrLimit, len(in), MaxAttributes)
	}
	out := make(Attributes, len(in))
	for name, vs := range in {
		if err := checkName(name); err != nil {
			return nil, err
		}
		n, err := normalizeValues(name, vs)
		if err != nil {
			return nil, err
		}
		if len(n) > 0 {
			out[name] = n
		}
	}
	return out, nil
}

// AttributeChange is midPoint's item delta for one attribute: values to add, values to delete, or
// the complete new set of values (Replace). Replace nil means "no replace"; a non-nil empty Replace
// removes every value. Replace cannot be mixed with Add or Delete.
type AttributeChange struct {
	Add     []any `json:"add,omitempty"`
	Delete  []any `json:"delete,omitempty"`
	Replace []any `json:"replace"`
}

// Changes maps an attribute name to its change.
type Changes map[string]AttributeChange

// Clone returns a deep copy.
func (c Changes) Clone() Changes {
	if c == nil {
		return nil
	}
	out := make(Changes, len(c))
	for k, v := range c {
		out[k] = AttributeChange{Add: slices.Clone(v.Add), Delete: slices.Clone(v.Delete), Replace: cloneKeepNil(v.Replace)}
	}
	return out
}

func cloneKeepNil(v []any) []any {
	if v == nil {
		return nil
	}
	return append(make([]any, 0, len(v)), v...)
}

func normalizeChanges(in Changes) (Changes, error) {
	if len(in) == 0 {
		return nil, ErrEmptyChanges
	}
	if len(in) > MaxAttributes {
		return nil, fmt.Errorf("%w: changes of %d attributes (the limit is %d)", ErrLimit, len(in), MaxAttributes)
	}
	out := make(Changes, len(in))
	for name, ch := range in {
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidChange, err)
		}
		if ch.Replace != nil && (len(ch.Add) > 0 || len(ch.Delete) > 0) {
			return nil, fmt.Errorf("%w: attribute %q: replace cannot be combined with add or delete", ErrInvalidChange, name)
		}
		if ch.Replace == nil && len(ch.Add) == 0 && len(ch.Delete) == 0 {
			return nil, fmt.Errorf("%w: attribute %q: no values to add, delete or replace", ErrInvalidChange, name)
		}
		var n AttributeChange
		var err error
		if n.Add, err = normalizeValues(name, ch.Add); err != nil {
			return nil, err
		}
		if n.Delete, err = normalizeValues(name, ch.Delete); err != nil {
			return nil, err
		}
		if ch.Replace != nil {
			if n.Replace, err = normalizeValues(name, ch.Replace); err != nil {
				return nil, err
			}
		}
		if len(n.Add) == 0 {
			n.Add = nil
		}
		if len(n.Delete) == 0 {
			n.Delete = nil
		}
		out[name] = n
	}
	return out, nil
}

// applyChanges returns attrs with the changes applied as midPoint's attribute caching does:
// replace sets the values, add appends the values not present yet, delete removes the given values.
// An attribute left without values disappears.
func applyChanges(attrs Attributes, changes Changes) Attributes {
	out := attrs.Clone()
	if out == nil {
		out = Attributes{}
	}
	for name, ch := range changes {
		vs := out[name]
		if ch.Replace != nil {
			vs = slices.Clone(ch.Replace)
		}
		for _, v := range ch.Add {
			if !slices.Contains(vs, v) {
				vs = append(vs, v)
			}
		}
		for _, v := range ch.Delete {
			if i := slices.Index(vs, v); i >= 0 {
				vs = slices.Delete(vs, i, i+1)
			}
		}
		if len(vs) == 0 {
			delete(out, name)
		} else {
			out[name] = vs
		}
	}
	return out
}

// Names returns the attribute names of the changes in sorted order.
func (c Changes) Names() []string {
	names := slices.Collect(maps.Keys(c))
	sort.Strings(names)
	return names
}
