package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// supervise starts a component again each time it ends while its context lives, counting each
// restart, and stops at once when the context ends (even during a pause).
func TestSuperviseStartsAgainUntilTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	runs, restarts := 0, 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		supervise(ctx, "c", func(ctx context.Context) error {
			runs++
			if runs < 3 {
				return errors.New("consumer gone")
			}
			if runs == 3 {
				return nil // ending without an error is ending too
			}
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}, slog.New(slog.NewTextHandler(io.Discard, nil)), func(...string) { restarts++ }, time.Millisecond)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("supervise did not return when its context ended")
	}
	if runs != 4 || restarts != 3 {
		t.Fatalf("runs %d restarts %d, want 4 and 3", runs, restarts)
	}
	// A context that ends during a pause ends the wait.
	ctx, cancel = context.WithCancel(t.Context())
	start := time.Now()
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	supervise(ctx, "c", func(context.Context) error { return errors.New("down") }, slog.New(slog.NewTextHandler(io.Discard, nil)), func(...string) {}, time.Hour)
	if time.Since(start) > 10*time.Second {
		t.Fatal("a pause outlived the context")
	}
}
