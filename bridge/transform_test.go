package bridge

import (
	"os"
	"path/filepath"
	"testing"

	"shadowbridge/domain"
)

func TestTransformGolden(t *testing.T) {
	jack := domain.Attributes{"fullName": {"Jack Sparrow"}, "description": {"This is 'jack' called 'Jack Sparrow'"}, "login": {"jack"}}
	docModify := domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
		PrimaryIdentifiers: domain.Attributes{"login": {"jack"}}, SecondaryIdentifiers: domain.Attributes{},
		Changes: domain.Changes{"fullName": {Replace: []any{"Jack SPARROW"}}, "description": {Replace: []any{"This is 'jack' called 'Jack SPARROW'"}}},
		Order:   []string{"fullName", "description"}}
	docAdd := domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass", Attributes: jack,
		Order: []string{"fullName", "description", "login"}}
	del := domain.TargetRequest{Operation: domain.ChangeDelete, ObjectClass: "AccountObjectClass",
		PrimaryIdentifiers: domain.Attributes{"uid": {"u-1"}}, SecondaryIdentifiers: domain.Attributes{"login": {"jack"}}}
	tests := []struct {
		file, transformation string
		req                  domain.TargetRequest
	}{
		// midPoint's documentation examples, byte for byte.
		{"add.simplifiedJson.json", SimplifiedJSON, docAdd},
		{"modify.simplifiedJson.json", SimplifiedJSON, docModify},
		{"delete.simplifiedJson.json", SimplifiedJSON, del},
		{"modify-add-delete-clear.simplifiedJson.json", SimplifiedJSON, domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
			PrimaryIdentifiers: domain.Attributes{"uid": {int64(7)}}, SecondaryIdentifiers: domain.Attributes{"login": {"jack"}},
			Changes: domain.Changes{"group": {Add: []any{"pirates"}, Delete: []any{"navy"}}, "shoeSize": {Replace: []any{}}}}},
		{"add-values.simplifiedJson.json", SimplifiedJSON, domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {"<jack & \"co\">/\\ \t\n\u00e9\u0001"}, "shoeSize": {int64(42)}, "ratio": {1.5},
				"big": {1e21}, "small": {0.0001}, "active": {true}}, Order: []string{"login", "shoeSize", "ratio", "big", "small", "active"}}},
		{"add.simplifiedQualifiedJson.json", SimplifiedQualifiedJSON, docAdd},
		{"modify.simplifiedQualifiedJson.json", SimplifiedQualifiedJSON, docModify},
		{"delete.simplifiedQualifiedJson.json", SimplifiedQualifiedJSON, del},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Transform(tc.transformation, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got)+"\n" != string(want) {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		})
	}
}

// The two requests of midPoint's documentation, exactly as printed there.
func TestMidPointDocumentationExamples(t *testing.T) {
	add, _ := os.ReadFile("testdata/add.simplifiedJson.json")
	mod, _ := os.ReadFile("testdata/modify.simplifiedJson.json")
	const docAdd = `{"operation":"add","objectClass":"AccountObjectClass","attributes":{"fullName":["Jack Sparrow"],"description":["This is 'jack' called 'Jack Sparrow'"],"login":["jack"]}}`
	const docModify = `{"operation":"modify","objectClass":"AccountObjectClass","primaryIdentifiers":{"login":["jack"]},"secondaryIdentifiers":{},"changes":{"fullName":{"replace":["Jack SPARROW"]},"description":{"replace":["This is 'jack' called 'Jack SPARROW'"]}}}`
	if string(add) != docAdd+"\n" || string(mod) != docModify+"\n" {
		t.Fatalf("golden files differ from midPoint's documentation:\n%s\n%s", add, mod)
	}
}

func TestJavaCompat(t *testing.T) {
	for s, want := range map[string]int32{"": 0, "hello": 99162322, "Aa": 2112, "BB": 2112, "fullName": 1330852282, "é": 233, "😀": 1772899} {
		if got := javaStringHash(s); got != want {
			t.Errorf("hashCode(%q) = %d, want %d", s, got, want)
		}
	}
	for f, want := range map[float64]string{1.5: "1.5", 100: "100.0", 0.001: "0.001", 0.0001: "1.0E-4", 1e7: "1.0E7",
		1234567: "1234567.0", 123.456: "123.456", -2.5e-5: "-2.5E-5", 1e21: "1.0E21", 0.1: "0.1", 9999999.5: "9999999.5", 12345678.9: "1.23456789E7"} {
		if got := javaDouble(f); got != want {
			t.Errorf("Double.toString(%v) = %s, want %s", f, got, want)
		}
	}
	// 17 keys: the map has grown to 32 buckets.
	var keys []string
	for c := 'a'; c <= 'q'; c++ {
		keys = append(keys, string(c))
	}
	order := javaHashMapOrder(keys, func(s string) string { return s })
	if order[0] != "a" || len(order) != 17 { // 'a'=97 -> bucket 1 of 32; nothing below it
		t.Fatalf("order %v", order)
	}
}

func TestUnsupportedTransformationIsAConfigurationError(t *testing.T) {
	for _, name := range []string{"xml", FullJSON} {
		_, err := Transform(name, domain.TargetRequest{})
		if Categorize(err) != domain.CategoryConfiguration {
			t.Fatalf("%s: err %v category %s", name, err, Categorize(err))
		}
	}
}
