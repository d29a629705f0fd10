package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Explanation says why a shadow is in its lifecycle state and what will happen to it next, from
// its state alone (which the events built). It is what `shadowbridge explain` prints.
type Explanation struct {
	ShadowID       string     `json:"shadowId"`
	LifecycleState Lifecycle  `json:"lifecycleState"`
	Why            []string   `json:"why"`
	Next           []NextStep `json:"next"`
}

// NextStep is something due at a known time (At set) or waiting for someone (At zero).
type NextStep struct {
	At   time.Time `json:"at,omitzero"`
	What string    `json:"what"`
}

// Explain explains s at now under the resource's consistency settings, the resource taken as
// up and operational. Pure: no I/O, no clock.
func Explain(s Shadow, c Consistency, now time.Time) Explanation {
	return ExplainIn(s, c, ResourceState{}, now)
}

// ExplainIn is Explain with the resource as it is (r): why work waits names the maintenance (since
// when, why) or the outage (since when, the last error) that holds it. Pure.
func ExplainIn(s Shadow, c Consistency, r ResourceState, now time.Time) Explanation {
	d := s.d
	x := Explanation{ShadowID: d.ShadowID, LifecycleState: d.LifecycleState, Why: []string{}, Next: []NextStep{}}
	why := func(f string, a ...any) { x.Why = append(x.Why, fmt.Sprintf(f, a...)) }
	next := func(at time.Time, f string, a ...any) {
		x.Next = append(x.Next, NextStep{At: at, What: fmt.Sprintf(f, a...)})
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	last := func(ct ChangeType) (PendingOperation, bool) {
		for i := len(d.PendingOperations) - 1; i >= 0; i-- {
			if d.PendingOperations[i].Delta.ChangeType == ct {
				return d.PendingOperations[i], true
			}
		}
		return PendingOperation{}, false
	}
	held := resourceHold(r, ts)
	switch d.LifecycleState {
	case LifecycleProposed:
		if held != "" {
			why("the add is recorded but has not reached the target yet: %s", held)
		} else {
			why("the add is recorded but has not reached the target yet (queued behind an operation, or released after a crash and about to be sent)")
		}
	case LifecycleConceived:
		if p, ok := last(ChangeAdd); ok {
			why("the add was attempted %d time(s) and has not completed: %s", p.AttemptNumber, opState(p))
		}
	case LifecycleGestating:
		if p, ok := last(ChangeAdd); ok {
			why("the add completed with %s at %s and is inside its grace period (until %s)", p.ResultStatus, ts(p.CompletionTimestamp), ts(p.GracePeriodEnd))
		}
	case LifecycleLive:
		if p, ok := last(ChangeAdd); ok && p.Completed() {
			why("the account exists: the add completed with %s at %s", p.ResultStatus, ts(p.CompletionTimestamp))
		} else {
			why("the account exists on the target (created %s)", ts(d.CreateTimestamp))
		}
	case LifecycleReaping:
		if p, ok := last(ChangeDelete); ok {
			why("a delete is under way: %s", opState(p))
		}
	case LifecycleCorpse:
		if p, ok := last(ChangeDelete); ok {
			why("the delete completed at %s and is inside its grace period (until %s)", ts(p.CompletionTimestamp), ts(p.GracePeriodEnd))
		}
	case LifecycleTombstone:
		why("the shadow is dead since %s: %s", ts(d.DeathTimestamp), causeOfDeath(d))
	}
	if tc := d.TargetChange; tc != nil && !(tc.Kind == TargetGone && d.LifecycleState == LifecycleTombstone) {
		why("%s", targetChangeWhy(tc, ts))
	}
	if d.Expired {
		why("it has left the projection (dead-shadow retention over); its events stay in the log")
	}
	blocked := false
	for _, p := range d.PendingOperations {
		if p.Completed() {
			if !p.GracePeriodEnd.IsZero() && now.Before(p.GracePeriodEnd) {
				next(p.GracePeriodEnd, "grace period of the %s %s ends", p.Delta.ChangeType, p.ID)
			}
			if !d.Expired {
				next(retentionEnd(p, c), "the completed %s %s leaves the shadow (retention)", p.Delta.ChangeType, p.ID)
			}
			continue
		}
		switch {
		case p.ExecutionStatus == StatusRequested && blocked:
			next(time.Time{}, "%s %s waits behind the operations before it", p.Delta.ChangeType, p.ID)
		case p.ExecutionStatus == StatusRequested && r.InMaintenance():
			next(time.Time{}, "%s %s waits until maintenance ends (%s)", p.Delta.ChangeType, p.ID, held)
		case p.ExecutionStatus == StatusRequested:
			next(time.Time{}, "%s %s waits to be released (a refresh after a crash)", p.Delta.ChangeType, p.ID)
		case p.ExecutionStatus == StatusExecutionPending && r.InMaintenance():
			next(time.Time{}, "%s %s attempt %d waits until maintenance ends (%s)", p.Delta.ChangeType, p.ID, p.AttemptNumber+1, held)
		case p.ExecutionStatus == StatusExecutionPending:
			next(time.Time{}, "%s %s attempt %d is being sent to the target", p.Delta.ChangeType, p.ID, p.AttemptNumber+1)
		case p.Type == TypeRetry && p.AttemptNumber >= c.OperationRetryMaxAttempts:
			next(p.LastAttemptTimestamp, "%s %s has no attempts left: it ends with fatal_error", p.Delta.ChangeType, p.ID)
		case p.Type == TypeRetry:
			next(p.LastAttemptTimestamp.Add(c.OperationRetryPeriod), "%s %s is retried (attempt %d of %d%s%s; earlier if the resource comes back up)",
				p.Delta.ChangeType, p.ID, p.AttemptNumber+1, c.OperationRetryMaxAttempts, lastError(p), prefixed("; ", held))
		default:
			next(time.Time{}, "%s %s waits for the target system's confirmation (reference %s)", p.Delta.ChangeType, p.ID, p.AsynchronousOperationReference)
		}
		if p.Delta.ChangeType == ChangeAdd || p.Type == TypeRetry || p.ExecutionStatus == StatusRequested {
			blocked = true
		}
	}
	if d.Dead && !d.Expired {
		next(expiry(s, c), "the dead shadow leaves the projection (dead-shadow retention)")
	}
	slices.SortStableFunc(x.Next, func(a, b NextStep) int {
		switch {
		case a.At.IsZero() && b.At.IsZero():
			return 0
		case a.At.IsZero():
			return -1
		case b.At.IsZero():
			return 1
		}
		return a.At.Compare(b.At)
	})
	return x
}

// resourceHold says what about the resource holds its operations back ("" : nothing): the
// maintenance (since when, why) or the outage (since when, the last error).
func resourceHold(r ResourceState, ts func(time.Time) string) string {
	d := r.d
	switch {
	case r.InMaintenance():
		s := "the resource is in maintenance"
		if n := len(d.AdministrativeChanges); n > 0 {
			ch := d.AdministrativeChanges[n-1]
			s += " since " + ts(ch.Time)
			if ch.Reason != "" {
				s += " (" + ch.Reason + ")"
			}
		}
		return s
	case r.Availability() == AvailabilityDown || r.Availability() == AvailabilityBroken:
		s := "the resource is " + string(r.Availability())
		if n := len(d.Changes); n > 0 {
			ch := d.Changes[n-1]
			s += " since " + ts(ch.Time)
			if ch.Reason != "" {
				s += ": " + ch.Reason
			}
		}
		return s
	}
	return ""
}

// lastError is "; last error CATEGORY: MESSAGE" for an operation that failed an attempt.
func lastError(p PendingOperation) string {
	if p.LastError == nil {
		return ""
	}
	return "; last error " + p.LastError.String()
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func opState(p PendingOperation) string {
	s := fmt.Sprintf("%s/%s", p.ExecutionStatus, p.ResultStatus)
	if p.Type == TypeRetry {
		s += ", postponed for retry"
	}
	if p.LastError != nil {
		s += fmt.Sprintf(", last error %s: %s", p.LastError.Category, p.LastError.Message)
	}
	return s
}

// targetChangeWhy says what the target did outside shadowbridge.
func targetChangeWhy(tc *TargetChange, ts func(time.Time) string) string {
	seen := "seen by " + tc.Source
	if tc.Reconciliation != "" {
		seen += " " + tc.Reconciliation
	}
	seen += " at " + ts(tc.Time)
	switch tc.Kind {
	case TargetChanged:
		return fmt.Sprintf("the target changed %s outside shadowbridge (%s): the cache follows the target", strings.Join(tc.Attributes, ", "), seen)
	case TargetDiscovered:
		return fmt.Sprintf("the account was made on the target outside shadowbridge and had no shadow (%s)", seen)
	case TargetLost:
		return fmt.Sprintf("the target lost the account (%s): it is assigned, so it is created again", seen)
	case TargetGone:
		return fmt.Sprintf("the account is gone from the target, deleted outside shadowbridge (%s)", seen)
	}
	return fmt.Sprintf("the target changed the account outside shadowbridge (%s)", seen)
}

func causeOfDeath(d ShadowData) string {
	if tc := d.TargetChange; tc != nil && tc.Kind == TargetGone {
		return targetChangeWhy(tc, func(t time.Time) string { return t.UTC().Format(time.RFC3339) })
	}
	for i := len(d.PendingOperations) - 1; i >= 0; i-- {
		p := d.PendingOperations[i]
		if !p.Completed() {
			continue
		}
		switch {
		case p.Delta.ChangeType == ChangeDelete && p.ResultStatus.applied():
			return "the delete completed with " + string(p.ResultStatus)
		case p.Delta.ChangeType == ChangeAdd && !p.ResultStatus.applied():
			return fmt.Sprintf("the add ended with %s (%s)", p.ResultStatus, p.Message)
		case p.Delta.ChangeType == ChangeAdd && p.ResultStatus == ResultHandledError:
			return p.Message
		case p.Delta.ChangeType == ChangeModify && p.ResultStatus == ResultHandledError:
			return p.Message
		}
	}
	return "its operations ended it"
}
