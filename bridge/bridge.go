// Package bridge turns request events into messages for target systems and their outcomes into
// commands. It declares the small interfaces it needs; the binary wires the event store and the
// command service into them.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// Log is what the dispatcher reads: the request events, the current shadows, and (rarely) a
// shadow's history.
type Log interface {
	SubscribeSharded(ctx context.Context, name string, o eventstore.SubscribeOptions, fn func(context.Context, *eventstore.Record) error) error
	Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
	History(ctx context.Context, shadowID string) ([]*eventstore.Record, error)
}

// Known is the shadow as the dispatcher last saw it and the sequence of that commit. It lets the
// recorder skip a load; the recorder must still append with this sequence expected, so a stale
// Known only costs a reload.
type Known = eventstore.Known

// Attempt names one attempt of one operation: its resource, shadow and operation, its number
// (1 for the first), and the shadow as the dispatcher last saw it (Known, may be nil).
type Attempt struct {
	Resource, ShadowID, OperationID string
	Number                          int
	Known                           *Known
}

// Failure is why an attempt failed: the error's category and message, and whether the request
// never reached the target (NotSent, see ErrNotSent).
type Failure struct {
	Category domain.Category
	Message  string
	NotSent  bool
}

// Outcomes records what happened to an attempt (the command service implements it). Each is
// idempotent: recording the same outcome of the same attempt again changes nothing.
type Outcomes interface {
	// Delivered records that the transport took the request, with the reference a confirmation
	// may name.
	Delivered(ctx context.Context, a Attempt, reference string) error
	Failed(ctx context.Context, a Attempt, f Failure) error
	// Postponed records that the attempt was held back without contacting the target (the
	// resource is in maintenance); no attempt is counted.
	Postponed(ctx context.Context, a Attempt, reason string) error
}

// Gate says whether a resource is administratively closed (in maintenance). Implementations must
// be cheap (it is asked before every send) and safe for concurrent use.
type Gate interface {
	InMaintenance(ctx context.Context, resource string) bool
}

// Request is one attempt of one operation, as handed to a target.
type Request struct {
	Resource    string
	ShadowID    string
	OperationID string
	Attempt     int
	// Sequence and PreviousSequence order one shadow's requests for the target (see
	// domain.DispatchRequested); 0 for requests released before sequences existed.
	Sequence, PreviousSequence int64
	Body                       domain.TargetRequest
	// Redelivered: the request's record came back from the log after a crash or a missed
	// acknowledgement, so this send may repeat one the target already has.
	Redelivered bool
	// TraceParent is the W3C traceparent the request carries: the operation's when released,
	// the attempt's own span while it is sent.
	TraceParent string
}

// attempt names the request's attempt for Outcomes.
func (r Request) attempt(known *Known) Attempt {
	return Attempt{Resource: r.Resource, ShadowID: r.ShadowID, OperationID: r.OperationID, Number: r.Attempt, Known: known}
}

func requestOf(resource, shadowID string, dr domain.DispatchRequested) Request {
	return Request{Resource: resource, ShadowID: shadowID, OperationID: dr.OperationID, Attempt: dr.Attempt,
		Sequence: dr.Sequence, PreviousSequence: dr.PreviousSequence, Body: dr.Request, TraceParent: dr.TraceParent}
}

// Properties returns the message properties every transport carries (AMQP application
// properties, NATS headers). sequence and previousSequence are left out when unknown.
func (r Request) Properties() map[string]string {
	p := map[string]string{"shadowId": r.ShadowID, "operationId": r.OperationID, "resource": r.Resource, "attempt": strconv.Itoa(r.Attempt)}
	if r.Sequence > 0 {
		p["sequence"] = strconv.FormatInt(r.Sequence, 10)
		p["previousSequence"] = strconv.FormatInt(r.PreviousSequence, 10)
	}
	if r.TraceParent != "" {
		p["traceparent"] = r.TraceParent
	}
	return p
}

// Target delivers requests to one target system. Send returns when the transport has taken
// responsibility for the request (JetStream ack, AMQP Accepted), with a reference for
// asynchronous confirmations. Errors carry a domain category: communication errors leave the
// operation pending for a retry; any other category ends it with fatal_error. An error without
// a category counts as communication (a retry is never wrong; losing an operation is).
// Implementations must be safe for concurrent use; requests of one shadow are never sent
// concurrently.
type Target interface {
	Send(ctx context.Context, r Request) (reference string, err error)
	Close() error
}

// Prober is a target that can tell whether its system is reachable without sending a request.
// The service probes a resource that is down, so that its postponed operations are retried as
// soon as it is back (retryOnRecovery) instead of when their timers fire.
type Prober interface {
	Probe(ctx context.Context) error
}

// Dispatcher reads DispatchRequested events through a durable consumer and sends each operation
// to its resource's target, then records the outcome. Shadows are sent in parallel; one shadow's
// requests go one after the other in log order. The request event is acknowledged only after the
// outcome is recorded, so a crash re-sends (with the same operation id, for the target's
// duplicate detection) and never loses.
type Dispatcher struct {
	log      Log
	outcomes Outcomes
	targets  map[string]Target
	logger   *slog.Logger
	// Durable is the consumer name (default "PROV_DISPATCHER").
	Durable string
	// Parallel bounds the shadows sent at once (default 64).
	Parallel int
	// SendTimeout bounds one send (default 30s); a timeout is a communication error.
	SendTimeout time.Duration
	// Gate, when set, holds back every attempt for a resource in maintenance. Decisions made
	// in maintenance release nothing; the gate catches what was released just before it began.
	Gate Gate
	// Tracer makes each attempt a span of its operation's trace (nil: none recorded; the
	// request still carries the operation's traceparent).
	Tracer trace.Tracer

	done doneCache // attempts whose outcome this process recorded: replays skip them
}

// doneCache remembers recently recorded attempts in two generations of at most doneCacheSize
// entries each (bounded memory, no per-entry bookkeeping).
type doneCache struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
}

const doneCacheSize = 1 << 16

func (c *doneCache) has(k string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, a := c.cur[k]
	_, b := c.prev[k]
	return a || b
}

func (c *doneCache) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= doneCacheSize {
		c.prev, c.cur = c.cur, make(map[string]struct{}, 1024)
	}
	c.cur[k] = struct{}{}
}

func attemptKey(opID string, attempt int) string { return opID + "/" + strconv.Itoa(attempt) }

// NewDispatcher returns a dispatcher for the given targets (by resource name).
func NewDispatcher(log Log, outcomes Outcomes, targets map[string]Target, logger *slog.Logger) *Dispatcher {
	if logger == nil {
		logger = slog.Default()
	}
	return &Dispatcher{log: log, outcomes: outcomes, targets: targets, logger: logger.WithGroup("dispatcher"),
		Durable: "PROV_DISPATCHER", Parallel: 64, SendTimeout: 30 * time.Second}
}

// Run dispatches until ctx ends: Parallel workers, each shadow's records on one worker in order,
// each record acknowledged once its outcome is stored.
func (d *Dispatcher) Run(ctx context.Context) error {
	return d.log.SubscribeSharded(ctx, d.Durable, eventstore.SubscribeOptions{Workers: d.Parallel, Logger: d.logger},
		func(ctx context.Context, r *eventstore.Record) error {
			if !r.Has("DispatchRequested") {
				return nil
			}
			return d.dispatchRecord(ctx, r)
		})
}

// Handle dispatches one batch of records (exported for tests and benchmarks).
func (d *Dispatcher) Handle(ctx context.Context, recs []*eventstore.Record) error {
	groups := map[string][]*eventstore.Record{}
	var order []string
	for _, r := range recs {
		if !r.Has("DispatchRequested") {
			continue
		}
		k := r.Resource + "." + r.ShadowID
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	sem := make(chan struct{}, max(d.Parallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, k := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, r := range groups[k] {
				if err := d.dispatchRecord(ctx, r); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return // keep this shadow's order: the batch is retried from here
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// skipper is a Log that counts (and logs once) the records its readers pass over.
type skipper interface {
	Skip(reader string, r *eventstore.Record, err error)
}

var _ skipper = (*eventstore.Store)(nil)

// skip passes over a record that cannot be decoded (not ours): nothing in it can be sent.
func (d *Dispatcher) skip(r *eventstore.Record, err error) {
	if s, ok := d.log.(skipper); ok {
		s.Skip("dispatcher", r, err)
		return
	}
	d.logger.Error("record skipped", "seq", r.Seq, "err", err)
}

func (d *Dispatcher) dispatchRecord(ctx context.Context, r *eventstore.Record) error {
	evs, err := r.Events()
	if err != nil {
		d.skip(r, err)
		return nil
	}
	known := &Known{Seq: r.Seq}
	if known.State, err = r.State(); err != nil {
		d.skip(r, err)
		return nil
	}
	if r.Replayed {
		// The consumer was made after this record (deleted and made again, or new on an old
		// log): the request may have been sent and answered long ago, by a process whose memory
		// of it is gone. The shadow as it is now says whether it is still due.
		known = nil
	}
	for _, e := range evs {
		dr, ok := e.(domain.DispatchRequested)
		if !ok {
			continue
		}
		req := requestOf(r.Resource, r.ShadowID, dr)
		req.Redelivered = r.Deliveries > 1
		if err := d.dispatch(ctx, req, known); err != nil {
			return err
		}
		known = nil // the first outcome moved the shadow on
	}
	return nil
}

// dispatch sends one attempt unless the shadow says it was already made or is no longer wanted,
// and records the outcome. The shadow, not the order in which records arrive, decides what is due:
// after a crash, a redelivered older request can arrive after a newer one, so earlier operations
// of the shadow still waiting to be sent go first. It returns an error only when an outcome could
// not be recorded.
//
// The record's own state is used when it shows nothing earlier waiting: the common case costs no
// load. A record redelivered after a crash is then sent again, with the same message-id and
// _AMQ_DUPL_ID for the broker's duplicate detection, and its outcome changes nothing.
func (d *Dispatcher) dispatch(ctx context.Context, req Request, known *Known) error {
	if d.done.has(attemptKey(req.OperationID, req.Attempt)) {
		return nil // this process already sent it and recorded the outcome
	}
	if known == nil || earlierPending(known.State, req.OperationID) {
		st, seq, err := d.log.Load(ctx, req.Resource, req.ShadowID)
		if err != nil {
			return err
		}
		known = &Known{State: st, Seq: seq}
	}
	st := known.State
	if !due(st, req.OperationID, req.Attempt) {
		return nil // replay of a request already handled
	}
	caughtUp := false
	for id, status := range st.OperationStatuses() {
		if id == req.OperationID {
			break
		}
		if status == domain.StatusExecutionPending {
			p, _ := st.Operation(id)
			earlier, err := d.requestFromHistory(ctx, req.Resource, req.ShadowID, p.ID, p.AttemptNumber+1)
			if err != nil {
				return err
			}
			if err := d.send(ctx, earlier, nil); err != nil {
				return err
			}
			caughtUp = true
		}
	}
	if caughtUp { // the shadow moved on: look again before sending
		st, _, err := d.log.Load(ctx, req.Resource, req.ShadowID)
		if err != nil {
			return err
		}
		if !due(st, req.OperationID, req.Attempt) {
			return nil
		}
		known = nil
	}
	return d.send(ctx, req, known)
}

// earlierPending reports whether an operation before opID is released but not yet attempted.
func earlierPending(st domain.Shadow, opID string) bool {
	for id, status := range st.OperationStatuses() {
		if id == opID {
			return false
		}
		if status == domain.StatusExecutionPending {
			return true
		}
	}
	return false
}

// due reports whether attempt number attempt of the operation is still to be made.
func due(st domain.Shadow, opID string, attempt int) bool {
	p, ok := st.Operation(opID)
	return ok && !p.Completed() && p.ExecutionStatus == domain.StatusExecutionPending && p.AttemptNumber == attempt-1
}

// requestFromHistory finds the DispatchRequested event of an attempt in the shadow's history.
func (d *Dispatcher) requestFromHistory(ctx context.Context, resource, shadowID, opID string, attempt int) (Request, error) {
	recs, err := d.log.History(ctx, shadowID)
	if err != nil {
		return Request{}, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		evs, err := recs[i].Events()
		if err != nil {
			return Request{}, err
		}
		for _, e := range evs {
			if dr, ok := e.(domain.DispatchRequested); ok && dr.OperationID == opID && dr.Attempt == attempt {
				return requestOf(resource, shadowID, dr), nil
			}
		}
	}
	return Request{}, fmt.Errorf("dispatcher: no DispatchRequested for operation %s attempt %d in the history of %s", opID, attempt, shadowID)
}

// send makes one attempt, known to be due, and records its outcome.
func (d *Dispatcher) send(ctx context.Context, req Request, known *Known) error {
	if d.Gate != nil && d.Gate.InMaintenance(ctx, req.Resource) {
		// Not remembered as done: the same attempt goes out when maintenance ends.
		return d.outcomes.Postponed(ctx, req.attempt(known), "resource in maintenance")
	}
	t, ok := d.targets[req.Resource]
	if !ok {
		return d.outcomes.Failed(ctx, req.attempt(known), Failure{Category: domain.CategoryConfiguration,
			Message: fmt.Sprintf("resource %q has no target", req.Resource)})
	}
	if req.Redelivered {
		d.logger.Info("re-sending a redelivered request (same operation id: the target's duplicate detection drops it)",
			"resource", req.Resource, "shadow", req.ShadowID, "operation", req.OperationID, "attempt", req.Attempt)
	}
	sctx, span := tracerOr(d.Tracer).Start(WithTraceParent(ctx, req.TraceParent), "send "+req.Resource,
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("shadowbridge.resource", req.Resource), attribute.String("shadowbridge.shadow_id", req.ShadowID),
			attribute.String("shadowbridge.operation_id", req.OperationID), attribute.Int("shadowbridge.attempt", req.Attempt)))
	if tp := TraceParent(sctx); tp != "" {
		req.TraceParent = tp // the target sees this attempt as the parent
	}
	sctx, cancel := context.WithTimeout(sctx, d.SendTimeout)
	ref, err := t.Send(sctx, req)
	cancel()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "not sent")
	}
	span.End()
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: leave it unacknowledged, it is sent again on restart
	}
	if err != nil {
		cat := Categorize(err)
		// Per operation at debug: in an outage this is one line per operation; the resource's
		// change of availability and the periodic summary are logged above debug instead.
		d.logger.Debug("send failed", "resource", req.Resource, "shadow", req.ShadowID, "operation", req.OperationID,
			"attempt", req.Attempt, "category", cat, "err", err)
		err = d.outcomes.Failed(ctx, req.attempt(known), Failure{Category: cat, Message: err.Error(), NotSent: errors.Is(err, ErrNotSent)})
	} else {
		err = d.outcomes.Delivered(ctx, req.attempt(known), ref)
	}
	if err == nil {
		d.done.add(attemptKey(req.OperationID, req.Attempt))
	}
	return err
}

// ErrNotSent marks a send error that kept the request from reaching the target at all: no
// connection, a refused login, a missing queue. The operation then waits for a retry whatever the
// error's category (the resource is marked broken for a configuration or security error), so
// fixing the broker lets it through; nothing is lost.
var ErrNotSent = errors.New("the request was not sent")

type notSentError struct{ err error }

func (e notSentError) Error() string        { return e.err.Error() }
func (e notSentError) Unwrap() error        { return e.err }
func (e notSentError) Is(target error) bool { return target == ErrNotSent }

// NotSent marks err with ErrNotSent (its text unchanged); nil stays nil.
func NotSent(err error) error {
	if err == nil {
		return nil
	}
	return notSentError{err}
}

// Categorize returns the domain category of a send error; communication when it has none.
func Categorize(err error) domain.Category {
	for _, c := range []domain.Category{domain.CategoryConfiguration, domain.CategorySecurity, domain.CategorySchema,
		domain.CategoryAlreadyExists, domain.CategoryNotFound, domain.CategoryConflict, domain.CategoryGeneric} {
		if errors.Is(err, c) {
			return c
		}
	}
	return domain.CategoryCommunication
}
