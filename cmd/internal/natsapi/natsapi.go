// Package natsapi serves shadowbridge's use cases (package service) as the NATS micro service
// `shadowbridge`: it decodes each request's body (package api), calls the use case, and maps
// the outcome to micro's reply convention (a status code per error category, StatusOf). It
// holds no state of its own beyond the connection it answers on.
package natsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"go.opentelemetry.io/otel/trace/noop"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/buildinfo"
	"shadowbridge/cmd/internal/metrics"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// Version is reported by the micro service.
const Version = buildinfo.Version

// ServeOptions configure the micro service.
type ServeOptions struct {
	Prefix string // "prov"
	// Concurrency bounds the requests handled at once by this instance (default 256).
	Concurrency int
	// Timeout bounds the handling of one request (default 10s).
	Timeout time.Duration
	// Metrics counts requests and their durations (default: a set of its own).
	Metrics *metrics.Set
	// Tracer makes every command a span, its W3C traceparent header its parent (default: none
	// recorded).
	Tracer trace.Tracer
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// server answers the requests of one Serve.
type server struct {
	svc     *service.Service
	nc      *nats.Conn
	prefix  string
	metrics *metrics.Set
	tracer  trace.Tracer
	log     *slog.Logger
	micro   *Service
}

// Serve registers the micro service `shadowbridge` on nc, answering with svc: it subscribes to
// <prefix>.cmd.> and <prefix>.query.> in queue group "shadowbridge" (instances share the load),
// and answers the micro discovery protocol ($SRV) with one endpoint per command verb
// (<prefix>.cmd.*.<verb>) and per query (<prefix>.query.<name>), each with its real stats.
// Requests are handled on worker goroutines that svc.Close waits for; one that arrives once Close
// has begun is answered 503 ("try again": another instance takes it). Stop the returned service to
// unsubscribe.
func Serve(ctx context.Context, nc *nats.Conn, svc *service.Service, o ServeOptions) (*Service, error) {
	o = o.withDefaults()
	s := &server{svc: svc, nc: nc, prefix: o.Prefix, metrics: o.Metrics, tracer: o.Tracer, log: o.Logger.WithGroup("service")}
	s.micro = newService(nc, o.Prefix, "shadowbridge")
	sem := make(chan struct{}, o.Concurrency)
	async := func(h func(context.Context, *nats.Msg) (any, error)) nats.MsgHandler {
		return func(m *nats.Msg) {
			start := time.Now()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			started := svc.Go(func() {
				defer func() { <-sem }()
				rctx, cancel := context.WithTimeout(ctx, o.Timeout)
				defer cancel()
				reply, err := h(rctx, m)
				s.finish(m, start, reply, err)
			})
			if !started { // closing: another instance takes the retry
				<-sem
				s.finish(m, start, nil, fmt.Errorf("%w: shadowbridge is stopping; try again", domain.CategoryCommunication))
			}
		}
	}
	for subject, h := range map[string]func(context.Context, *nats.Msg) (any, error){
		o.Prefix + ".cmd.>": s.handleCommand, o.Prefix + ".query.>": s.handleQuery,
	} {
		sub, err := nc.QueueSubscribe(subject, s.micro.queue, async(h))
		if err != nil {
			_ = s.micro.Stop()
			return nil, fmt.Errorf("service: subscribe %s: %w", subject, err)
		}
		s.micro.reqSubs = append(s.micro.reqSubs, sub)
	}
	if err := s.micro.subscribeDiscovery(); err != nil {
		_ = s.micro.Stop()
		return nil, fmt.Errorf("service: discovery: %w", err)
	}
	return s.micro, nil
}

func (o ServeOptions) withDefaults() ServeOptions {
	if o.Prefix == "" {
		o.Prefix = "prov"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider().Tracer("shadowbridge")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// kindOf names a request for metrics: a command's verb or a query's name (query true); anything
// else is "unknown", so that a client publishing to made-up subjects cannot add series.
func kindOf(subject string) (name string, query bool) {
	i := strings.LastIndexByte(subject, '.')
	name = subject[i+1:]
	if strings.Contains(subject, ".query.") {
		if slices.Contains(QueryNames, name) {
			return name, true
		}
		return "unknown", true
	}
	if slices.Contains(CommandVerbs, name) {
		return name, false
	}
	return "unknown", false
}

// finish answers a request (its reply, or err in micro's error convention) and counts it: in the
// Prometheus metrics by outcome and duration, and in the discovery stats of its endpoint.
func (s *server) finish(m *nats.Msg, start time.Time, reply any, err error) {
	var (
		data []byte
		h    nats.Header
		code int
	)
	if err == nil {
		if data, err = json.Marshal(reply); err != nil {
			err = fmt.Errorf("encode reply: %w", err)
		}
	}
	outcome := "ok"
	if err != nil {
		var cat domain.Category
		code, cat = api.StatusOf(err)
		outcome = string(cat)
		data, h = errorReply(code, cat, err)
	}
	// Counted before the reply goes out: a client that has its answer finds it in the metrics and
	// the stats (counted after, a scrape right after the reply missed it now and then).
	elapsed := time.Since(start)
	s.micro.record(m.Subject, elapsed, code, err)
	if name, query := kindOf(m.Subject); query {
		s.metrics.Queries.Inc(name, outcome)
		s.metrics.QueryDuration.Observe(elapsed, name)
	} else {
		s.metrics.Commands.Inc(name, outcome)
		s.metrics.CommandDuration.Observe(elapsed, name)
	}
	s.send(m, data, h)
}

// errorReply is micro's error convention: the status code and a one-line message in headers,
// and the full message with its category in the body.
func errorReply(code int, cat domain.Category, err error) ([]byte, nats.Header) {
	var body api.ErrorBody
	body.Error.Code = string(cat)
	body.Error.Message = err.Error()
	b, _ := json.Marshal(body)
	h := nats.Header{}
	h.Set(micro.ErrorCodeHeader, strconv.Itoa(code))
	h.Set(micro.ErrorHeader, strings.ReplaceAll(err.Error(), "\n", "; "))
	return b, h
}

func (s *server) send(m *nats.Msg, data []byte, h nats.Header) {
	if m.Reply == "" {
		return // a publish without a reply subject: nobody to answer
	}
	if err := s.nc.PublishMsg(&nats.Msg{Subject: m.Reply, Data: data, Header: h}); err != nil {
		s.log.Warn("reply not sent", "subject", m.Subject, "err", err)
	}
}

// CommandVerbs are the verbs of <prefix>.cmd.<resource>.<verb>, and QueryNames the names of
// <prefix>.query.<name> (docs/asyncapi.yaml is checked against them).
var (
	CommandVerbs = []string{"add", "modify", "delete", "refresh", "confirm", "cancel", "maintenance", "notify", "reconcile", "page"}
	QueryNames   = []string{"shadow", "pending", "history", "explain", "resource"}
)

// command runs one command verb on a resource: its body decoded, its use case called.
type command func(s *server, ctx context.Context, resource string, data []byte) (any, error)

var commands = map[string]command{
	"add": func(s *server, ctx context.Context, resource string, data []byte) (any, error) {
		return provision[api.AddBody](s, ctx, resource, data)
	},
	"modify": func(s *server, ctx context.Context, resource string, data []byte) (any, error) {
		return provision[api.ModifyBody](s, ctx, resource, data)
	},
	"delete": func(s *server, ctx context.Context, resource string, data []byte) (any, error) {
		return provision[api.DeleteBody](s, ctx, resource, data)
	},
	"refresh":     (*server).refresh,
	"confirm":     (*server).confirm,
	"cancel":      (*server).cancel,
	"notify":      (*server).notify,
	"reconcile":   (*server).reconcile,
	"page":        (*server).page,
	"maintenance": (*server).maintenance,
}

// handleCommand runs <prefix>.cmd.<resource>.<verb>, a span around it.
func (s *server) handleCommand(ctx context.Context, m *nats.Msg) (any, error) {
	rest := strings.TrimPrefix(m.Subject, s.prefix+".cmd.")
	resource, verb, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(verb, ".") {
		return nil, fmt.Errorf("%w: subject %q: want %s.cmd.<resource>.<add|modify|delete|refresh|confirm>", domain.ErrInvalidCommand, m.Subject, s.prefix)
	}
	if _, err := s.svc.Catalog().Lookup(resource); err != nil {
		return nil, &notFound{err}
	}
	name, _ := kindOf(m.Subject)
	ctx, span := s.tracer.Start(traceContext.Extract(ctx, headerCarrier(m.Header)), "command "+name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("shadowbridge.resource", resource)))
	defer span.End()
	run, ok := commands[verb]
	if !ok {
		return nil, &notFound{fmt.Errorf("unknown command %q (want %s)", verb, strings.Join(CommandVerbs, ", "))}
	}
	reply, err := run(s, ctx, resource, m.Data)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "refused")
		s.log.Debug("command refused", "subject", m.Subject, "err", err)
	}
	return reply, err
}

// traceContext reads a command's W3C traceparent/tracestate headers.
var traceContext = propagation.TraceContext{}

// headerCarrier reads NATS headers for the propagator, whatever the case of their names.
type headerCarrier nats.Header

func (h headerCarrier) Get(key string) string {
	if v := nats.Header(h).Get(key); v != "" {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
func (h headerCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }
func (h headerCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// notFound turns an unknown resource or verb into a 404.
type notFound struct{ err error }

func (e *notFound) Error() string        { return e.err.Error() }
func (e *notFound) Unwrap() error        { return e.err }
func (e *notFound) Is(target error) bool { return target == domain.CategoryNotFound }

// provision decodes an add, modify or delete body and provisions it.
func provision[B interface {
	Request(string) (service.Request, error)
}](s *server, ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[B](data)
	if err != nil {
		return nil, err
	}
	req, err := b.Request(resource)
	if err != nil {
		return nil, err
	}
	return s.svc.Provision(ctx, req)
}

func (s *server) refresh(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.RefreshBody](data)
	if err != nil {
		return nil, err
	}
	if b.ShadowID != "" && !domain.ValidID(b.ShadowID) {
		return nil, fmt.Errorf("refresh: %w: shadowId %q is not a UUID", domain.ErrInvalidID, b.ShadowID)
	}
	n, err := s.svc.Refresh(ctx, resource, b.ShadowID, b.ForceRetry)
	if err != nil {
		return nil, err
	}
	return map[string]int{"refreshed": n}, nil
}

func (s *server) confirm(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.ConfirmBody](data)
	if err != nil {
		return nil, err
	}
	c, err := b.Request(resource)
	if err != nil {
		return nil, err
	}
	return s.svc.Confirm(ctx, c)
}

func (s *server) cancel(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.CancelBody](data)
	if err != nil {
		return nil, err
	}
	if b.OperationID == "" {
		return nil, fmt.Errorf("cancel: %w: operationId is required", api.ErrBadRequest)
	}
	return s.svc.Cancel(ctx, resource, b.OperationID)
}

func (s *server) notify(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.NotifyBody](data)
	if err != nil {
		return nil, err
	}
	n, err := b.Notification(resource)
	if err != nil {
		return nil, err
	}
	return s.svc.Notify(ctx, n)
}

func (s *server) reconcile(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.ReconcileBody](data)
	if err != nil {
		return nil, err
	}
	return s.svc.Reconcile(ctx, resource, b.RequestID)
}

func (s *server) page(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.PageBody](data)
	if err != nil {
		return nil, err
	}
	p, err := b.ListingPage(resource)
	if err != nil {
		return nil, err
	}
	return s.svc.ApplyPage(ctx, p)
}

func (s *server) maintenance(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := api.Decode[api.MaintenanceBody](data)
	if err != nil {
		return nil, err
	}
	if b.Maintenance == nil {
		return nil, fmt.Errorf("maintenance: %w: maintenance (true or false) is required", api.ErrBadRequest)
	}
	return s.svc.SetMaintenance(ctx, resource, *b.Maintenance, b.Reason)
}

// query runs one query: its body decoded, its use case called.
type query func(s *server, ctx context.Context, data []byte) (any, error)

var queries = map[string]query{
	"shadow": (*server).queryShadow, "pending": (*server).queryPending, "history": (*server).queryHistory,
	"resource": (*server).queryResource, "explain": (*server).queryExplain,
}

// handleQuery runs <prefix>.query.<name>.
func (s *server) handleQuery(ctx context.Context, m *nats.Msg) (any, error) {
	q := strings.TrimPrefix(m.Subject, s.prefix+".query.")
	run, ok := queries[q]
	if !ok {
		return nil, &notFound{fmt.Errorf("unknown query %q (want %s)", q, strings.Join(QueryNames, ", "))}
	}
	return run(s, ctx, m.Data)
}

func (s *server) queryShadow(ctx context.Context, data []byte) (any, error) {
	q, err := api.Decode[api.ShadowQuery](data)
	if err != nil {
		return nil, err
	}
	asOf, err := q.Time()
	if err != nil {
		return nil, err
	}
	return s.svc.Shadow(ctx, q.ShadowID, asOf)
}

func (s *server) queryResource(ctx context.Context, data []byte) (any, error) {
	q, err := api.Decode[api.ResourceQuery](data)
	if err != nil {
		return nil, err
	}
	reply, err := s.svc.ResourceState(ctx, q.Resource)
	if errors.Is(err, domain.ErrUnknownResource) {
		err = &notFound{err}
	}
	return reply, err
}

func (s *server) queryExplain(ctx context.Context, data []byte) (any, error) {
	q, err := api.Decode[api.HistoryQuery](data)
	if err != nil {
		return nil, err
	}
	return s.svc.Explain(ctx, q.ShadowID)
}

func (s *server) queryPending(ctx context.Context, data []byte) (any, error) {
	q, err := api.Decode[api.PendingQuery](data)
	if err != nil {
		return nil, err
	}
	if q.Resource != "" {
		if _, err := s.svc.Catalog().Lookup(q.Resource); err != nil {
			return nil, &notFound{err}
		}
	}
	switch {
	case q.Limit < 0 || q.Limit > api.MaxPendingLimit:
		return nil, fmt.Errorf("%w: limit must be between 1 and %d", api.ErrBadRequest, api.MaxPendingLimit)
	case q.Limit == 0:
		q.Limit = api.DefaultPendingLimit
	}
	page, err := s.svc.PendingPage(ctx, q.Resource, q.After, q.Limit)
	if err != nil {
		return nil, err
	}
	// A page must fit one NATS message: it ends before the shadow that would not fit.
	room, size := int(s.nc.MaxPayload())-4096, 0
	out := pendingReply{Shadows: make([]json.RawMessage, 0, len(page.Shadows)), Total: page.Total, Next: page.Next}
	for i, sd := range page.Shadows {
		var b []byte
		if i < len(page.JSON) {
			b = page.JSON[i] // the projection's JSON as it is: no second encoding
		} else if b, err = json.Marshal(sd); err != nil {
			return nil, err
		}
		if size += len(b) + 1; size > room && i > 0 {
			prev := page.Shadows[i-1]
			out.Next = prev.Resource + "." + prev.ShadowID
			break
		}
		out.Shadows = append(out.Shadows, b)
		if r, err := s.svc.Catalog().Lookup(sd.Resource); err == nil {
			if at, ok := domain.NextRetry(domain.RestoreShadow(sd), r.Consistency()); ok {
				if out.NextAttempts == nil {
					out.NextAttempts = map[string]time.Time{}
				}
				out.NextAttempts[sd.ShadowID] = at
			}
		}
	}
	return out, nil
}

// pendingReply is the reply of prov.query.pending (see projections.PendingPage).
type pendingReply struct {
	Shadows []json.RawMessage `json:"shadows"`
	Total   int               `json:"total"`
	Next    string            `json:"next,omitempty"`
	// NextAttempts holds, for the shadows of the page that wait for a retry, when the earliest
	// one is due (lastAttemptTimestamp + operationRetryPeriod).
	NextAttempts map[string]time.Time `json:"nextAttempts,omitempty"`
}

func (s *server) queryHistory(ctx context.Context, data []byte) (any, error) {
	q, err := api.Decode[api.HistoryQuery](data)
	if err != nil {
		return nil, err
	}
	ev, err := s.svc.History(ctx, q.ShadowID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"events": ev}, nil
}
