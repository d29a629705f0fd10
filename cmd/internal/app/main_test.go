package app_test

import (
	"os"
	"testing"

	"shadowbridge/eventstore/natstest"
)

// TestMain lets a benchmark run its NATS server in a child process (natstest.StartProcess), and
// runs the tests in a zone that is not UTC (+05:30), whatever the machine's: the service must
// write and read the same records, projections and times in every zone.
func TestMain(m *testing.M) {
	natstest.RunInZone(natstest.TestZone)
	natstest.ServeIfAsked()
	os.Exit(m.Run())
}
