package bridge

import (
	"os"
	"path/filepath"
	"testing"

	"shadowbridge/domain"
)

// The first two are midPoint's own documentation examples, byte for byte.
func TestSimplifiedJSONGolden(t *testing.T) {
	tests := []struct {
		file string
		req  domain.TargetRequest
	}{
		{"add.simplifiedJson.json", domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"fullName": {"Jack Sparrow"}, "description": {"This is 'jack' called 'Jack Sparrow'"}, "login": {"jack"}}}},
		{"modify.simplifiedJson.json", domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
			PrimaryIdentifiers: domain.Attributes{"login": {"jack"}}, SecondaryIdentifiers: domain.Attributes{},
			Changes: domain.Changes{"fullName": {Replace: []any{"Jack SPARROW"}}, "description": {Replace: []any{"This is 'jack' called 'Jack SPARROW'"}}}}},
		{"delete.simplifiedJson.json", domain.TargetRequest{Operation: domain.ChangeDelete, ObjectClass: "AccountObjectClass",
			PrimaryIdentifiers: domain.Attributes{"uid": {"u-1"}}, SecondaryIdentifiers: domain.Attributes{"login": {"jack"}}}},
		{"modify-add-delete-clear.simplifiedJson.json", domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
			PrimaryIdentifiers: domain.Attributes{"uid": {int64(7)}}, SecondaryIdentifiers: domain.Attributes{"login": {"jack"}},
			Changes: domain.Changes{"group": {Add: []any{"pirates"}, Delete: []any{"navy"}}, "shoeSize": {Replace: []any{}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Transform(SimplifiedJSON, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(trimNL(want)) {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		})
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func TestUnsupportedTransformationIsAConfigurationError(t *testing.T) {
	_, err := Transform("xml", domain.TargetRequest{})
	if Categorize(err) != domain.CategoryConfiguration {
		t.Fatalf("err %v category %s", err, Categorize(err))
	}
}
