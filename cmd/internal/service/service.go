// Package service is shadowbridge's command and query service: it loads a shadow, lets the domain
// decide, reserves identifiers and appends the decision, retrying on conflicts, and serves all of it
// as the NATS micro service `shadowbridge`. It holds no in-process locks: every instance against
// one NATS coordinates through JetStream (expected sequences, KV revisions).
package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/metrics"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/projections"
)

// Store is what the service needs of the event store: the unit of work, reads, and the index.
type Store interface {
	Update(ctx context.Context, o eventstore.UpdateOptions) (eventstore.UpdateResult, error)
	UpdateResource(ctx context.Context, resource string, decide func(domain.ResourceState) ([]domain.Event, error)) (domain.ResourceState, []domain.Event, error)
	Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
	LoadByID(ctx context.Context, shadowID string) (domain.Shadow, uint64, error)
	LoadResource(ctx context.Context, resource string) (domain.ResourceState, uint64, error)
	History(ctx context.Context, shadowID string) ([]*eventstore.Record, error)
	Owner(ctx context.Context, c domain.Claim) (string, error)
	LookupOperation(ctx context.Context, operationID string) (string, string, bool, error)
	GetRequest(ctx context.Context, resource, requestID string) (*eventstore.RequestRecord, error)
	PutRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) error
}

var _ Store = (*eventstore.Store)(nil)

// Pending lists the shadows with unfinished operations (the projection's pending index).
type Pending interface {
	Pending(ctx context.Context, resource string) ([]domain.ShadowData, error)
}

// Service executes commands. Safe for concurrent use.
type Service struct {
	metrics *metrics.Set
	store   Store
	queries *projections.Queries
	pending Pending
	catalog domain.Catalog
	log     *slog.Logger
	now     func() time.Time
	nc      *nats.Conn // set by Serve

	availMu sync.Mutex
	avail   map[string]availSeen // resource -> last availability seen, to skip no-op reports

	adminMu sync.Mutex
	admin   map[string]adminSeen // resource -> administrative state, read at most every adminTTL

	// Work that outlives a request (releases after maintenance, retries on recovery) and the
	// requests being handled; Close cancels the first and waits for both.
	work      sync.WaitGroup
	workCtx   context.Context
	stopWork  context.CancelFunc
	closeOnce sync.Once
}

// background runs fn on its own goroutine with a context that Close cancels, bounded by timeout.
func (s *Service) background(timeout time.Duration, fn func(ctx context.Context)) {
	s.work.Go(func() {
		ctx, cancel := context.WithTimeout(s.workCtx, timeout)
		defer cancel()
		fn(ctx)
	})
}

// Close stops the service's background work and waits for it and for the requests being handled
// (stop taking requests first: see Serve). Safe to call more than once.
func (s *Service) Close() {
	s.closeOnce.Do(s.stopWork)
	s.work.Wait()
}

type adminSeen struct {
	maintenance bool
	at          time.Time
}

// adminTTL bounds how long a maintenance switch made by another instance takes to reach this one.
const adminTTL = time.Second

type availSeen struct {
	status domain.Availability
	at     time.Time
}

// Option configures a Service.
type Option func(*Service)

// WithMetrics makes the service count into m (default: a set of its own).
func WithMetrics(m *metrics.Set) Option { return func(s *Service) { s.metrics = m } }

// WithClock makes now the service's clock (default: time.Now in UTC); every decision, cache and
// explanation reads it.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a service over the given resources.
func New(store Store, pending Pending, catalog domain.Catalog, log *slog.Logger, opts ...Option) *Service {
	if log == nil {
		log = slog.Default()
	}
	s := &Service{store: store, pending: pending, catalog: catalog, log: log.WithGroup("service"),
		now: func() time.Time { return time.Now().UTC() }, metrics: metrics.New()}
	for _, o := range opts {
		o(s)
	}
	s.workCtx, s.stopWork = context.WithCancel(context.Background())
	s.queries = projections.NewQueries(store, func() time.Time { return s.now() })
	return s
}

// Catalog returns the configured resources.
func (s *Service) Catalog() domain.Catalog { return s.catalog }

// NewID returns a random UUID v4, the form of shadow and operation ids.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Outcome is what a command did.
type Outcome struct {
	Shadow domain.Shadow
	Events []domain.Event
	Seq    uint64
}

const maxAttempts = 64

// Update runs one unit of work on a shadow (eventstore.Store.Update): fn decides from the current
// state and may return no events (nothing to do); it must be pure, as it can run several times.
func (s *Service) Update(ctx context.Context, resource, shadowID, requestID string, fn func(domain.Shadow) ([]domain.Event, error)) (Outcome, error) {
	return s.update(ctx, eventstore.UpdateOptions{Resource: resource, ShadowID: shadowID, RequestID: requestID, Decide: fn})
}

// UpdateFrom is Update starting from a state the caller already has (known may be nil): the
// first attempt skips the load and appends with known's sequence expected, so a stale known
// costs one conflict and a reload, never a lost update.
func (s *Service) UpdateFrom(ctx context.Context, resource, shadowID, requestID string, known *bridge.Known, fn func(domain.Shadow) ([]domain.Event, error)) (Outcome, error) {
	return s.update(ctx, eventstore.UpdateOptions{Resource: resource, ShadowID: shadowID, RequestID: requestID, Known: known, Decide: fn})
}

func (s *Service) update(ctx context.Context, o eventstore.UpdateOptions) (Outcome, error) {
	o.Fault = faults.hit
	r, err := s.store.Update(ctx, o)
	if err != nil {
		return Outcome{}, err
	}
	for _, e := range r.Events {
		s.metrics.EventsAppended.Inc(e.EventType())
	}
	return Outcome{Shadow: r.Shadow, Events: r.Events, Seq: r.Seq}, nil
}

// Reply is the answer to add, modify, delete and confirm.
type Reply struct {
	ShadowID        string                 `json:"shadowId"`
	OperationID     string                 `json:"operationId"`
	ExecutionStatus domain.ExecutionStatus `json:"executionStatus"`
	ResultStatus    domain.ResultStatus    `json:"resultStatus"`
}

func replyFor(st domain.Shadow, opID string) Reply {
	r := Reply{ShadowID: st.ID(), OperationID: opID}
	if p, ok := st.Operation(opID); ok {
		r.ExecutionStatus, r.ResultStatus = p.ExecutionStatus, p.ResultStatus
	}
	return r
}

// Request is a provisioning request (add, modify or delete) after decoding.
type Request struct {
	Verb     string
	Resource string
	// ShadowID of the target shadow; for add, empty (a new one is made).
	ShadowID  string
	RequestID string
	// Fingerprint identifies the request's content for request-id reuse checks.
	Fingerprint string
	ObjectClass string
	Attributes  domain.Attributes
	Assigned    bool
	// Identifiers address the shadow of a modify or delete when ShadowID is empty.
	Identifiers domain.Attributes
	Changes     domain.Changes
	// Order is the order in which the request named its attributes or changes.
	Order []string
}

// ErrRequestIDReused: the request id was used before for a different request.
var ErrRequestIDReused = &domain.Error{Category: domain.CategoryConflict, Message: "requestId already used for a different request"}

// errStored: the shadow already holds the operation this request creates (an earlier attempt of
// the request was stored); the answer comes from that commit.
var errStored = errors.New("request already stored")

// Provision runs an add, modify or delete. With a request id it is idempotent for as long as the
// shadow's history exists: the same request id and content always get the first reply and one
// set of events, whatever the crash point, long after JetStream's dedup window (see
// docs/design.md, "Request ids").
func (s *Service) Provision(ctx context.Context, req Request) (Reply, error) {
	res, err := s.lookup(ctx, req.Resource)
	if err != nil {
		return Reply{}, fmt.Errorf("%s: %w", req.Verb, err)
	}
	shadowID, opID := req.ShadowID, NewID()
	if req.Verb == "add" {
		shadowID = NewID()
	}
	if req.RequestID != "" {
		rec, err := s.store.GetRequest(ctx, req.Resource, req.RequestID)
		if err != nil {
			return Reply{}, err
		}
		if rec != nil {
			if reply, done, err := s.answer(ctx, rec, req); done || err != nil {
				return reply, err
			}
			shadowID, opID = rec.ShadowID, rec.OperationID
		}
	}
	for range 4 {
		if shadowID == "" {
			// Addressed by identifiers: resolved after the request id is looked at, so that a
			// retry of a request whose shadow is gone since still gets its first reply.
			if shadowID, err = s.Resolve(ctx, req.Resource, req.ObjectClass, req.Identifiers); err != nil {
				return Reply{}, err
			}
		}
		reply, err := s.decideRequest(ctx, req, res, shadowID, opID)
		var adopt *eventstore.AdoptError
		if errors.As(err, &adopt) {
			if reply, done, err := s.answer(ctx, adopt.Record, req); done || err != nil {
				return reply, err
			}
			shadowID, opID = adopt.Record.ShadowID, adopt.Record.OperationID
			continue
		}
		return reply, err
	}
	return Reply{}, fmt.Errorf("%s: %w: request id %q: too many concurrent attempts", req.Verb, eventstore.ErrConflict, req.RequestID)
}

// decideRequest decides the request with the given ids, appends it (reserving the request id
// first) and completes the request record.
func (s *Service) decideRequest(ctx context.Context, req Request, res domain.Resource, shadowID, opID string) (Reply, error) {
	var cmd domain.Command
	switch req.Verb {
	case "add":
		cmd = domain.Add{Resource: res, ShadowID: shadowID, OperationID: opID, RequestID: req.RequestID,
			ObjectClass: req.ObjectClass, Attributes: req.Attributes, Order: req.Order, Assigned: req.Assigned}
	case "modify":
		cmd = domain.Modify{Resource: res, OperationID: opID, RequestID: req.RequestID, Changes: req.Changes, Order: req.Order}
	case "delete":
		cmd = domain.Delete{Resource: res, OperationID: opID, RequestID: req.RequestID}
	default:
		return Reply{}, fmt.Errorf("%w: unknown verb %q", domain.ErrInvalidCommand, req.Verb)
	}
	var reserve *eventstore.RequestRecord
	if req.RequestID != "" {
		reserve = &eventstore.RequestRecord{Fingerprint: req.Fingerprint, ShadowID: shadowID, OperationID: opID}
	}
	now := s.now()
	out, err := s.update(ctx, eventstore.UpdateOptions{Resource: req.Resource, ShadowID: shadowID, RequestID: req.RequestID, Reserve: reserve,
		Decide: func(st domain.Shadow) ([]domain.Event, error) {
			if _, ok := st.Operation(opID); ok && req.RequestID != "" {
				return nil, errStored
			}
			return domain.Decide(st, cmd, now)
		}})
	var reply Reply
	switch {
	case errors.Is(err, errStored):
		rec, ferr := s.findCommit(ctx, shadowID, req.RequestID)
		if ferr != nil {
			return Reply{}, ferr
		}
		if rec == nil {
			return Reply{}, fmt.Errorf("%s: %w: operation %s is stored but no commit of request %q was found", req.Verb, eventstore.ErrCorrupt, opID, req.RequestID)
		}
		if reply, err = replyFromRecord(rec); err != nil {
			return Reply{}, err
		}
		out.Seq = rec.Seq
	case err != nil:
		return Reply{}, err
	case len(out.Events) == 0 && req.Verb != "add":
		// avoidDuplicateOperations: the same change is pending; answer with it.
		dup, _ := out.Shadow.PendingDuplicate(domain.ChangeType(req.Verb), req.Changes)
		reply = replyFor(out.Shadow, dup.ID)
	default:
		reply = replyFor(out.Shadow, opID)
	}
	if req.RequestID != "" {
		s.complete(ctx, req, shadowID, opID, reply, out.Seq, reserve.Revision)
	}
	return reply, nil
}

// complete stores the reply of a request id (rev: the reservation's revision, 0 if unknown). A
// failure is logged, not returned: the pending record and the commit already answer any retry
// the same way.
func (s *Service) complete(ctx context.Context, req Request, shadowID, opID string, reply Reply, seq, rev uint64) {
	b, _ := json.Marshal(reply)
	rec := eventstore.RequestRecord{Fingerprint: req.Fingerprint, Reply: b, Seq: seq, ShadowID: shadowID, OperationID: opID, Revision: rev}
	if err := s.store.PutRequest(ctx, req.Resource, req.RequestID, rec); err != nil {
		s.log.Warn("request record not completed; its pending record answers retries", "requestId", req.RequestID, "err", err)
	}
}

// answer answers a request from its record when it can: done is true with the first reply (or an
// error for a reused request id with another body). A pending record whose commit is not in the
// shadow's history is not done: the caller decides again with the record's ids.
func (s *Service) answer(ctx context.Context, rec *eventstore.RequestRecord, req Request) (Reply, bool, error) {
	if rec.Fingerprint != "" && req.Fingerprint != "" && rec.Fingerprint != req.Fingerprint {
		return Reply{}, true, fmt.Errorf("%s: %w: %q", req.Verb, ErrRequestIDReused, req.RequestID)
	}
	if !rec.Pending() {
		var r Reply
		if err := json.Unmarshal(rec.Reply, &r); err != nil {
			return Reply{}, true, fmt.Errorf("%w: request record: %w", eventstore.ErrCorrupt, err)
		}
		return r, true, nil
	}
	c, err := s.findCommit(ctx, rec.ShadowID, req.RequestID)
	if err != nil || c == nil {
		return Reply{}, err != nil, err
	}
	reply, err := replyFromRecord(c)
	if err != nil {
		return Reply{}, true, err
	}
	s.complete(ctx, req, rec.ShadowID, rec.OperationID, reply, c.Seq, rec.Revision)
	return reply, true, nil
}

// findCommit returns the commit of a request id in a shadow's history, or nil. It reads the whole
// history: it runs only for a request whose earlier attempt crashed before its reply was stored.
func (s *Service) findCommit(ctx context.Context, shadowID, requestID string) (*eventstore.Record, error) {
	if shadowID == "" {
		return nil, nil
	}
	recs, err := s.store.History(ctx, shadowID)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if id, err := r.RequestID(); err == nil && id == requestID {
			return r, nil
		}
	}
	return nil, nil
}

// replyFromRecord rebuilds the reply of a stored commit: the shadow as the commit left it.
func replyFromRecord(rec *eventstore.Record) (Reply, error) {
	ev, err := rec.Events()
	if err != nil {
		return Reply{}, err
	}
	st, err := rec.State()
	if err != nil {
		return Reply{}, err
	}
	for _, e := range ev {
		switch e.(type) {
		case domain.AddRequested, domain.ModifyRequested, domain.DeleteRequested:
			return replyFor(st, domain.EventOperationID(e)), nil
		}
	}
	return Reply{ShadowID: st.ID()}, nil
}

// Fingerprint returns a stable digest of a decoded request body.
func Fingerprint(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// ConfirmRequest is the target system's answer to an operation.
type ConfirmRequest struct {
	Resource           string
	OperationID        string
	Result             domain.ResultStatus
	Message            string
	PrimaryIdentifiers domain.Attributes
	ErrorCategory      domain.Category
	Attributes         domain.Attributes
}

// Confirm records the target system's answer. A confirmation of an already completed operation
// returns an error matching domain.ErrOperationFinished, which confirmation receivers treat as
// "already done".
func (s *Service) Confirm(ctx context.Context, c ConfirmRequest) (Reply, error) {
	res, err := s.lookup(ctx, c.Resource)
	if err != nil {
		return Reply{}, fmt.Errorf("confirm: %w", err)
	}
	if !c.Result.Final() {
		return Reply{}, fmt.Errorf("confirm: %w: %q (want success, warning, partial_error, fatal_error, handled_error or not_applicable)", domain.ErrInvalidResult, c.Result)
	}
	r, shadowID, ok, err := s.store.LookupOperation(ctx, c.OperationID)
	if err != nil {
		return Reply{}, err
	}
	if !ok || r != c.Resource {
		return Reply{}, fmt.Errorf("confirm: %w: %q on resource %q", domain.ErrOperationNotFound, c.OperationID, c.Resource)
	}
	now := s.now()
	discovered := NewID()
	out, err := s.Update(ctx, c.Resource, shadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, domain.Confirm{Resource: res, OperationID: c.OperationID, Result: c.Result,
			Message: c.Message, PrimaryIdentifiers: c.PrimaryIdentifiers, ErrorCategory: c.ErrorCategory,
			Attributes: c.Attributes, DiscoveredShadowID: discovered}, now)
	})
	if err != nil {
		return Reply{}, err
	}
	for _, e := range out.Events {
		if d, ok := e.(domain.AccountDiscovered); ok {
			// The dead shadow released the identifiers; the account's own shadow takes them.
			_, err := s.Update(ctx, c.Resource, d.ShadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
				return domain.Decide(st, domain.Discover{Resource: res, ShadowID: d.ShadowID, ObjectClass: out.Shadow.ObjectClass(),
					Attributes: d.Attributes, PrimaryIdentifiers: d.PrimaryIdentifiers, Cause: d.OperationID}, now)
			})
			if err != nil {
				s.log.Error("discovered account not recorded", "operation", c.OperationID, "err", err)
			}
		}
	}
	return replyFor(out.Shadow, c.OperationID), nil
}

// Cancel ends an operation that has not reached the target (postponed for retry, or queued).
func (s *Service) Cancel(ctx context.Context, resource, operationID string) (Reply, error) {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return Reply{}, fmt.Errorf("cancel: %w", err)
	}
	r, shadowID, ok, err := s.store.LookupOperation(ctx, operationID)
	if err != nil {
		return Reply{}, err
	}
	if !ok || r != resource {
		return Reply{}, fmt.Errorf("cancel: %w: %q on resource %q", domain.ErrOperationNotFound, operationID, resource)
	}
	now := s.now()
	out, err := s.Update(ctx, resource, shadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, domain.Cancel{Resource: res, OperationID: operationID}, now)
	})
	if err != nil {
		return Reply{}, err
	}
	return replyFor(out.Shadow, operationID), nil
}

// Delivered records that the transport accepted an attempt (used by the dispatcher); the
// resource is up.
func (s *Service) Delivered(ctx context.Context, resource, shadowID, operationID string, attempt int, reference string, known *bridge.Known) error {
	if err := faults.hit(FaultBeforeOutcome); err != nil {
		return err
	}
	err := s.record(ctx, resource, shadowID, known, func(res domain.Resource) domain.Command {
		return domain.RecordDelivery{Resource: res, OperationID: operationID, Attempt: attempt, Reference: reference}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(resource, "sent")
		s.noteAvailability(ctx, resource, domain.AvailabilityUp, "")
	}
	return err
}

// Postponed records that the dispatcher held an attempt back without contacting the target (the
// resource is in maintenance): the operation waits again and no attempt is counted.
func (s *Service) Postponed(ctx context.Context, resource, shadowID, operationID string, attempt int, reason string, known *bridge.Known) error {
	err := s.record(ctx, resource, shadowID, known, func(res domain.Resource) domain.Command {
		return domain.RecordPostponement{Resource: res, OperationID: operationID, Attempt: attempt, Reason: reason}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(resource, "postponed")
	}
	return err
}

// lookup returns the configured resource with its current administrative state, so that every
// decision sees maintenance.
func (s *Service) lookup(ctx context.Context, resource string) (domain.Resource, error) {
	res, err := s.catalog.Lookup(resource)
	if err != nil {
		return res, err
	}
	return res.WithMaintenance(s.InMaintenance(ctx, resource)), nil
}

// InMaintenance reports whether the resource is administratively in maintenance, as recorded in
// its events at most adminTTL ago. When the state cannot be read it keeps the last state seen
// (operational if none): commands fail on their own when the store is unreachable.
func (s *Service) InMaintenance(ctx context.Context, resource string) bool {
	s.adminMu.Lock()
	seen, ok := s.admin[resource]
	s.adminMu.Unlock()
	if ok && s.now().Sub(seen.at) < adminTTL {
		return seen.maintenance
	}
	st, _, err := s.store.LoadResource(ctx, resource)
	if err != nil {
		s.log.Warn("administrative state not read; keeping the last one seen", "resource", resource, "err", err)
		return seen.maintenance
	}
	s.noteAdmin(resource, st.InMaintenance())
	return st.InMaintenance()
}

func (s *Service) noteAdmin(resource string, maintenance bool) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.admin == nil {
		s.admin = map[string]adminSeen{}
	}
	s.admin[resource] = adminSeen{maintenance: maintenance, at: s.now()}
}

// SetMaintenance puts the resource in maintenance or back in operation (midPoint's
// administrativeAvailabilityStatus) and returns its state. Idempotent: the same state twice
// records one event. Other instances see the change within adminTTL. Ending maintenance releases
// the operations that waited (in the background; the sweep does it too should this process die).
func (s *Service) SetMaintenance(ctx context.Context, resource string, on bool, reason string) (domain.ResourceData, error) {
	if _, err := s.catalog.Lookup(resource); err != nil {
		return domain.ResourceData{}, fmt.Errorf("maintenance: %w", err)
	}
	status := domain.AdministrativeOperational
	if on {
		status = domain.AdministrativeMaintenance
	}
	st, changed, err := s.UpdateResource(ctx, resource, func(cur domain.ResourceState) ([]domain.Event, error) {
		ev, err := domain.DecideAdministrative(cur, resource, status, reason, s.now())
		if err != nil {
			return nil, fmt.Errorf("maintenance: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return domain.ResourceData{}, err
	}
	s.noteAdmin(resource, on)
	if changed {
		s.log.Info("administrative state changed", "resource", resource, "status", status, "reason", reason)
	}
	if changed && !on {
		s.background(10*time.Minute, func(rctx context.Context) {
			if n, err := s.Refresh(rctx, resource, "", false); err != nil {
				s.log.Warn("release after maintenance failed; the sweep will release", "resource", resource, "err", err)
			} else {
				s.log.Info("maintenance over: waiting operations released", "resource", resource, "shadows", n)
			}
		})
	}
	d := st.Data()
	d.Resource = resource
	if d.Changes == nil {
		d.Changes = []domain.AvailabilityChange{}
	}
	return d, nil
}

// Failed records a failed attempt (used by the dispatcher); a communication error makes the
// resource down, a configuration or security error broken.
func (s *Service) Failed(ctx context.Context, resource, shadowID, operationID string, attempt int, category domain.Category, message string, notSent bool, known *bridge.Known) error {
	err := s.record(ctx, resource, shadowID, known, func(res domain.Resource) domain.Command {
		return domain.RecordFailure{Resource: res, OperationID: operationID, Attempt: attempt,
			Error: domain.OperationError{Category: category, Message: message}, NotSent: notSent}
	})
	if err == nil {
		s.metrics.BridgeOutcomes.Inc(resource, "failed")
		switch category {
		case domain.CategoryCommunication:
			s.noteAvailability(ctx, resource, domain.AvailabilityDown, message)
		case domain.CategoryConfiguration, domain.CategorySecurity:
			s.noteAvailability(ctx, resource, domain.AvailabilityBroken, message)
		}
	}
	return err
}

// Reachable records that a probe reached the resource's system: a resource that was down is up
// again, and with retryOnRecovery its postponed operations are retried at once.
func (s *Service) Reachable(ctx context.Context, resource string) {
	s.noteAvailability(ctx, resource, domain.AvailabilityUp, "probe reached the target")
}

// availTTL bounds how long this instance trusts its memory of a resource's availability (another
// instance may have recorded a change meanwhile).
const availTTL = 2 * time.Second

// noteAvailability records a change of availability unless this instance saw the same status
// very recently. Failures are logged: availability is a report, not part of an operation.
func (s *Service) noteAvailability(ctx context.Context, resource string, status domain.Availability, reason string) {
	s.availMu.Lock()
	seen, ok := s.avail[resource]
	s.availMu.Unlock()
	if ok && seen.status == status && s.now().Sub(seen.at) < availTTL {
		return
	}
	changed, err := s.setAvailability(ctx, resource, status, reason)
	if err != nil {
		s.log.Warn("availability not recorded", "resource", resource, "status", status, "err", err)
		return
	}
	if changed && status == domain.AvailabilityUp {
		if res, err := s.catalog.Lookup(resource); err == nil && res.Consistency().RetryOnRecovery {
			// Beyond midPoint: the resource is back, retry what waits for it now. In the
			// background: the outcome being recorded must not wait for a sweep of the resource.
			s.background(time.Minute, func(rctx context.Context) {
				if n, err := s.Refresh(rctx, resource, "", true); err != nil {
					s.log.Warn("retry on recovery failed; timers and the sweep will retry", "resource", resource, "err", err)
				} else if n > 0 {
					s.log.Info("resource up again: postponed operations retried", "resource", resource, "shadows", n)
				}
			})
		}
	}
	s.availMu.Lock()
	if s.avail == nil {
		s.avail = map[string]availSeen{}
	}
	s.avail[resource] = availSeen{status: status, at: s.now()}
	s.availMu.Unlock()
}

// SetAvailability records the resource's availability if it changed (idempotent, safe across
// instances: optimistic concurrency on the resource's subject).
func (s *Service) SetAvailability(ctx context.Context, resource string, status domain.Availability, reason string) error {
	_, err := s.setAvailability(ctx, resource, status, reason)
	return err
}

// setAvailability is SetAvailability that also tells whether this call recorded a change.
func (s *Service) setAvailability(ctx context.Context, resource string, status domain.Availability, reason string) (bool, error) {
	_, changed, err := s.UpdateResource(ctx, resource, func(cur domain.ResourceState) ([]domain.Event, error) {
		return domain.DecideAvailability(cur, resource, status, reason, s.now())
	})
	return changed, err
}

// UpdateResource runs one unit of work on a resource's own state (eventstore.Store.UpdateResource)
// and returns the resulting state and whether events were stored.
func (s *Service) UpdateResource(ctx context.Context, resource string, decide func(domain.ResourceState) ([]domain.Event, error)) (domain.ResourceState, bool, error) {
	st, ev, err := s.store.UpdateResource(ctx, resource, decide)
	for _, e := range ev {
		s.metrics.EventsAppended.Inc(e.EventType())
	}
	return st, len(ev) > 0, err
}

// ResourceState returns a resource's availability and its recent changes.
func (s *Service) ResourceState(ctx context.Context, resource string) (domain.ResourceData, error) {
	if _, err := s.catalog.Lookup(resource); err != nil {
		return domain.ResourceData{}, err
	}
	st, _, err := s.store.LoadResource(ctx, resource)
	if err != nil {
		return domain.ResourceData{}, err
	}
	d := st.Data()
	d.Resource = resource
	if d.Changes == nil {
		d.Changes = []domain.AvailabilityChange{}
	}
	return d, nil
}

func (s *Service) record(ctx context.Context, resource, shadowID string, known *bridge.Known, mk func(domain.Resource) domain.Command) error {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return err
	}
	cmd := mk(res)
	now := s.now()
	_, err = s.UpdateFrom(ctx, resource, shadowID, "", known, func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, cmd, now)
	})
	return err
}

// Refresh refreshes one shadow, or every shadow of the resource with unfinished operations when
// shadowID is empty, and returns how many shadows changed.
func (s *Service) Refresh(ctx context.Context, resource, shadowID string, force bool) (int, error) {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return 0, fmt.Errorf("refresh: %w", err)
	}
	ids := []string{shadowID}
	if shadowID == "" {
		if s.pending == nil {
			return 0, errors.New("refresh: no pending index configured")
		}
		list, err := s.pending.Pending(ctx, resource)
		if err != nil {
			return 0, err
		}
		ids = ids[:0]
		for _, d := range list {
			ids = append(ids, d.ShadowID)
		}
	}
	now := s.now()
	one := func(id string) (bool, error) {
		out, err := s.Update(ctx, resource, id, "", func(st domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(st, domain.Refresh{Resource: res, ForceRetry: force}, now)
		})
		if err != nil {
			if shadowID == "" && errors.Is(err, domain.CategoryNotFound) {
				return false, nil
			}
			return false, err
		}
		return len(out.Events) > 0, nil
	}
	if len(ids) == 1 {
		changed, err := one(ids[0])
		if changed {
			return 1, err
		}
		return 0, err
	}
	// Many shadows (a sweep, a recovery, the end of maintenance): in parallel, bounded. Each
	// shadow is its own aggregate, so order among them does not matter.
	var (
		n    atomic.Int64
		errs = make(chan error, 1)
		sem  = make(chan struct{}, refreshParallel)
		wg   sync.WaitGroup
	)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			changed, err := one(id)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			if changed {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return int(n.Load()), err
	default:
	}
	return int(n.Load()), ctx.Err()
}

// refreshParallel bounds the shadows one resource-wide refresh decides at once.
const refreshParallel = 16

// Resolve finds the live shadow holding an identifier: {attribute: [value]} naming the secondary or
// primary identifier of one of the resource's object classes (objectClass narrows the search).
func (s *Service) Resolve(ctx context.Context, resource, objectClass string, ids domain.Attributes) (string, error) {
	res, err := s.catalog.Lookup(resource)
	if err != nil {
		return "", err
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%w: identifiers must name exactly one attribute", domain.ErrInvalidCommand)
	}
	var attr string
	var vals []any
	for a, v := range ids {
		attr, vals = a, v
	}
	if len(vals) != 1 {
		return "", fmt.Errorf("%w: identifier %q needs exactly one value", domain.ErrInvalidCommand, attr)
	}
	v, err := domain.NormalizeValue(vals[0])
	if err != nil {
		return "", err
	}
	for _, oc := range objectClasses(res, objectClass) {
		kind := domain.SecondaryIdentifier
		switch attr {
		case oc.SecondaryIdentifier:
		case oc.PrimaryIdentifier:
			kind = domain.PrimaryIdentifier
		default:
			continue
		}
		owner, err := s.store.Owner(ctx, domain.Claim{Kind: kind, Resource: resource, ObjectClass: oc.Name, Attribute: attr, Value: v})
		if err != nil {
			return "", err
		}
		if owner != "" {
			return owner, nil
		}
	}
	return "", fmt.Errorf("%w: no live shadow of resource %q with %s=%v", domain.ErrShadowNotFound, resource, attr, v)
}

func objectClasses(res domain.Resource, name string) []domain.ObjectClass {
	if name != "" {
		if oc, ok := res.ObjectClass(name); ok {
			return []domain.ObjectClass{oc}
		}
		return nil
	}
	return res.ObjectClasses()
}
