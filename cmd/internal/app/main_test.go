package app_test

import (
	"os"
	"testing"

	"shadowbridge/eventstore/natstest"
)

// TestMain lets a benchmark run its NATS server in a child process (natstest.StartProcess).
func TestMain(m *testing.M) {
	natstest.ServeIfAsked()
	os.Exit(m.Run())
}
