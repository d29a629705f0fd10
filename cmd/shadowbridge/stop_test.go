package main

import (
	"bytes"
	"context"
	"fmt"
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

// The cluster test's failure message for a slow stop carries what serve printed last: the error
// naming the components still running and their stacks, not the rest of the process's log.
func TestSlowStopReasonReachesTheFailureMessage(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	go pprof.Do(context.Background(), pprof.Labels(app.ComponentLabel, "timers"), func(context.Context) {
		close(started)
		blockedComponent(release)
	})
	<-started
	var dump bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
	var l stderrLog
	fmt.Fprintln(&l, "level=INFO msg=before the stop")
	l.mark()
	fmt.Fprintln(&l, "level=WARN msg=\"commands still in flight\"")
	fmt.Fprint(&l, stuckStacks(dump.String(), []string{"timers"}))
	fmt.Fprintln(&l, "shadowbridge: serve: shutdown took longer than 20s (still running: timers); exiting with the rest unacknowledged")
	why := l.why()
	for _, want := range []string{"stuck: 1 goroutine(s)", `"component":"timers"`, "blockedComponent", "still running: timers"} {
		if !strings.Contains(why, want) {
			t.Errorf("%q missing from:\n%s", want, why)
		}
	}
	if strings.Contains(why, "before the stop") || strings.Contains(why, "in flight") {
		t.Errorf("other lines kept:\n%s", why)
	}
}
