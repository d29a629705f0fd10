package main

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"

	"shadowbridge/cmd/internal/app"
)

// blockedComponent stands for a component whose Run does not return.
func blockedComponent(release <-chan struct{}) { <-release }

// A stop that takes too long ends its output with the stacks of the components not stopped,
// labelled as app.Start labels them, and nothing of the others.
func TestStuckStacksNameTheComponentsNotStopped(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 2)
	for _, name := range []string{"dispatcher", "projector"} {
		go pprof.Do(context.Background(), pprof.Labels(app.ComponentLabel, name), func(context.Context) {
			started <- struct{}{}
			blockedComponent(release)
		})
	}
	<-started
	<-started
	var dump bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&dump, 1); err != nil {
		t.Fatal(err)
	}
	got := stuckStacks(dump.String(), []string{"dispatcher"})
	if !strings.Contains(got, `"component":"dispatcher"`) || !strings.Contains(got, "blockedComponent") {
		t.Errorf("the dispatcher's stack is missing:\n%s", got)
	}
	if strings.Contains(got, `"component":"projector"`) {
		t.Errorf("a component that is not stuck is listed:\n%s", got)
	}
	if n := strings.Count(got, "stuck: "); n != 1 {
		t.Errorf("%d stacks listed, want 1:\n%s", n, got)
	}
}
