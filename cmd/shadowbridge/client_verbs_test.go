package main

import (
	"maps"
	"shadowbridge/cmd/internal/cli"
	"slices"
	"testing"
)

// Every client verb has its flags listed and its request built, and nothing else is listed.
func TestEveryClientVerbBuildsARequest(t *testing.T) {
	flags, builders := slices.Sorted(maps.Keys(cli.VerbFlags)), slices.Sorted(maps.Keys(cli.Builders))
	if !slices.Equal(flags, builders) {
		t.Fatalf("verbs with flags %v, verbs with a request builder %v", flags, builders)
	}
}
