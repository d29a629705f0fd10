package eventstore_test

import (
	"os"
	"testing"
	"time"
)

// TestMain runs the store's tests in a zone that is not UTC (+05:30), whatever the machine's:
// a record must read the same in every zone (TestTimesDecodeInUTC).
func TestMain(m *testing.M) {
	time.Local = time.FixedZone("IST", 5*3600+1800)
	os.Exit(m.Run())
}
