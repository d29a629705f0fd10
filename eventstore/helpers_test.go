package eventstore_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
