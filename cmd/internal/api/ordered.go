package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// AttributeMap is a JSON object of attribute values that remembers the order of its keys:
// midPoint-compatible transformations reproduce the order in which attributes were given.
type AttributeMap struct {
	Values map[string][]any
	Order  []string
}

// ChangeMap is a JSON object of attribute changes that remembers the order of its keys.
type ChangeMap struct {
	Values map[string]ChangeBody
	Order  []string
}

// MarshalJSON writes the values (used for request fingerprints, where order does not matter).
func (a AttributeMap) MarshalJSON() ([]byte, error) { return json.Marshal(a.Values) }

// MarshalJSON writes the values.
func (c ChangeMap) MarshalJSON() ([]byte, error) { return json.Marshal(c.Values) }

// UnmarshalJSON reads a JSON object of arrays, keeping the key order and exact numbers.
func (a *AttributeMap) UnmarshalJSON(b []byte) error {
	a.Values, a.Order = nil, nil
	return decodeObject(b, "attributes", func(key string, raw json.RawMessage) error {
		var vs []any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&vs); err != nil {
			return fieldErr(key, err, reflect.TypeOf(vs))
		}
		if a.Values == nil {
			a.Values = map[string][]any{}
		}
		if _, dup := a.Values[key]; !dup {
			a.Order = append(a.Order, key)
		}
		a.Values[key] = vs
		return nil
	})
}

// UnmarshalJSON reads a JSON object of changes strictly (unknown fields inside a change are errors).
func (c *ChangeMap) UnmarshalJSON(b []byte) error {
	c.Values, c.Order = nil, nil
	return decodeObject(b, "changes", func(key string, raw json.RawMessage) error {
		var ch ChangeBody
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ch); err != nil {
			return fieldErr(key, err, reflect.TypeOf(ch))
		}
		if c.Values == nil {
			c.Values = map[string]ChangeBody{}
		}
		if _, dup := c.Values[key]; !dup {
			c.Order = append(c.Order, key)
		}
		c.Values[key] = ch
		return nil
	})
}

func decodeObject(b []byte, field string, each func(string, json.RawMessage) error) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &json.UnmarshalTypeError{Value: jsonValueKind(tok), Type: reflect.TypeOf(map[string]any{}), Field: field}
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if err := each(key, raw); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}

// fieldErr puts the field path on a type error from a nested decoder.
func fieldErr(field string, err error, t reflect.Type) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := field
		if te.Field != "" {
			f += "." + te.Field
		}
		return &json.UnmarshalTypeError{Value: te.Value, Type: te.Type, Field: f, Offset: te.Offset}
	}
	return err
}

func jsonValueKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}
