package domain

import "time"

// RetryTimerSet records that the shadow's retry timer is (re)armed: at At, a refresh retries the
// operations whose retry period has passed. A shadow has at most one retry timer, for its
// earliest due retry.
type RetryTimerSet struct {
	At   time.Time `json:"at"`
	Time time.Time `json:"time"`
}

// RetryTimerCleared records that the shadow has no retry left to wait for.
type RetryTimerCleared struct {
	Time time.Time `json:"time"`
}

// EventType names the events in the log.
func (RetryTimerSet) EventType() string     { return "RetryTimerSet" }
func (RetryTimerCleared) EventType() string { return "RetryTimerCleared" }

// EventTime returns when the timer was set or cleared.
func (e RetryTimerSet) EventTime() time.Time     { return e.Time }
func (e RetryTimerCleared) EventTime() time.Time { return e.Time }

// NextRetry returns when the shadow's earliest postponed operation is due for its next attempt
// (lastAttemptTimestamp + operationRetryPeriod; at once when it has no attempts left, so that it
// is ended), and false when nothing waits for a retry.
func NextRetry(s Shadow, c Consistency) (time.Time, bool) {
	var at time.Time
	found := false
	for _, p := range s.d.PendingOperations {
		if p.Completed() || p.Type != TypeRetry || p.ExecutionStatus != StatusExecuting {
			continue
		}
		due := p.LastAttemptTimestamp.Add(c.OperationRetryPeriod)
		if p.AttemptNumber >= c.OperationRetryMaxAttempts {
			due = p.LastAttemptTimestamp
		}
		if !found || due.Before(at) {
			at, found = due, true
		}
	}
	return at, found
}

// timerEvents returns the event that re-arms or clears the retry timer when a decision changed
// the shadow's next retry.
func timerEvents(before, after Shadow, c Consistency, now time.Time) []Event {
	b, hadB := NextRetry(before, c)
	a, hasA := NextRetry(after, c)
	switch {
	case hasA && (!hadB || !a.Equal(b)):
		return []Event{RetryTimerSet{At: a, Time: now}}
	case hadB && !hasA:
		return []Event{RetryTimerCleared{Time: now}}
	}
	return nil
}
