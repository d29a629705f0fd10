package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"shadowbridge/cmd/internal/service"
)

// faultEnv names the crash-test knob: SHADOWBRIDGE_FAULT=POINT:N makes the process SIGKILL
// itself the Nth time the command path reaches POINT (service.FaultAfterReserve,
// service.FaultAfterIndex, service.FaultAfterAppend, service.FaultBeforeOutcome or
// service.FaultMidPage), so that tests can crash the real binary exactly between two writes.
// Not for production use.
const faultEnv = "SHADOWBRIDGE_FAULT"

func installFault(getenv func(string) string) error {
	v := getenv(faultEnv)
	if v == "" {
		return nil
	}
	point, nth, ok := strings.Cut(v, ":")
	n, err := strconv.ParseInt(nth, 10, 64)
	if !ok || err != nil || n < 1 || (point != service.FaultAfterReserve && point != service.FaultAfterIndex && point != service.FaultAfterAppend && point != service.FaultBeforeOutcome && point != service.FaultMidPage) {
		return fmt.Errorf("%s=%q: want %s:N, %s:N, %s:N, %s:N or %s:N", faultEnv, v, service.FaultAfterReserve, service.FaultAfterIndex, service.FaultAfterAppend, service.FaultBeforeOutcome, service.FaultMidPage)
	}
	var hits atomic.Int64
	service.SetFaultHook(func(p string) error {
		if p == point && hits.Add(1) == n {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way: write nothing more
		}
		return nil
	})
	return nil
}
