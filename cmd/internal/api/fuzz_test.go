package api

import (
	"encoding/json"
	"errors"
	"testing"

	"shadowbridge/domain"
)

// FuzzDecodeCommands feeds arbitrary bytes to every command decoder: they must never panic, every
// refusal must be a categorized domain error, and whatever they accept must convert to domain
// values or be refused with one.
func FuzzDecodeCommands(f *testing.F) {
	for _, s := range []string{
		`{"objectClass":"AccountObjectClass","attributes":{"login":["jack"],"shoeSize":[42],"ratio":[1.5],"on":[true]}}`,
		`{"shadowId":"00000000-0000-4000-8000-000000000000","changes":{"a":{"add":["b"],"replace":[]}}}`,
		`{"identifiers":{"login":["jack"]}}`, `{"operationId":"x","resultStatus":"success","primaryIdentifiers":{"uid":[1]}}`,
		`{"atributes":{}}`, `[]`, `{"attributes":{"x":[{"y":1}]}}`, `{"attributes":{"x":[1e400]}}`, "\xff", ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(err error) {
			if err != nil && !errors.Is(err, domain.CategorySchema) {
				t.Fatalf("uncategorized error %v for %q", err, data)
			}
		}
		if b, err := Decode[AddBody](data); err == nil {
			attrs, err := AttributesFrom(b.Attributes.Values)
			check(err)
			for _, vs := range attrs {
				for _, v := range vs {
					if _, err := domain.NormalizeValue(v); err != nil {
						t.Fatalf("accepted a value the domain refuses: %#v", v)
					}
				}
			}
			if _, err := json.Marshal(attrs); err != nil {
				t.Fatalf("accepted attributes do not re-encode: %v", err)
			}
		} else {
			check(err)
		}
		if b, err := Decode[ModifyBody](data); err == nil {
			_, err = ChangesFrom(b.Changes.Values)
			check(err)
		} else {
			check(err)
		}
		_, err := Decode[ConfirmBody](data)
		check(err)
		_, err = Decode[DeleteBody](data)
		check(err)
	})
}

// FuzzConfirmation feeds arbitrary bodies to the reader of AMQP confirmations: it never panics,
// every refusal is a schema error, and what it accepts answers the message's operation with a
// result status.
func FuzzConfirmation(f *testing.F) {
	for _, s := range []string{`{"resultStatus":"success","primaryIdentifiers":{"uid":["u-1"]}}`,
		`{"resultStatus":"fatal_error","errorCategory":"already-exists","attributes":{"login":["x"]}}`,
		`{"resultStatus":"success","operationId":"00000000-0000-4000-8000-000000000001"}`,
		`{"resultStatus":"success","resultStatus":"success"}`, `{"resultstatus":"success"}`, `{}`, `not json`, "\xff"} {
		f.Add([]byte(s))
	}
	const op = "00000000-0000-4000-8000-000000000000"
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := Confirmation("demo", op, body)
		if err != nil {
			if !errors.Is(err, domain.CategorySchema) {
				t.Fatalf("uncategorized error %v for %q", err, body)
			}
			return
		}
		if c.OperationID != op || c.Result == "" || c.Resource != "demo" {
			t.Fatalf("accepted %q as %+v", body, c)
		}
	})
}
