package main

import (
	"bytes"
	"os"
	"testing"
)

// The generated codecs are those of the domain as it is: a field added to an event without
// `go generate ./eventstore` fails here (and so in CI).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	want, err := generate("../../../domain")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../events_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("eventstore/events_gen.go is stale: run go generate ./eventstore")
	}
}

// A field of a type the codecs have no kind for stops the generator with its name.
func TestUnknownFieldKindIsAnError(t *testing.T) {
	dir := t.TempDir()
	src := `package domain

import "time"

type Event interface{ EventType() string }
type ShadowEvent interface {
	Event
	shadowEvent()
}
type Odd struct {
	Ratio float64   ` + "`json:\"ratio\"`" + `
	Time  time.Time ` + "`json:\"time\"`" + `
}

func (Odd) EventType() string { return "Odd" }
func (Odd) shadowEvent()      {}
`
	if err := os.WriteFile(dir+"/events.go", []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(dir); err == nil || !bytes.Contains([]byte(err.Error()), []byte("Odd.Ratio")) {
		t.Fatalf("generate: %v, want an error naming Odd.Ratio", err)
	}
}
