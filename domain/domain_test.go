package domain

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

const (
	sid  = "11111111-1111-4111-8111-111111111111"
	op1  = "22222222-2222-4222-8222-222222222221"
	op2  = "22222222-2222-4222-8222-222222222222"
	op3  = "22222222-2222-4222-8222-222222222223"
	op4  = "22222222-2222-4222-8222-222222222224"
	acct = "AccountObjectClass"
)

func testResource(t *testing.T, confirm bool, mut ...func(*Consistency)) Resource {
	t.Helper()
	c := DefaultConsistency()
	for _, m := range mut {
		m(&c)
	}
	r, err := NewResource("demo", []ObjectClass{{Name: acct, SecondaryIdentifier: "login", PrimaryIdentifier: "uid"}}, c, confirm)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run decides cmd on s at now, fails on error, and returns the new state and the events.
func run(t *testing.T, s Shadow, cmd Command, now time.Time) (Shadow, []Event) {
	t.Helper()
	ev, err := Decide(s, cmd, now)
	if err != nil {
		t.Fatalf("Decide(%T): %v", cmd, err)
	}
	return Fold(s, ev), ev
}

func types(ev []Event) []string {
	out := make([]string, len(ev))
	for i, e := range ev {
		out[i] = e.EventType()
	}
	return out
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func eqTypes(t *testing.T, got []Event, want ...string) {
	t.Helper()
	g := types(got)
	if len(g) != len(want) {
		t.Fatalf("events = %v, want %v", g, want)
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("events = %v, want %v", g, want)
		}
	}
}

// testID returns a distinct valid operation id for n.
func testID(n int) string { return fmt.Sprintf("33333333-3333-4333-8333-%012d", n) }

func added(t *testing.T, r Resource) Shadow {
	s, _ := run(t, Shadow{}, Add{Resource: r, ShadowID: sid, OperationID: op1, RequestID: "r1", ObjectClass: acct,
		Attributes: Attributes{"login": {"jack"}, "fullName": {"Jack Sparrow"}, "shoeSize": {42}}}, t0)
	return s
}

func live(t *testing.T, r Resource) Shadow {
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1, Reference: op1}, t0.Add(time.Second))
	if r.Confirmations() {
		s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}}, t0.Add(2*time.Second))
	}
	return s
}

func TestAddLifecycle(t *testing.T) {
	r := testResource(t, true)
	s, ev := run(t, Shadow{}, Add{Resource: r, ShadowID: sid, OperationID: op1, RequestID: "r1", ObjectClass: acct,
		Attributes: Attributes{"login": {"jack"}, "shoeSize": {42, 42}}}, t0)
	eqTypes(t, ev, "AddRequested", "DispatchRequested")
	d := s.Data()
	eq(t, "lifecycle", d.LifecycleState, LifecycleProposed)
	eq(t, "exists", d.Exists, false)
	eq(t, "primary ids", len(d.PrimaryIdentifiers), 0)
	eq(t, "secondary", d.SecondaryIdentifiers["login"][0], any("jack"))
	eq(t, "shoe size keeps its type and loses duplicates", len(d.Attributes["shoeSize"]), 1)
	eq(t, "shoe size int64", d.Attributes["shoeSize"][0], any(int64(42)))
	p := d.PendingOperations[0]
	eq(t, "status", p.ExecutionStatus, StatusExecutionPending)
	eq(t, "result", p.ResultStatus, ResultInProgress)
	eq(t, "type", p.Type, TypeAsynchronous)
	eq(t, "requested at", p.RequestTimestamp, t0)
	eq(t, "dispatch attempt", ev[1].(DispatchRequested).Attempt, 1)
	eq(t, "request op", ev[1].(DispatchRequested).Request.Operation, ChangeAdd)

	s, ev = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1, Reference: op1}, t0.Add(time.Second))
	eqTypes(t, ev, "OperationSent")
	d = s.Data()
	eq(t, "lifecycle after send", d.LifecycleState, LifecycleConceived)
	eq(t, "status after send", d.PendingOperations[0].ExecutionStatus, StatusExecuting)
	eq(t, "async ref", d.PendingOperations[0].AsynchronousOperationReference, op1)
	eq(t, "attempts", d.PendingOperations[0].AttemptNumber, 1)
	eq(t, "last attempt", d.PendingOperations[0].LastAttemptTimestamp, t0.Add(time.Second))

	s, ev = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}}, t0.Add(2*time.Second))
	eqTypes(t, ev, "OperationCompleted", "TimerSet")
	eq(t, "retention timer", ev[1].(TimerSet).At, t0.Add(2*time.Second+24*time.Hour))
	d = s.Data()
	eq(t, "lifecycle after confirm", d.LifecycleState, LifecycleLive)
	eq(t, "exists", d.Exists, true)
	eq(t, "uid", d.PrimaryIdentifiers["uid"][0], any("u-1"))
	eq(t, "completed", d.PendingOperations[0].ExecutionStatus, StatusCompleted)
	eq(t, "completion", d.PendingOperations[0].CompletionTimestamp, t0.Add(2*time.Second))
	eq(t, "version counts events", d.Version, int64(5))
}

func TestDeliveryWithoutConfirmationCompletes(t *testing.T) {
	r := testResource(t, false)
	s := added(t, r)
	s, ev := run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(time.Second))
	eqTypes(t, ev, "OperationSent", "OperationCompleted", "TimerSet")
	eq(t, "lifecycle", s.Lifecycle(), LifecycleLive)
	eq(t, "result", s.Data().PendingOperations[0].ResultStatus, ResultSuccess)
}

func TestModifyAppliesDeltaOnCompletion(t *testing.T) {
	r := testResource(t, true)
	s := live(t, r)
	s, ev := run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{
		"fullName": {Replace: []any{"Jack SPARROW"}},
		"shoeSize": {Delete: []any{42}},
		"group":    {Add: []any{"pirates", "captains"}},
	}}, t0.Add(time.Minute))
	eqTypes(t, ev, "ModifyRequested", "DispatchRequested")
	req := ev[1].(DispatchRequested).Request
	eq(t, "modify carries uid", req.PrimaryIdentifiers["uid"][0], any("u-1"))
	eq(t, "modify carries login", req.SecondaryIdentifiers["login"][0], any("jack"))
	eq(t, "cache untouched while pending", s.Data().Attributes["fullName"][0], any("Jack Sparrow"))
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op2, Attempt: 1}, t0.Add(time.Minute))
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}, t0.Add(2*time.Minute))
	a := s.Data().Attributes
	eq(t, "replace", a["fullName"][0], any("Jack SPARROW"))
	eq(t, "delete removes attribute", len(a["shoeSize"]), 0)
	eq(t, "add", len(a["group"]), 2)

	// A failed modify leaves the cache alone.
	s, _ = run(t, s, Modify{Resource: r, OperationID: op3, Changes: Changes{"fullName": {Replace: []any{}}}}, t0.Add(3*time.Minute))
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op3, Result: ResultFatalError, Message: "no"}, t0.Add(4*time.Minute))
	eq(t, "fatal modify not applied", s.Data().Attributes["fullName"][0], any("Jack SPARROW"))
	eq(t, "still live", s.Lifecycle(), LifecycleLive)
}

func TestModifySecondaryIdentifier(t *testing.T) {
	r := testResource(t, true)
	s := live(t, r)
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"login": {Replace: []any{"jsparrow"}}}}, t0.Add(time.Minute))
	claims := s.Claims()
	var logins []any
	for _, c := range claims {
		if c.Kind == SecondaryIdentifier {
			logins = append(logins, c.Value)
		}
	}
	if len(logins) != 2 {
		t.Fatalf("while the rename is pending both logins are held, got %v", logins)
	}
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}, t0.Add(2*time.Minute))
	eq(t, "secondary follows cache", s.Data().SecondaryIdentifiers["login"][0], any("jsparrow"))
	n := 0
	for _, c := range s.Claims() {
		if c.Kind == SecondaryIdentifier {
			n++
			eq(t, "claim", c.Value, any("jsparrow"))
		}
	}
	eq(t, "one login claimed after rename", n, 1)
}

func TestQueuedBehindAdd(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	s, ev := run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"X"}}}}, t0.Add(time.Second))
	eqTypes(t, ev, "ModifyRequested")
	s, ev = run(t, s, Delete{Resource: r, OperationID: op3}, t0.Add(2*time.Second))
	eqTypes(t, ev, "DeleteRequested")
	eq(t, "queued delete is not reaping yet", s.Lifecycle(), LifecycleProposed)
	eq(t, "modify waits", s.Data().PendingOperations[1].ExecutionStatus, StatusRequested)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(3*time.Second))
	s, ev = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-9"}}}, t0.Add(4*time.Second))
	eqTypes(t, ev, "OperationCompleted", "DispatchRequested", "TimerSet")
	mod := ev[1].(DispatchRequested)
	eq(t, "modify released with uid", mod.Request.PrimaryIdentifiers["uid"][0], any("u-9"))
	eq(t, "modify sequence", mod.Sequence, int64(2))
	eq(t, "modify follows the add", mod.PreviousSequence, int64(1))
	eq(t, "delete waits until the modify is accepted", s.Data().PendingOperations[2].ExecutionStatus, StatusRequested)
	s, ev = run(t, s, RecordDelivery{Resource: r, OperationID: op2, Attempt: 1}, t0.Add(5*time.Second))
	eqTypes(t, ev, "OperationSent", "DispatchRequested")
	del := ev[1].(DispatchRequested)
	eq(t, "delete released", del.OperationID, op3)
	eq(t, "delete sequence", del.Sequence, int64(3))
	eq(t, "delete follows the modify", del.PreviousSequence, int64(2))
	eq(t, "reaping", s.Lifecycle(), LifecycleReaping)

	// The copy-free readers agree with Data.
	var ids []string
	var statuses []ExecutionStatus
	for id, st := range s.OperationStatuses() {
		ids, statuses = append(ids, id), append(statuses, st)
		if !s.HasOperation(id) {
			t.Fatalf("HasOperation(%s) false for an operation the shadow holds", id)
		}
	}
	for i, p := range s.Data().PendingOperations {
		eq(t, "operation id", ids[i], p.ID)
		eq(t, "operation status", statuses[i], p.ExecutionStatus)
	}
	eq(t, "operations yielded", len(ids), 3)
	eq(t, "an unknown operation", s.HasOperation(op4), false)
	for range s.OperationStatuses() {
		break // an early stop must not panic
	}
}

// One operation of a shadow is in flight until the transport accepts it: a re-send after a crash
// can never overtake a newer operation. Sequences number what is released; a retry keeps its
// sequence, and a cancelled operation's number is not reused.
func TestOneInFlightUntilAccepted(t *testing.T) {
	r := testResource(t, false)
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(time.Second))
	eq(t, "add delivered", s.Data().DeliveredSequence, int64(1))
	mods := []string{testID(10), testID(11), testID(12)}
	var ev []Event
	for i, id := range mods {
		s, ev = run(t, s, Modify{Resource: r, OperationID: id, Changes: Changes{"fullName": {Replace: []any{fmt.Sprint(i)}}}}, t0.Add(2*time.Second))
		if i == 0 {
			eqTypes(t, ev, "ModifyRequested", "DispatchRequested")
			eq(t, "first modify seq", ev[1].(DispatchRequested).Sequence, int64(2))
		} else {
			eqTypes(t, ev, "ModifyRequested")
		}
	}
	// The first modify fails (broker down): it is postponed for retry and keeps everything queued.
	s, ev = run(t, s, RecordFailure{Resource: r, OperationID: mods[0], Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "down"}}, t0.Add(3*time.Second))
	eqTypes(t, ev, "AttemptFailed", "TimerSet")
	s, ev = run(t, s, Refresh{Resource: r, ForceRetry: true}, t0.Add(4*time.Second))
	eqTypes(t, ev, "DispatchRequested", "TimerSet")
	eq(t, "retry keeps its sequence", ev[0].(DispatchRequested).Sequence, int64(2))
	eq(t, "retry follows the add", ev[0].(DispatchRequested).PreviousSequence, int64(1))
	s, ev = run(t, s, RecordDelivery{Resource: r, OperationID: mods[0], Attempt: 2}, t0.Add(5*time.Second))
	eqTypes(t, ev, "OperationSent", "OperationCompleted", "DispatchRequested")
	eq(t, "second modify seq", ev[2].(DispatchRequested).Sequence, int64(3))
	eq(t, "second modify prev", ev[2].(DispatchRequested).PreviousSequence, int64(2))
	// Not accepted; cancelled after a failure: its number is not given again.
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: mods[1], Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "down"}}, t0.Add(6*time.Second))
	s, ev = run(t, s, Cancel{Resource: r, OperationID: mods[1]}, t0.Add(7*time.Second))
	eqTypes(t, ev, "OperationCompleted", "DispatchRequested", "TimerSet")
	third := ev[1].(DispatchRequested)
	eq(t, "third modify seq", third.Sequence, int64(4))
	eq(t, "third modify prev: the last accepted", third.PreviousSequence, int64(2))
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: mods[2], Attempt: 1}, t0.Add(8*time.Second))
	eq(t, "cache", s.Data().Attributes["fullName"][0], any("2"))
}

// A confirmation that arrives before the delivery is recorded (the instance that sent it died,
// or the target answered faster than the outcome was stored) still counts as delivered: the
// next request follows it, so the target never waits for a sequence that was skipped.
func TestConfirmationBeforeDeliveryMovesTheOrderOn(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(time.Second))
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}}, t0.Add(2*time.Second))
	s, ev := run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"A"}}}}, t0.Add(3*time.Second))
	eqTypes(t, ev, "ModifyRequested", "DispatchRequested")
	eq(t, "first modify seq", ev[1].(DispatchRequested).Sequence, int64(2))
	s, ev = run(t, s, Modify{Resource: r, OperationID: op3, Changes: Changes{"fullName": {Replace: []any{"B"}}}}, t0.Add(4*time.Second))
	eqTypes(t, ev, "ModifyRequested")
	// The first modify is confirmed; its delivery was never recorded.
	s, ev = run(t, s, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}, t0.Add(5*time.Second))
	eqTypes(t, ev, "OperationCompleted", "DispatchRequested")
	second := ev[1].(DispatchRequested)
	eq(t, "second modify seq", second.Sequence, int64(3))
	eq(t, "second modify follows the confirmed one", second.PreviousSequence, int64(2))
	eq(t, "delivered", s.Data().DeliveredSequence, int64(2))
}

// A target that confirms out of order still leaves the cache as the modifies' order says.
func TestCacheFollowsOperationOrder(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0)
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}}, t0)
	a, b := testID(20), testID(21)
	s, _ = run(t, s, Modify{Resource: r, OperationID: a, Changes: Changes{"fullName": {Replace: []any{"old"}}, "mail": {Add: []any{"x@y"}}}}, t0)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: a, Attempt: 1}, t0)
	s, _ = run(t, s, Modify{Resource: r, OperationID: b, Changes: Changes{"fullName": {Replace: []any{"new"}}}}, t0)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: b, Attempt: 1}, t0)
	s, _ = run(t, s, Confirm{Resource: r, OperationID: b, Result: ResultSuccess}, t0)
	s, _ = run(t, s, Confirm{Resource: r, OperationID: a, Result: ResultSuccess}, t0)
	eq(t, "newest modify wins", s.Data().Attributes["fullName"][0], any("new"))
	eq(t, "older modify's other change kept", s.Data().Attributes["mail"][0], any("x@y"))
}

func TestFailedAddKillsShadowAndCascades(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"X"}}}}, t0)
	s, ev := run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultFatalError, Message: "already exists"}, t0.Add(time.Second))
	eqTypes(t, ev, "OperationCompleted", "OperationCompleted", "TimerSet")
	d := s.Data()
	eq(t, "dead", d.Dead, true)
	eq(t, "tombstone", d.LifecycleState, LifecycleTombstone)
	eq(t, "death", d.DeathTimestamp, t0.Add(time.Second))
	eq(t, "queued modify not applicable", d.PendingOperations[1].ResultStatus, ResultNotApplicable)
	eq(t, "dead holds no claims", len(s.Claims()), 0)
}

func TestDeleteKills(t *testing.T) {
	r := testResource(t, false)
	s := live(t, r)
	s, ev := run(t, s, Delete{Resource: r, OperationID: op2}, t0.Add(time.Minute))
	eqTypes(t, ev, "DeleteRequested", "DispatchRequested")
	eq(t, "reaping", s.Lifecycle(), LifecycleReaping)
	eq(t, "delete request has identifiers only", ev[1].(DispatchRequested).Request.Attributes == nil, true)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op2, Attempt: 1}, t0.Add(2*time.Minute))
	d := s.Data()
	eq(t, "dead", d.Dead, true)
	eq(t, "not exists", d.Exists, false)
	eq(t, "tombstone", d.LifecycleState, LifecycleTombstone)
}

func TestCommunicationFailureRetries(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"b"}}}}, t0)
	boom := OperationError{Category: CategoryCommunication, Message: "connection refused"}
	s, ev := run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: boom}, t0.Add(time.Second))
	eqTypes(t, ev, "AttemptFailed", "TimerSet")
	eq(t, "timer at last attempt + retry period", ev[1].(TimerSet).At, t0.Add(time.Second+30*time.Minute))
	p, _ := s.Operation(op1)
	eq(t, "type retry", p.Type, TypeRetry)
	eq(t, "executing", p.ExecutionStatus, StatusExecuting)
	eq(t, "attempts", p.AttemptNumber, 1)
	eq(t, "last error", p.LastError.Message, "connection refused")
	eq(t, "conceived", s.Lifecycle(), LifecycleConceived)

	// Not due yet: nothing to do.
	ev, err := Decide(s, Refresh{Resource: r}, t0.Add(time.Minute))
	if err != nil || len(ev) != 0 {
		t.Fatalf("refresh before the retry period: %v %v", types(ev), err)
	}
	// Due: retried; nothing waits for a retry while the attempt is under way.
	s, ev = run(t, s, Refresh{Resource: r}, t0.Add(31*time.Minute))
	eqTypes(t, ev, "DispatchRequested", "TimerCleared")
	eq(t, "attempt 2", ev[0].(DispatchRequested).Attempt, 2)
	s, ev = run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 2, Error: boom}, t0.Add(32*time.Minute))
	eqTypes(t, ev, "AttemptFailed", "TimerSet")
	eq(t, "re-armed from the new attempt", ev[1].(TimerSet).At, t0.Add(62*time.Minute))
	// Forced: retried although not due.
	s, ev = run(t, s, Refresh{Resource: r, ForceRetry: true}, t0.Add(33*time.Minute))
	eqTypes(t, ev, "DispatchRequested", "TimerCleared")
	s, ev = run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 3, Error: boom}, t0.Add(34*time.Minute))
	eqTypes(t, ev, "AttemptFailed", "OperationCompleted", "OperationCompleted", "TimerSet")
	p, _ = s.Operation(op1)
	eq(t, "gave up", p.ResultStatus, ResultFatalError)
	eq(t, "dead after failed add", s.Dead(), true)
}

func TestRetryDisabled(t *testing.T) {
	r := testResource(t, true, func(c *Consistency) { c.OperationRetryMaxAttempts = 0 })
	s := added(t, r)
	_, ev := run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "down"}}, t0)
	eqTypes(t, ev, "AttemptFailed", "OperationCompleted", "TimerSet")
}

func TestRetrySuccessReleasesQueue(t *testing.T) {
	r := testResource(t, false)
	s := live(t, r)
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"1"}}}}, t0)
	s, ev := run(t, s, RecordFailure{Resource: r, OperationID: op2, Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "down"}}, t0)
	eqTypes(t, ev, "AttemptFailed", "TimerSet")
	s, ev = run(t, s, Modify{Resource: r, OperationID: op3, Changes: Changes{"a": {Add: []any{"2"}}}}, t0)
	eqTypes(t, ev, "ModifyRequested") // waits behind the failing retry
	s, ev = run(t, s, Refresh{Resource: r, ForceRetry: true}, t0.Add(time.Second))
	eqTypes(t, ev, "DispatchRequested", "TimerSet") // back to the completed add's retention
	s, ev = run(t, s, RecordDelivery{Resource: r, OperationID: op2, Attempt: 2}, t0.Add(2*time.Second))
	eqTypes(t, ev, "OperationSent", "OperationCompleted", "DispatchRequested")
	eq(t, "released", ev[2].(DispatchRequested).OperationID, op3)
	p, _ := s.Operation(op2)
	eq(t, "attempts", p.AttemptNumber, 2)
	eq(t, "error cleared", p.LastError == nil, true)
}

func TestNonCommunicationFailureIsFatal(t *testing.T) {
	r := testResource(t, true)
	s := live(t, r)
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"b"}}}}, t0)
	s, ev := run(t, s, RecordFailure{Resource: r, OperationID: op2, Attempt: 1, Error: OperationError{Category: CategorySecurity, Message: "not authorized"}}, t0)
	eqTypes(t, ev, "AttemptFailed", "OperationCompleted", "TimerSet")
	p, _ := s.Operation(op2)
	eq(t, "fatal", p.ResultStatus, ResultFatalError)
	eq(t, "category kept", p.LastError.Category, CategorySecurity)
}

func TestDispatcherReportsAreIdempotent(t *testing.T) {
	r := testResource(t, true)
	s := live(t, r)
	for _, cmd := range []Command{
		RecordDelivery{Resource: r, OperationID: op1, Attempt: 1},
		RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: OperationError{Category: CategoryCommunication}},
	} {
		ev, err := Decide(s, cmd, t0)
		if err != nil || len(ev) != 0 {
			t.Errorf("%T replay: events %v err %v, want none", cmd, types(ev), err)
		}
	}
	// Confirmation raced ahead of the delivery report: the attempt is still recorded, once.
	s = added(t, r)
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, t0)
	s, ev := run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1, Reference: op1}, t0.Add(time.Second))
	eqTypes(t, ev, "OperationSent")
	p, _ := s.Operation(op1)
	eq(t, "still completed", p.ExecutionStatus, StatusCompleted)
	eq(t, "attempt recorded", p.AttemptNumber, 1)
	eq(t, "reference recorded", p.AsynchronousOperationReference, op1)
	eq(t, "result kept", p.ResultStatus, ResultSuccess)
	if ev, err := Decide(s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0); err != nil || len(ev) != 0 {
		t.Errorf("second late report: %v %v", types(ev), err)
	}
}

func TestRejections(t *testing.T) {
	r := testResource(t, true)
	other, _ := NewResource("other", []ObjectClass{{Name: acct, SecondaryIdentifier: "login"}}, DefaultConsistency(), false)
	fresh := Shadow{}
	pending := added(t, r)
	lv := live(t, r)
	dead := Fold(lv, mustDecide(t, lv, Delete{Resource: r, OperationID: op2}))
	dead = Fold(dead, mustDecide(t, dead, RecordDelivery{Resource: r, OperationID: op2, Attempt: 1}))
	dead = Fold(dead, mustDecide(t, dead, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}))
	deleting := Fold(lv, mustDecide(t, lv, Delete{Resource: r, OperationID: op3}))
	add := func(f func(*Add)) Add {
		a := Add{Resource: r, ShadowID: sid, OperationID: op1, ObjectClass: acct, Attributes: Attributes{"login": {"x"}}}
		f(&a)
		return a
	}
	tests := []struct {
		name  string
		s     Shadow
		cmd   Command
		want  error
		categ Category
	}{
		{"unknown resource", fresh, add(func(a *Add) { a.Resource = Resource{} }), ErrUnknownResource, CategorySchema},
		{"bad shadow id", fresh, add(func(a *Add) { a.ShadowID = "x" }), ErrInvalidID, CategorySchema},
		{"unknown object class", fresh, add(func(a *Add) { a.ObjectClass = "Group" }), ErrUnknownObjectClass, CategorySchema},
		{"missing object class", fresh, add(func(a *Add) { a.ObjectClass = "" }), ErrMissingObjectClass, CategorySchema},
		{"no attributes", fresh, add(func(a *Add) { a.Attributes = nil }), ErrNoAttributes, CategorySchema},
		{"missing secondary identifier", fresh, add(func(a *Add) { a.Attributes = Attributes{"fullName": {"x"}} }), ErrMissingIdentifier, CategorySchema},
		{"two logins", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {"a", "b"}} }), ErrMissingIdentifier, CategorySchema},
		{"bad value type", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {"a"}, "x": {[]int{1}}} }), ErrInvalidValue, CategorySchema},
		{"null value", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {"a"}, "x": {nil}} }), ErrInvalidValue, CategorySchema},
		{"add twice", pending, add(func(*Add) {}), ErrShadowExists, CategoryAlreadyExists},
		{"modify unknown shadow", fresh, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"b"}}}}, ErrShadowNotFound, CategoryNotFound},
		{"modify empty changes", lv, Modify{Resource: r, OperationID: op2}, ErrEmptyChanges, CategorySchema},
		{"modify no values", lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {}}}, ErrInvalidChange, CategorySchema},
		{"modify replace+add", lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"x"}, Replace: []any{"y"}}}}, ErrInvalidChange, CategorySchema},
		{"modify clears login", lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"login": {Replace: []any{}}}}, ErrMissingIdentifier, CategorySchema},
		{"modify primary id", lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"uid": {Replace: []any{"u-2"}}}}, ErrIdentifierImmutable, CategorySchema},
		{"modify dead", dead, Modify{Resource: r, OperationID: op4, Changes: Changes{"a": {Add: []any{"b"}}}}, ErrShadowDead, CategoryConflict},
		{"modify while deleting", deleting, Modify{Resource: r, OperationID: op4, Changes: Changes{"a": {Add: []any{"b"}}}}, ErrDeletePending, CategoryConflict},
		{"modify bad op id", lv, Modify{Resource: r, OperationID: "nope", Changes: Changes{"a": {Add: []any{"b"}}}}, ErrInvalidID, CategorySchema},
		{"modify other resource", lv, Modify{Resource: other, OperationID: op2, Changes: Changes{"a": {Add: []any{"b"}}}}, ErrShadowNotFound, CategoryNotFound},
		{"delete unknown", fresh, Delete{Resource: r, OperationID: op2}, ErrShadowNotFound, CategoryNotFound},
		{"delete dead", dead, Delete{Resource: r, OperationID: op4}, ErrShadowDead, CategoryConflict},
		{"delete twice", deleting, Delete{Resource: r, OperationID: op4}, ErrDeletePending, CategoryConflict},
		{"confirm unknown op", lv, Confirm{Resource: r, OperationID: op4, Result: ResultSuccess}, ErrOperationNotFound, CategoryNotFound},
		{"confirm finished op", lv, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, ErrOperationFinished, CategoryConflict},
		{"confirm in_progress", pending, Confirm{Resource: r, OperationID: op1, Result: ResultInProgress}, ErrInvalidResult, CategorySchema},
		{"confirm bogus result", pending, Confirm{Resource: r, OperationID: op1, Result: "great"}, ErrInvalidResult, CategorySchema},
		{"refresh unknown", fresh, Refresh{Resource: r}, ErrShadowNotFound, CategoryNotFound},
		{"delivery unknown op", lv, RecordDelivery{Resource: r, OperationID: op4, Attempt: 1}, ErrOperationNotFound, CategoryNotFound},
		{"delivery skipping attempts", pending, RecordDelivery{Resource: r, OperationID: op1, Attempt: 3}, ErrAttemptOutOfSequence, CategoryConflict},
		{"nil command", fresh, nil, ErrInvalidCommand, CategorySchema},
		// Limits and values that cannot be kept as asked.
		{"blank login", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {"  "}} }), ErrInvalidValue, CategorySchema},
		{"empty login", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {""}} }), ErrInvalidValue, CategorySchema},
		{"login with a newline", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {"bob\n"}} }), ErrInvalidValue, CategorySchema},
		{"attribute without values", fresh, add(func(a *Add) { a.Attributes = Attributes{"login": {"x"}, "mail": {}} }), ErrInvalidValue, CategorySchema},
		{"too many attributes", fresh, add(func(a *Add) {
			for i := range MaxAttributes {
				a.Attributes[fmt.Sprint("a", i)] = []any{"v"}
			}
		}), ErrLimit, CategorySchema},
		{"too many values", fresh, add(func(a *Add) { a.Attributes["many"] = make([]any, MaxValues+1) }), ErrLimit, CategorySchema},
		{"value too long", fresh, add(func(a *Add) { a.Attributes["big"] = []any{strings.Repeat("x", MaxValueBytes+1)} }), ErrLimit, CategorySchema},
		{"name too long", fresh, add(func(a *Add) { a.Attributes[strings.Repeat("n", MaxNameBytes+1)] = []any{"v"} }), ErrLimit, CategorySchema},
		{"name with a tab", fresh, add(func(a *Add) { a.Attributes["a\tb"] = []any{"v"} }), ErrInvalidValue, CategorySchema},
		{"request id too long", fresh, add(func(a *Add) { a.RequestID = strings.Repeat("r", MaxRequestIDBytes+1) }), ErrLimit, CategorySchema},
		{"request id with control characters", fresh, add(func(a *Add) { a.RequestID = "r\x00" }), ErrInvalidCommand, CategorySchema},
		{"modify request id too long", lv, Modify{Resource: r, OperationID: op2, RequestID: strings.Repeat("r", MaxRequestIDBytes+1), Changes: Changes{"a": {Add: []any{"b"}}}}, ErrLimit, CategorySchema},
		{"delete request id too long", lv, Delete{Resource: r, OperationID: op2, RequestID: strings.Repeat("r", MaxRequestIDBytes+1)}, ErrLimit, CategorySchema},
		{"modify login to blank", lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"login": {Replace: []any{""}}}}, ErrInvalidValue, CategorySchema},
		{"modify too many values", lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: make([]any, MaxValues+1)}}}, ErrLimit, CategorySchema},
		{"confirm blank primary identifier", pending, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {" "}}}, ErrInvalidValue, CategorySchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decide(tc.s, tc.cmd, t0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !errors.Is(err, tc.categ) {
				t.Errorf("err %v is not in category %s", err, tc.categ)
			}
			if ev != nil {
				t.Errorf("events on error: %v", types(ev))
			}
		})
	}
}

func mustDecide(t *testing.T, s Shadow, c Command) []Event {
	t.Helper()
	ev, err := Decide(s, c, t0)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestEvolveDoesNotMutateInput(t *testing.T) {
	r := testResource(t, true)
	s := live(t, r)
	before := s.Data()
	ev := mustDecide(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"Y"}}}})
	after := Fold(s, ev)
	after = Fold(after, mustDecide(t, after, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}))
	if got := s.Data(); got.Version != before.Version || len(got.PendingOperations) != 1 || got.Attributes["fullName"][0] != "Jack Sparrow" {
		t.Fatalf("input shadow changed: %+v", got)
	}
	if after.Data().Attributes["fullName"][0] != "Y" {
		t.Fatal("evolved state lost the change")
	}
}

// TestFoldAgreesWithEvolve: Fold copies the shadow once for all its events and applies them in
// place; the result must be what Evolve, copying at every event, gives, and the input must stay
// as it was, over a lifecycle with every kind of decision.
func TestFoldAgreesWithEvolve(t *testing.T) {
	r := testResource(t, true)
	s := Shadow{}
	steps := []Command{
		Add{Resource: r, ShadowID: sid, OperationID: op1, RequestID: "r1", ObjectClass: acct, Attributes: Attributes{"login": {"jack"}, "shoeSize": {42}}},
		RecordDelivery{Resource: r, OperationID: op1, Attempt: 1, Reference: op1},
		Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}},
		Modify{Resource: r, OperationID: op2, Changes: Changes{"login": {Replace: []any{"jacky"}}, "shoeSize": {Add: []any{43}}}},
		RecordFailure{Resource: r, OperationID: op2, Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "down"}},
		Delete{Resource: r, OperationID: testID(3)},
	}
	for i, cmd := range steps {
		at := t0.Add(time.Duration(i) * time.Minute)
		ev, err := Decide(s, cmd, at)
		if err != nil {
			t.Fatalf("step %d %T: %v", i, cmd, err)
		}
		before := s.Data()
		chained := s
		for _, e := range ev {
			chained = Evolve(chained, e)
		}
		folded := Fold(s, ev)
		if !reflect.DeepEqual(folded.Data(), chained.Data()) {
			t.Fatalf("step %d %T: Fold\n%+v\nEvolve chain\n%+v", i, cmd, folded.Data(), chained.Data())
		}
		if !reflect.DeepEqual(s.Data(), before) {
			t.Fatalf("step %d %T: Fold changed its input", i, cmd)
		}
		s = folded
	}
	if op, ok := s.Operation(testID(3)); !ok || op.Delta.ChangeType != ChangeDelete {
		t.Fatalf("the delete is not pending: %+v", s.Data().PendingOperations)
	}
}

func TestNewResourceReportsEveryProblem(t *testing.T) {
	c := DefaultConsistency()
	c.OperationRetryMaxAttempts = -1
	_, err := NewResource("bad name", []ObjectClass{{Name: "", SecondaryIdentifier: ""}, {Name: "A", SecondaryIdentifier: "x", PrimaryIdentifier: "x"}}, c, false)
	if !errors.Is(err, ErrInvalidResource) || !errors.Is(err, CategoryConfiguration) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"bad name", "name is required", "secondaryIdentifier is required", "must differ", "operationRetryMaxAttempts"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := NewResource("r", nil, DefaultConsistency(), false); err == nil {
		t.Error("resource without object classes accepted")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	c := DefaultConsistency()
	eq(t, "retry period", c.OperationRetryPeriod, 30*time.Minute)
	eq(t, "max attempts", c.OperationRetryMaxAttempts, 3)
	eq(t, "grace", c.PendingOperationGracePeriod, time.Duration(0))
	eq(t, "retention", c.PendingOperationRetentionPeriod, 24*time.Hour)
	eq(t, "dead retention", c.DeadShadowRetentionPeriod, 168*time.Hour)
	eq(t, "retry on recovery", c.RetryOnRecovery, true)
}

func TestApplyChangesTable(t *testing.T) {
	base := Attributes{"a": {"1", "2"}, "b": {true}}
	tests := []struct {
		name string
		ch   Changes
		want Attributes
	}{
		{"add new value", Changes{"a": {Add: []any{"3"}}}, Attributes{"a": {"1", "2", "3"}, "b": {true}}},
		{"add existing is no-op", Changes{"a": {Add: []any{"1"}}}, Attributes{"a": {"1", "2"}, "b": {true}}},
		{"delete one", Changes{"a": {Delete: []any{"1"}}}, Attributes{"a": {"2"}, "b": {true}}},
		{"delete missing is no-op", Changes{"a": {Delete: []any{"9"}}}, Attributes{"a": {"1", "2"}, "b": {true}}},
		{"replace", Changes{"a": {Replace: []any{"x"}}}, Attributes{"a": {"x"}, "b": {true}}},
		{"replace empty removes", Changes{"b": {Replace: []any{}}}, Attributes{"a": {"1", "2"}}},
		{"new attribute", Changes{"c": {Add: []any{1.5}}}, Attributes{"a": {"1", "2"}, "b": {true}, "c": {1.5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := applyChanges(base, tc.ch)
			if !sameAttributes(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if len(base["a"]) != 2 {
				t.Fatal("input mutated")
			}
		})
	}
}

func TestValidators(t *testing.T) {
	for s, want := range map[string]bool{"demo": true, "a_b-C9": true, "": false, "a.b": false, "a b": false, "ä": false, "*": false} {
		if ValidToken(s) != want {
			t.Errorf("ValidToken(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{sid: true, "11111111-1111-4111-8111-11111111111": false, "11111111-1111-4111-8111-11111111111G": false,
		"11111111-1111-4111-8111-11111111111A": false, "111111111-111-4111-8111-111111111111": false, "": false} {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}

func TestAvailability(t *testing.T) {
	r := ResourceState{}
	eq(t, "never reported is up", r.Availability(), AvailabilityUp)
	ev, err := DecideAvailability(r, "demo", AvailabilityUp, "", t0)
	if err != nil || len(ev) != 0 {
		t.Fatalf("up while up: %v %v", ev, err)
	}
	for i, st := range []Availability{AvailabilityDown, AvailabilityUp, AvailabilityBroken, AvailabilityDown, AvailabilityUp, AvailabilityDown, AvailabilityUp} {
		ev, err := DecideAvailability(r, "demo", st, fmt.Sprint("reason ", i), t0.Add(time.Duration(i)*time.Second))
		if err != nil || len(ev) != 1 {
			t.Fatalf("change %d to %s: %v %v", i, st, ev, err)
		}
		r = EvolveResource(r, ev[0])
		ev, _ = DecideAvailability(r, "demo", st, "again", t0)
		eq(t, "a repeated report changes nothing", len(ev), 0)
	}
	d := r.Data()
	eq(t, "history keeps the last 5", len(d.Changes), AvailabilityHistory)
	eq(t, "oldest kept", d.Changes[0].Reason, "reason 2")
	eq(t, "current", d.Availability, AvailabilityUp)
	if _, err := DecideAvailability(r, "demo", "sideways", "", t0); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("bad status: %v", err)
	}
}

func TestNextRetry(t *testing.T) {
	r := testResource(t, true, func(c *Consistency) { c.OperationRetryPeriod = time.Minute; c.OperationRetryMaxAttempts = 2 })
	s := live(t, r)
	if _, ok := NextRetry(s, r.Consistency()); ok {
		t.Fatal("a live shadow has no retry")
	}
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"1"}}}}, t0)
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: op2, Attempt: 1, Error: OperationError{Category: CategoryCommunication}}, t0.Add(time.Second))
	at, ok := NextRetry(s, r.Consistency())
	eq(t, "due after the period", at, t0.Add(time.Second+time.Minute))
	eq(t, "armed", ok, true)
	s, _ = run(t, s, Refresh{Resource: r}, at)
	s, ev := run(t, s, RecordFailure{Resource: r, OperationID: op2, Attempt: 2, Error: OperationError{Category: CategoryCommunication}}, at)
	eqTypes(t, ev, "AttemptFailed", "OperationCompleted") // out of attempts: ends at once
	if _, ok := NextRetry(s, r.Consistency()); ok {
		t.Fatal("no retry after the last attempt")
	}
}

func TestGraceRetentionAndExpiry(t *testing.T) {
	r := testResource(t, true, func(c *Consistency) {
		c.PendingOperationGracePeriod = time.Minute
		c.PendingOperationRetentionPeriod = 10 * time.Minute
		c.DeadShadowRetentionPeriod = time.Hour
	})
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(time.Second))
	s, ev := run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, t0.Add(2*time.Second))
	done := t0.Add(2 * time.Second)
	eqTypes(t, ev, "OperationCompleted", "TimerSet")
	eq(t, "timer at the end of grace", ev[1].(TimerSet).At, done.Add(time.Minute))
	eq(t, "gestating inside grace", s.Lifecycle(), LifecycleGestating)
	// Not due yet: nothing.
	if ev, err := Decide(s, Refresh{Resource: r}, done.Add(30*time.Second)); err != nil || len(ev) != 0 {
		t.Fatalf("refresh inside grace: %v %v", types(ev), err)
	}
	s, ev = run(t, s, Refresh{Resource: r}, done.Add(time.Minute))
	eqTypes(t, ev, "GracePeriodEnded", "TimerSet")
	eq(t, "live after grace", s.Lifecycle(), LifecycleLive)
	eq(t, "retention timer", ev[1].(TimerSet).At, done.Add(10*time.Minute))
	s, ev = run(t, s, Refresh{Resource: r}, done.Add(10*time.Minute))
	eqTypes(t, ev, "OperationRemoved", "TimerCleared")
	eq(t, "completed add left the shadow", len(s.Data().PendingOperations), 0)
	eq(t, "still live", s.Lifecycle(), LifecycleLive)

	// Delete: corpse inside grace, tombstone after, expired after the dead-shadow retention.
	at := done.Add(20 * time.Minute)
	s, _ = run(t, s, Delete{Resource: r, OperationID: op2}, at)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op2, Attempt: 1}, at)
	s, ev = run(t, s, Confirm{Resource: r, OperationID: op2, Result: ResultSuccess}, at)
	eq(t, "corpse inside grace", s.Lifecycle(), LifecycleCorpse)
	eq(t, "dead", s.Dead(), true)
	s, _ = run(t, s, Refresh{Resource: r}, at.Add(time.Minute))
	eq(t, "tombstone after grace", s.Lifecycle(), LifecycleTombstone)
	last := LastActivity(s)
	eq(t, "last activity is the completion", last, at)
	next, ok := NextDue(s, r.Consistency())
	eq(t, "next: retention of the delete", next, at.Add(10*time.Minute))
	eq(t, "armed", ok, true)
	s, _ = run(t, s, Refresh{Resource: r}, at.Add(10*time.Minute))
	next, _ = NextDue(s, r.Consistency())
	eq(t, "then expiry", next, at.Add(time.Hour))
	s, ev = run(t, s, Refresh{Resource: r}, at.Add(time.Hour))
	eqTypes(t, ev, "ShadowExpired", "TimerCleared")
	eq(t, "expired", s.Data().Expired, true)
	if _, ok := NextDue(s, r.Consistency()); ok {
		t.Fatal("an expired shadow has nothing due")
	}
}

func TestNoGraceMeansLiveAtOnce(t *testing.T) {
	r := testResource(t, false)
	s := live(t, r)
	eq(t, "live", s.Lifecycle(), LifecycleLive)
	p, _ := s.Operation(op1)
	eq(t, "no grace recorded", p.GracePeriodEnd.IsZero(), true)
}

func TestAvoidDuplicateOperations(t *testing.T) {
	ch := Changes{"fullName": {Replace: []any{"X"}}}
	for _, avoid := range []bool{false, true} {
		r := testResource(t, true, func(c *Consistency) { c.AvoidDuplicateOperations = avoid })
		s := live(t, r)
		s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: ch}, t0)
		ev, err := Decide(s, Modify{Resource: r, OperationID: op3, Changes: ch}, t0)
		if err != nil || (len(ev) == 0) != avoid {
			t.Fatalf("avoid=%v: same modify again: %v %v", avoid, types(ev), err)
		}
		if ev, _ := Decide(s, Modify{Resource: r, OperationID: op3, Changes: Changes{"fullName": {Replace: []any{"Y"}}}}, t0); len(ev) == 0 {
			t.Fatalf("avoid=%v: a different modify was dropped", avoid)
		}
		s, _ = run(t, s, Delete{Resource: r, OperationID: op4}, t0)
		ev, err = Decide(s, Delete{Resource: r, OperationID: "33333333-3333-4333-8333-333333333333"}, t0)
		if avoid && (err != nil || len(ev) != 0) {
			t.Fatalf("second delete with avoidDuplicateOperations: %v %v", types(ev), err)
		}
		if !avoid && !errors.Is(err, ErrDeletePending) {
			t.Fatalf("second delete: %v", err)
		}
	}
}

func TestCancel(t *testing.T) {
	r := testResource(t, true)
	s := live(t, r)
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"1"}}}}, t0)
	if _, err := Decide(s, Cancel{Resource: r, OperationID: op2}, t0); !errors.Is(err, ErrNotCancellable) {
		t.Fatalf("cancel of an operation released to the target: %v", err)
	}
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: op2, Attempt: 1, Error: OperationError{Category: CategoryCommunication}}, t0)
	s, ev := run(t, s, Cancel{Resource: r, OperationID: op2}, t0.Add(time.Second))
	eqTypes(t, ev, "OperationCompleted", "TimerSet")
	p, _ := s.Operation(op2)
	eq(t, "not applicable", p.ResultStatus, ResultNotApplicable)
	eq(t, "cache untouched", len(s.Data().Attributes["a"]), 0)
	eq(t, "a cancelled modify leaves the shadow alive", s.Dead(), false)
	if _, err := Decide(s, Cancel{Resource: r, OperationID: op2}, t0); !errors.Is(err, ErrOperationFinished) {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := Decide(s, Cancel{Resource: r, OperationID: op4}, t0); !errors.Is(err, ErrOperationNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	r := testResource(t, true)
	const found = "44444444-4444-4444-8444-444444444444"
	// add -> already exists: this shadow dies, the account is discovered as another shadow.
	s := added(t, r)
	s, ev := run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultFatalError, ErrorCategory: CategoryAlreadyExists,
		Attributes: Attributes{"login": {"jack"}, "fullName": {"Jack (existing)"}}, PrimaryIdentifiers: Attributes{"uid": {"u-old"}},
		DiscoveredShadowID: found}, t0)
	eqTypes(t, ev, "OperationCompleted", "AccountDiscovered", "TimerSet")
	eq(t, "new shadow dead", s.Dead(), true)
	p, _ := s.Operation(op1)
	eq(t, "handled", p.ResultStatus, ResultHandledError)
	disc := ev[1].(AccountDiscovered)
	d, ev := run(t, Shadow{}, Discover{Resource: r, ShadowID: disc.ShadowID, ObjectClass: acct, Attributes: disc.Attributes,
		PrimaryIdentifiers: disc.PrimaryIdentifiers, Cause: disc.OperationID}, t0)
	eqTypes(t, ev, "ShadowDiscovered")
	eq(t, "discovered shadow live", d.Lifecycle(), LifecycleLive)
	eq(t, "with the answer's attributes", d.Data().Attributes["fullName"][0], any("Jack (existing)"))
	eq(t, "and its uid", d.Data().PrimaryIdentifiers["uid"][0], any("u-old"))
	eq(t, "holding the login", len(d.Claims()), 2)
	if _, err := Decide(s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, t0); !errors.Is(err, ErrOperationFinished) {
		t.Fatal("confirm after discovery")
	}

	// delete -> not found: already done.
	lv := live(t, r)
	lv, _ = run(t, lv, Delete{Resource: r, OperationID: op2}, t0)
	lv, _ = run(t, lv, Confirm{Resource: r, OperationID: op2, Result: ResultFatalError, ErrorCategory: CategoryNotFound}, t0)
	p, _ = lv.Operation(op2)
	eq(t, "delete not found is handled", p.ResultStatus, ResultHandledError)
	eq(t, "dead", lv.Dead(), true)

	// modify -> not found, not assigned: the account is gone.
	lv = live(t, r)
	lv, _ = run(t, lv, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"X"}}}}, t0)
	lv, ev = run(t, lv, Confirm{Resource: r, OperationID: op2, Result: ResultFatalError, ErrorCategory: CategoryNotFound}, t0)
	eqTypes(t, ev, "OperationCompleted", "AccountGone", "TimerSet")
	eq(t, "gone", lv.Dead(), true)

	// modify -> not found, assigned: re-created with the modify applied.
	as, _ := run(t, Shadow{}, Add{Resource: r, ShadowID: sid, OperationID: op1, ObjectClass: acct, Assigned: true,
		Attributes: Attributes{"login": {"jack"}, "fullName": {"Jack"}}}, t0)
	as, _ = run(t, as, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess, PrimaryIdentifiers: Attributes{"uid": {"u-1"}}}, t0)
	as, _ = run(t, as, Modify{Resource: r, OperationID: op2, Changes: Changes{"fullName": {Replace: []any{"X"}}}}, t0)
	as, ev = run(t, as, Confirm{Resource: r, OperationID: op2, Result: ResultFatalError, ErrorCategory: CategoryNotFound}, t0)
	eqTypes(t, ev, "OperationCompleted", "RecreateRequested", "DispatchRequested") // next due unchanged: no TimerSet
	dr := ev[2].(DispatchRequested)
	eq(t, "re-create is an add", dr.Request.Operation, ChangeAdd)
	eq(t, "with the modify applied", dr.Request.Attributes["fullName"][0], any("X"))
	eq(t, "deterministic id", dr.OperationID, OperationID(op2, "recreate"))
	eq(t, "conceived again", as.Lifecycle(), LifecycleProposed)
	eq(t, "not dead", as.Dead(), false)
}

func TestMaintenance(t *testing.T) {
	r := testResource(t, false)
	m := r.WithMaintenance(true)
	eq(t, "maintenance is a copy", r.InMaintenance(), false)

	// An add in maintenance is recorded but not released: nothing reaches the target.
	s, ev := run(t, Shadow{}, Add{Resource: m, ShadowID: sid, OperationID: op1, ObjectClass: acct,
		Attributes: Attributes{"login": {"jack"}}}, t0)
	eqTypes(t, ev, "AddRequested")
	p, _ := s.Operation(op1)
	eq(t, "requested", p.ExecutionStatus, StatusRequested)
	eq(t, "no attempt", p.AttemptNumber, 0)
	eq(t, "proposed", s.Lifecycle(), LifecycleProposed)
	// A modify queues behind it; refreshes (even forced) release nothing while maintenance lasts.
	s, ev = run(t, s, Modify{Resource: m, OperationID: op2, Changes: Changes{"a": {Add: []any{"b"}}}}, t0)
	eqTypes(t, ev, "ModifyRequested")
	for _, force := range []bool{false, true} {
		ev, err := Decide(s, Refresh{Resource: m, ForceRetry: force}, t0.Add(time.Hour))
		if err != nil || len(ev) != 0 {
			t.Fatalf("refresh in maintenance (force %v): %v %v", force, types(ev), err)
		}
	}
	// Maintenance over: a refresh releases the add, which still blocks the modify.
	s, ev = run(t, s, Refresh{Resource: r}, t0.Add(time.Hour))
	eqTypes(t, ev, "DispatchRequested")
	eq(t, "first attempt", ev[0].(DispatchRequested).Attempt, 1)
	eq(t, "the add goes first", ev[0].(DispatchRequested).OperationID, op1)

	// The dispatcher finds the resource in maintenance after the release: the attempt is held
	// back, uncounted, and the operation waits again.
	s, ev = run(t, s, RecordPostponement{Resource: m, OperationID: op1, Attempt: 1, Reason: "in maintenance"}, t0.Add(time.Hour+time.Second))
	eqTypes(t, ev, "OperationPostponed")
	p, _ = s.Operation(op1)
	eq(t, "requested again", p.ExecutionStatus, StatusRequested)
	eq(t, "still no attempt", p.AttemptNumber, 0)
	// A replayed report changes nothing.
	if ev, err := Decide(s, RecordPostponement{Resource: m, OperationID: op1, Attempt: 1}, t0.Add(time.Hour+2*time.Second)); err == nil && len(ev) != 0 {
		t.Fatalf("replayed postponement: %v", types(ev))
	}
	s, ev = run(t, s, Refresh{Resource: r}, t0.Add(2*time.Hour))
	eqTypes(t, ev, "DispatchRequested")
	s, ev = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(2*time.Hour))
	eqTypes(t, ev, "OperationSent", "OperationCompleted", "DispatchRequested", "TimerSet")
	eq(t, "then the modify", ev[2].(DispatchRequested).OperationID, op2)
	eq(t, "live", s.Lifecycle(), LifecycleLive)
}

func TestMaintenanceCountsNoAttempts(t *testing.T) {
	r := testResource(t, false)
	m := r.WithMaintenance(true)
	s := added(t, r)
	boom := OperationError{Category: CategoryCommunication, Message: "connection refused"}
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: boom}, t0.Add(time.Second))
	// The retry falls due during maintenance: not retried, not given up, however long it lasts.
	for _, at := range []time.Duration{31 * time.Minute, 10 * time.Hour} {
		ev, err := Decide(s, Refresh{Resource: m}, t0.Add(at))
		if err != nil || len(ev) != 0 {
			t.Fatalf("due retry in maintenance at +%v: %v %v", at, types(ev), err)
		}
	}
	// Operational again: the retry is attempt 2 (the maintenance counted nothing).
	s, ev := run(t, s, Refresh{Resource: r}, t0.Add(10*time.Hour))
	eqTypes(t, ev, "DispatchRequested", "TimerCleared")
	eq(t, "attempt 2", ev[0].(DispatchRequested).Attempt, 2)
	// Held back by the dispatcher: attempt 2 is not made; the retry goes again at once on the next
	// release instead of waiting out another period.
	s, ev = run(t, s, RecordPostponement{Resource: m, OperationID: op1, Attempt: 2}, t0.Add(10*time.Hour))
	eqTypes(t, ev, "OperationPostponed")
	p, _ := s.Operation(op1)
	eq(t, "attempts", p.AttemptNumber, 1)
	eq(t, "still a retry", p.Type, TypeRetry)
	_, ev = run(t, s, Refresh{Resource: r}, t0.Add(10*time.Hour+time.Second))
	eqTypes(t, ev, "DispatchRequested")
	eq(t, "attempt 2 again", ev[0].(DispatchRequested).Attempt, 2)
}

func TestAdministrativeState(t *testing.T) {
	var r ResourceState
	eq(t, "operational by default", r.Data().AdministrativeAvailabilityStatus, AdministrativeOperational)
	ev, err := DecideAdministrative(r, "demo", AdministrativeOperational, "", t0)
	if err != nil || len(ev) != 0 {
		t.Fatalf("operational while operational: %v %v", ev, err)
	}
	for i := range 7 {
		st := AdministrativeMaintenance
		if i%2 == 1 {
			st = AdministrativeOperational
		}
		ev, err := DecideAdministrative(r, "demo", st, fmt.Sprint("window ", i), t0.Add(time.Duration(i)*time.Minute))
		if err != nil || len(ev) != 1 {
			t.Fatalf("change %d to %s: %v %v", i, st, ev, err)
		}
		r = EvolveResource(r, ev[0])
		eq(t, "in maintenance", r.InMaintenance(), st == AdministrativeMaintenance)
	}
	d := r.Data()
	eq(t, "history keeps the last 5", len(d.AdministrativeChanges), AvailabilityHistory)
	eq(t, "oldest kept", d.AdministrativeChanges[0].Reason, "window 2")
	eq(t, "availability untouched", len(d.Changes), 0)
	for _, bad := range []AdministrativeStatus{"", "down", "Maintenance"} {
		if _, err := DecideAdministrative(r, "demo", bad, "", t0); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("status %q: %v", bad, err)
		}
	}
	if _, err := DecideAdministrative(r, "no.such", AdministrativeMaintenance, "", t0); !errors.Is(err, ErrUnknownResource) {
		t.Fatalf("bad resource: %v", err)
	}
}

func TestExplain(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	x := Explain(s, r.Consistency(), t0)
	if len(x.Next) != 1 || !x.Next[0].At.IsZero() || x.LifecycleState != LifecycleProposed {
		t.Fatalf("proposed: %+v", x)
	}
	boom := OperationError{Category: CategoryCommunication, Message: "connection refused"}
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: boom}, t0.Add(time.Second))
	s, _ = run(t, s, Modify{Resource: r, OperationID: op2, Changes: Changes{"a": {Add: []any{"b"}}}}, t0.Add(2*time.Second))
	x = Explain(s, r.Consistency(), t0.Add(3*time.Second))
	eq(t, "conceived", x.LifecycleState, LifecycleConceived)
	if len(x.Why) != 1 || !strings.Contains(x.Why[0], "connection refused") {
		t.Fatalf("why: %v", x.Why)
	}
	// The queued modify (no time) comes first, then the retry at last attempt + 30m.
	if len(x.Next) != 2 || !strings.Contains(x.Next[0].What, "waits behind") || !x.Next[1].At.Equal(t0.Add(time.Second+30*time.Minute)) ||
		!strings.Contains(x.Next[1].What, "attempt 2 of 3") {
		t.Fatalf("next: %+v", x.Next)
	}
	s, _ = run(t, s, Refresh{Resource: r, ForceRetry: true}, t0.Add(4*time.Second))
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 2, Reference: "ref-1"}, t0.Add(5*time.Second))
	x = Explain(s, r.Consistency(), t0.Add(6*time.Second))
	if !strings.Contains(x.Next[0].What, "confirmation (reference ref-1)") {
		t.Fatalf("waiting for confirmation: %+v", x.Next)
	}
	// A failed add: tombstone, with the cause and the expiry.
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultFatalError, Message: "quota"}, t0.Add(7*time.Second))
	x = Explain(s, r.Consistency(), t0.Add(8*time.Second))
	eq(t, "tombstone", x.LifecycleState, LifecycleTombstone)
	if !strings.Contains(x.Why[0], "fatal_error (quota)") {
		t.Fatalf("why: %v", x.Why)
	}
	lastNext := x.Next[len(x.Next)-1]
	if !strings.Contains(lastNext.What, "leaves the projection") || !lastNext.At.Equal(t0.Add(7*time.Second+7*24*time.Hour)) {
		t.Fatalf("expiry: %+v", x.Next)
	}
}

// A fired timer re-arms the shadow's timer when its decision does not and work is due later:
// a schedule armed out of order (a stale record applied after a newer one) fires early, finds
// nothing due, and must not leave the later work without a timer. A refresh that is not a
// firing, or a firing with nothing due later, changes nothing; a firing whose decision sets the
// timer itself adds no second one.
func TestFiredTimerRearms(t *testing.T) {
	r := testResource(t, true, func(c *Consistency) {
		c.PendingOperationGracePeriod = time.Minute
		c.PendingOperationRetentionPeriod = 10 * time.Minute
	})
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(time.Second))
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, t0.Add(2*time.Second))
	done := t0.Add(2 * time.Second)

	// A stale schedule fires 30 s into the grace period: nothing is due yet.
	if ev, err := Decide(s, Refresh{Resource: r}, done.Add(30*time.Second)); err != nil || len(ev) != 0 {
		t.Fatalf("a plain refresh: %v %v", types(ev), err)
	}
	_, ev := run(t, s, Refresh{Resource: r, TimerFired: true}, done.Add(30*time.Second))
	eqTypes(t, ev, "TimerSet")
	eq(t, "re-armed for the end of grace", ev[0].(TimerSet).At, done.Add(time.Minute))

	// The timer fires on time: the decision sets the next timer itself, once.
	s, ev = run(t, s, Refresh{Resource: r, TimerFired: true}, done.Add(time.Minute))
	eqTypes(t, ev, "GracePeriodEnded", "TimerSet")
	eq(t, "retention timer", ev[1].(TimerSet).At, done.Add(10*time.Minute))

	// Retention ends: the timer is cleared, nothing is re-armed.
	s, ev = run(t, s, Refresh{Resource: r, TimerFired: true}, done.Add(10*time.Minute))
	eqTypes(t, ev, "OperationRemoved", "TimerCleared")
	// Nothing due at all: a firing does nothing.
	if ev, err := Decide(s, Refresh{Resource: r, TimerFired: true}, done.Add(11*time.Minute)); err != nil || len(ev) != 0 {
		t.Fatalf("a firing with nothing due: %v %v", types(ev), err)
	}
}

// A firing whose due work cannot be done now (maintenance holds a retry) re-arms nothing: a
// past time would fire again at once, and the end of maintenance refreshes the shadow.
func TestFiredTimerDoesNotRearmThePast(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "down"}, NotSent: true}, t0.Add(time.Second))
	due, ok := NextRetry(s, r.Consistency())
	if !ok {
		t.Fatal("no retry due")
	}
	m := r.WithMaintenance(true)
	if ev, err := Decide(s, Refresh{Resource: m, TimerFired: true}, due.Add(time.Second)); err != nil || len(ev) != 0 {
		t.Fatalf("a firing in maintenance: %v %v", types(ev), err)
	}
}

// A timer that fired a moment early (the server's clock a little ahead) is re-armed a second
// later at the least, not to fire again at once.
func TestFiredTimerRearmsNotSooner(t *testing.T) {
	r := testResource(t, true, func(c *Consistency) { c.PendingOperationGracePeriod = time.Minute })
	s := added(t, r)
	s, _ = run(t, s, RecordDelivery{Resource: r, OperationID: op1, Attempt: 1}, t0.Add(time.Second))
	s, _ = run(t, s, Confirm{Resource: r, OperationID: op1, Result: ResultSuccess}, t0.Add(2*time.Second))
	end := t0.Add(2*time.Second + time.Minute)
	_, ev := run(t, s, Refresh{Resource: r, TimerFired: true}, end.Add(-100*time.Millisecond))
	eqTypes(t, ev, "TimerSet")
	eq(t, "re-armed a second on", ev[0].(TimerSet).At, end.Add(-100*time.Millisecond+time.Second))
}

// Explain says why work waits when the resource holds it: the maintenance (since when, why) of
// an operation waiting to be released, the outage (since when, its reason) and the last error of
// a retry.
func TestExplainNamesWhatHoldsTheWork(t *testing.T) {
	r := testResource(t, true)
	s := added(t, r)
	var res ResourceState
	resource := func(evs []Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			res = EvolveResource(res, e)
		}
	}
	resource(DecideAdministrative(res, r.Name(), AdministrativeMaintenance, "patching", t0.Add(-time.Hour)))
	x := ExplainIn(s, r.Consistency(), res, t0)
	want := "the resource is in maintenance since " + t0.Add(-time.Hour).UTC().Format(time.RFC3339) + " (patching)"
	if !strings.Contains(x.Why[0], want) || len(x.Next) != 1 || !strings.Contains(x.Next[0].What, "waits until maintenance ends ("+want+")") {
		t.Fatalf("in maintenance: %+v", x)
	}
	if plain := Explain(s, r.Consistency(), t0); strings.Contains(strings.Join(plain.Why, " "), "maintenance") {
		t.Fatalf("without the resource, no maintenance is claimed: %+v", plain)
	}
	// Back in operation, the add fails to reach a resource that is down: the retry names both.
	resource(DecideAdministrative(res, r.Name(), AdministrativeOperational, "", t0))
	resource(DecideAvailability(res, r.Name(), AvailabilityDown, "connection refused", t0.Add(time.Second)))
	s, _ = run(t, s, RecordFailure{Resource: r, OperationID: op1, Attempt: 1, Error: OperationError{Category: CategoryCommunication, Message: "connection refused"}}, t0.Add(time.Second))
	x = ExplainIn(s, r.Consistency(), res, t0.Add(2*time.Second))
	if len(x.Next) != 1 || !strings.Contains(x.Next[0].What, "last error communication: connection refused") ||
		!strings.Contains(x.Next[0].What, "the resource is down since "+t0.Add(time.Second).UTC().Format(time.RFC3339)+": connection refused") {
		t.Fatalf("retry while down: %+v", x.Next)
	}
}

func TestOperationErrorSaysItsCategoryOnce(t *testing.T) {
	for _, c := range []struct {
		e    OperationError
		want string
	}{
		{OperationError{Category: CategoryCommunication, Message: "broker down"}, "communication: broker down"},
		{OperationError{Category: CategoryCommunication, Message: "communication: amqp10: broker down"}, "communication: amqp10: broker down"},
		{OperationError{Category: CategorySchema, Message: "communication: odd"}, "schema: communication: odd"},
		{OperationError{Message: "no category"}, "no category"},
	} {
		if got := c.e.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}
