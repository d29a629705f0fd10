package service

import (
	"sync/atomic"

	"shadowbridge/eventstore"
)

// Fault points: the places in the command path where a crash leaves a partial unit of work. Tests
// (and the crash scenario's subprocesses, through SHADOWBRIDGE_FAULT) stop the work there.
const (
	// FaultAfterReserve: the request id's pending record is written, nothing appended.
	FaultAfterReserve = eventstore.FaultAfterReserve
	// FaultAfterIndex: the reservation, claims and operation-index entries are written, nothing
	// appended.
	FaultAfterIndex = eventstore.FaultAfterIndex
	// FaultAfterAppend: the decision is appended, the request's reply not yet recorded.
	FaultAfterAppend = eventstore.FaultAfterAppend
	// FaultBeforeOutcome: the target has accepted a request, its outcome is not recorded yet
	// (so the request is sure to be sent again).
	FaultBeforeOutcome = "before-outcome"
	// FaultMidPage: half of a reconciliation page's accounts are applied, the page is not
	// recorded yet (so the page is sure to be applied again).
	FaultMidPage = "mid-page"
)

type faultHook struct {
	fn atomic.Pointer[func(point string) error]
}

// faults is nil-safe and costs one atomic load when no hook is set.
var faults faultHook

func (f *faultHook) hit(point string) error {
	if fn := f.fn.Load(); fn != nil {
		return (*fn)(point)
	}
	return nil
}

// SetFaultHook installs fn, called at every fault point; a non-nil error stops the work there as
// a crash would (nothing after the point is written). nil removes the hook. For tests only: it is
// process-wide.
func SetFaultHook(fn func(point string) error) {
	if fn == nil {
		faults.fn.Store(nil)
		return
	}
	faults.fn.Store(&fn)
}
