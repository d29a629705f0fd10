package main

import (
	"maps"
	"slices"
	"testing"
)

// Every client verb has its flags listed and its request built, and nothing else is listed.
func TestEveryClientVerbBuildsARequest(t *testing.T) {
	flags, builders := slices.Sorted(maps.Keys(clientVerbFlags)), slices.Sorted(maps.Keys(clientRequests))
	if !slices.Equal(flags, builders) {
		t.Fatalf("verbs with flags %v, verbs with a request builder %v", flags, builders)
	}
}
