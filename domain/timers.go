package domain

import "time"

// TimerSet records that the shadow's timer is (re)armed: at At something is due (a retry, the
// end of a grace period, a completed operation's retention, a dead shadow's expiry) and a refresh
// will do it. A shadow has at most one timer, for its earliest due work (NextDue).
type TimerSet struct {
	At   time.Time `json:"at"`
	Time time.Time `json:"time"`
}

// TimerCleared records that nothing is due for the shadow any more.
type TimerCleared struct {
	Time time.Time `json:"time"`
}

// EventType names the events in the log.
func (TimerSet) EventType() string     { return "TimerSet" }
func (TimerCleared) EventType() string { return "TimerCleared" }

// EventTime returns when the timer was set or cleared.
func (e TimerSet) EventTime() time.Time     { return e.Time }
func (e TimerCleared) EventTime() time.Time { return e.Time }

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

// GracePeriodEnded records that a completed operation's grace period is over: it no longer
// counts for the lifecycle (gestating becomes live, corpse becomes tombstone).
type GracePeriodEnded struct {
	OperationID string    `json:"operationId"`
	Time        time.Time `json:"time"`
}

// OperationRemoved records that a completed operation left the shadow after
// max(pendingOperationGracePeriod, pendingOperationRetentionPeriod). Its events stay in the log.
type OperationRemoved struct {
	OperationID string    `json:"operationId"`
	Time        time.Time `json:"time"`
}

// ShadowExpired records that a dead shadow reached max(pendingOperationGracePeriod,
// deadShadowRetentionPeriod) after its last activity: it leaves the projection. Its events stay
// in the log for audit.
type ShadowExpired struct {
	Time time.Time `json:"time"`
}

func (GracePeriodEnded) EventType() string      { return "GracePeriodEnded" }
func (OperationRemoved) EventType() string      { return "OperationRemoved" }
func (ShadowExpired) EventType() string         { return "ShadowExpired" }
func (e GracePeriodEnded) EventTime() time.Time { return e.Time }
func (e OperationRemoved) EventTime() time.Time { return e.Time }
func (e ShadowExpired) EventTime() time.Time    { return e.Time }

// retentionEnd is when a completed operation leaves the shadow.
func retentionEnd(p PendingOperation, c Consistency) time.Time {
	return p.CompletionTimestamp.Add(max(c.PendingOperationGracePeriod, c.PendingOperationRetentionPeriod))
}

// LastActivity is midPoint's last shadow activity: the latest request, attempt and completion
// timestamp of its operations, else its create/modify timestamps.
func LastActivity(s Shadow) time.Time {
	var last time.Time
	for _, p := range s.d.PendingOperations {
		for _, t := range []time.Time{p.RequestTimestamp, p.LastAttemptTimestamp, p.CompletionTimestamp} {
			if t.After(last) {
				last = t
			}
		}
	}
	if last.IsZero() {
		last = s.d.CreateTimestamp
		if s.d.ModifyTimestamp.After(last) {
			last = s.d.ModifyTimestamp
		}
	}
	return last
}

// expiry is when a dead shadow leaves the projection.
func expiry(s Shadow, c Consistency) time.Time {
	return LastActivity(s).Add(max(c.PendingOperationGracePeriod, c.DeadShadowRetentionPeriod))
}

// NextDue returns the earliest moment something is due for the shadow: a retry (NextRetry), the
// end of a grace period, a completed operation's removal, or a dead shadow's expiry.
func NextDue(s Shadow, c Consistency) (time.Time, bool) {
	at, found := NextRetry(s, c)
	consider := func(t time.Time) {
		if !found || t.Before(at) {
			at, found = t, true
		}
	}
	if s.d.Expired {
		return time.Time{}, false
	}
	for _, p := range s.d.PendingOperations {
		if !p.Completed() {
			continue
		}
		if !p.GracePeriodEnd.IsZero() {
			consider(p.GracePeriodEnd)
		}
		consider(retentionEnd(p, c))
	}
	if s.d.Dead {
		consider(expiry(s, c))
	}
	return at, found
}

// dueHousekeeping returns what time alone makes due at now: grace periods that ended, completed
// operations past retention, a dead shadow past its retention.
func dueHousekeeping(s Shadow, c Consistency, now time.Time) []Event {
	if s.d.Expired {
		return nil
	}
	var out []Event
	for _, p := range s.d.PendingOperations {
		if !p.Completed() {
			continue
		}
		if !p.GracePeriodEnd.IsZero() && !now.Before(p.GracePeriodEnd) {
			out = append(out, GracePeriodEnded{OperationID: p.ID, Time: now})
		}
		if !now.Before(retentionEnd(p, c)) {
			out = append(out, OperationRemoved{OperationID: p.ID, Time: now})
		}
	}
	if s.d.Dead && !now.Before(expiry(s, c)) {
		out = append(out, ShadowExpired{Time: now})
	}
	return out
}

// timerEvents returns the event that re-arms or clears the shadow's timer when a decision changed
// its next due moment.
func timerEvents(before, after Shadow, c Consistency, now time.Time) []Event {
	b, hadB := NextDue(before, c)
	a, hasA := NextDue(after, c)
	switch {
	case hasA && (!hadB || !a.Equal(b)):
		return []Event{TimerSet{At: a, Time: now}}
	case hadB && !hasA:
		return []Event{TimerCleared{Time: now}}
	}
	return nil
}
