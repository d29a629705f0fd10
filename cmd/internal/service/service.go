// Package service holds shadowbridge's use cases (provision.go, confirm.go, notify.go,
// reconcile.go, refresh.go, resources.go, outcomes.go, queries.go): each takes typed input built
// from domain types, decides with package domain and hands the decision to the event store's unit
// of work. It knows no transport: package natsapi serves it over NATS, package app wires the
// dispatcher and the AMQP receivers to it. Instances against one NATS coordinate through
// JetStream alone (expected sequences, KV revisions).
package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

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
	CommitAsOf(ctx context.Context, shadowID string, t time.Time) (*eventstore.Record, error)
	Owner(ctx context.Context, c domain.Claim) (string, error)
	// Owners and LoadMany are Owner and Load for many at once (a reconciliation page).
	Owners(ctx context.Context, claims []domain.Claim) ([]string, error)
	LoadMany(ctx context.Context, resource string, shadowIDs []string) ([]eventstore.Loaded, error)
	LookupOperation(ctx context.Context, operationID string) (string, string, bool, error)
	GetRequest(ctx context.Context, resource, requestID string) (*eventstore.RequestRecord, error)
	PutRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) error
	RefuseRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) (*eventstore.RequestRecord, bool, error)
	ReserveRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) (*eventstore.RequestRecord, bool, error)
	DropRequest(ctx context.Context, resource, requestID string, r eventstore.RequestRecord) error
}

var _ Store = (*eventstore.Store)(nil)

// Pending lists the shadows with unfinished operations (the projection's pending index).
type Pending interface {
	Pending(ctx context.Context, resource string) ([]domain.ShadowData, error)
	PendingPage(ctx context.Context, resource, after string, limit int) (projections.PendingPage, error)
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
	tracer  trace.Tracer
	// Reconciliation (WithReconciliation): the transport's list request, the projection's shadow
	// ids, the runs' seen marks.
	lister  Lister
	shadows ShadowLister
	seen    SeenMarks

	availMu sync.Mutex
	avail   map[string]availSeen // resource -> last availability seen, to skip no-op reports

	adminMu sync.Mutex
	admin   map[string]adminSeen // resource -> administrative state, read at most every adminTTL

	// Work that outlives a request (releases after maintenance, retries on recovery) and the
	// requests being handled; Close cancels the first and waits for both.
	// workMu orders starting work against Close: a WaitGroup must not grow from zero while
	// Close waits on it.
	workMu    sync.Mutex
	closing   bool
	work      sync.WaitGroup
	workCtx   context.Context
	stopWork  context.CancelFunc
	closeOnce sync.Once
}

// goWork runs fn on its own goroutine as work Close waits for, unless Close has begun (false:
// fn does not run).
func (s *Service) goWork(fn func()) bool {
	s.workMu.Lock()
	defer s.workMu.Unlock()
	if s.closing {
		return false
	}
	s.work.Go(fn)
	return true
}

// Go runs fn (a request's handling, say) on its own goroutine as work Close waits for, unless
// Close has begun: then fn does not run and Go returns false (the caller refuses the request, so
// that another instance takes it).
func (s *Service) Go(fn func()) bool { return s.goWork(fn) }

// background runs fn on its own goroutine with a context that Close cancels, bounded by timeout
// (not at all once Close has begun: its context would be over already).
func (s *Service) background(timeout time.Duration, fn func(ctx context.Context)) {
	s.goWork(func() {
		ctx, cancel := context.WithTimeout(s.workCtx, timeout)
		defer cancel()
		fn(ctx)
	})
}

// Close stops the service's background work and waits for it and for the requests being handled
// (stop taking requests first: see Serve); work offered after it began is refused. Safe to call
// more than once.
func (s *Service) Close() {
	s.workMu.Lock()
	s.closing = true
	s.workMu.Unlock()
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
	status    domain.Availability
	at        time.Time
	recording bool // a call is recording status now: the others with the same status skip
}

// Option configures a Service.
type Option func(*Service)

// WithMetrics makes the service count into m (default: a set of its own).
func WithMetrics(m *metrics.Set) Option { return func(s *Service) { s.metrics = m } }

// WithTracer makes every command a span (default: none recorded). A command's W3C
// traceparent header is its parent, and the operations it creates keep the command's span as
// theirs, so their attempts and confirmations continue the trace.
func WithTracer(t trace.Tracer) Option { return func(s *Service) { s.tracer = t } }

// WithClock makes now the service's clock (default: time.Now in UTC); every decision, cache and
// explanation reads it.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a service over the given resources.
func New(store Store, pending Pending, catalog domain.Catalog, log *slog.Logger, opts ...Option) *Service {
	if log == nil {
		log = slog.Default()
	}
	s := &Service{store: store, pending: pending, catalog: catalog, log: log.WithGroup("service"), avail: map[string]availSeen{},
		now: func() time.Time { return time.Now().UTC() }, metrics: metrics.New(), tracer: noop.NewTracerProvider().Tracer("shadowbridge")}
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

func (s *Service) lookup(ctx context.Context, resource string) (domain.Resource, error) {
	res, err := s.catalog.Lookup(resource)
	if err != nil {
		return res, err
	}
	return res.WithMaintenance(s.InMaintenance(ctx, resource)), nil
}

// ErrBadRequest is a request that cannot be decoded, or that names nothing a use case can act on.
var ErrBadRequest = &domain.Error{Category: domain.CategorySchema, Message: "bad request"}

// CategoryOf returns the category of a use case's error, the one its answer reports: the first
// of not-found, already-exists, conflict, communication, schema, configuration, security it
// matches (errors.Is); a conflict of concurrent updates (eventstore.ErrConflict) is a conflict,
// a deadline or a cancellation is communication; anything else is generic.
func CategoryOf(err error) domain.Category {
	for _, c := range []domain.Category{domain.CategoryNotFound, domain.CategoryAlreadyExists, domain.CategoryConflict,
		domain.CategoryCommunication, domain.CategorySchema, domain.CategoryConfiguration, domain.CategorySecurity} {
		if errors.Is(err, c) {
			return c
		}
	}
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		return domain.CategoryConflict
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return domain.CategoryCommunication
	}
	return domain.CategoryGeneric
}
