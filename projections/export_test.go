package projections

import "time"

// SetAsyncWriteWait sets how long the projector waits for its batch's answers; it returns the
// function that restores it.
func SetAsyncWriteWait(d time.Duration) (restore func()) {
	old := asyncWriteWait
	asyncWriteWait = d
	return func() { asyncWriteWait = old }
}
