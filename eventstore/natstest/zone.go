package natstest

import (
	"fmt"
	"os"
	"syscall"

	_ "time/tzdata" // the zone is there on a machine without a zone database
)

// TestZone is the time zone the tests of the store, the service and the CLI run in: +05:30, so
// that no hour of it reads the same in UTC and a time written in the local zone where UTC was
// meant shows.
const TestZone = "Asia/Kolkata"

// RunInZone re-executes the test binary once with TZ=zone, before any test runs: the whole run,
// goroutines started by package initialization included, is then in that zone. (Setting
// time.Local in TestMain instead races with those goroutines: nats-server starts one.) Call it
// first in TestMain.
func RunInZone(zone string) {
	if os.Getenv("TZ") == zone {
		return
	}
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, append(os.Environ(), "TZ="+zone))
	}
	panic(fmt.Sprintf("natstest: re-execute the tests in zone %s: %v", zone, err))
}
