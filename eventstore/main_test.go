package eventstore_test

import (
	"os"
	"shadowbridge/eventstore/natstest"
	"testing"
)

// TestMain runs the store's tests in a zone that is not UTC (+05:30), whatever the machine's:
// a record must read the same in every zone (TestTimesDecodeInUTC).
func TestMain(m *testing.M) {
	natstest.RunInZone(natstest.TestZone)
	os.Exit(m.Run())
}
