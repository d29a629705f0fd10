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
}

// Serve registers the micro service `shadowbridge` on nc, answering with svc: endpoint
// "commands" on <prefix>.cmd.> and "queries" on <prefix>.query.>, in queue group "shadowbridge"
// so that instances share the load. Requests are handled on worker goroutines that svc.Close
// waits for; one that arrives once Close has begun is answered 503 ("try again": another
// instance takes it). Stop the returned service to unsubscribe.
func Serve(ctx context.Context, nc *nats.Conn, svc *service.Service, o ServeOptions) (micro.Service, error) {
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
	s := &server{svc: svc, nc: nc, prefix: o.Prefix, metrics: o.Metrics, tracer: o.Tracer, log: o.Logger.WithGroup("service")}
	m, err := micro.AddService(nc, micro.Config{
		Name:        "shadowbridge",
		Version:     Version,
		Description: "event-sourced provisioning: commands and queries",
		QueueGroup:  "shadowbridge",
	})
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	sem := make(chan struct{}, o.Concurrency)
	async := func(h func(context.Context, micro.Request)) micro.HandlerFunc {
		return func(r micro.Request) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			started := svc.Go(func() {
				defer func() { <-sem }()
				rctx, cancel := context.WithTimeout(ctx, o.Timeout)
				defer cancel()
				defer s.observe(r, time.Now())
				h(rctx, r)
			})
			if !started { // closing: another instance takes the retry
				<-sem
				s.respondErr(r, fmt.Errorf("%w: shadowbridge is stopping; try again", domain.CategoryCommunication))
			}
		}
	}
	for _, e := range []struct {
		name, subject string
		h             func(context.Context, micro.Request)
	}{{"commands", o.Prefix + ".cmd.>", s.handleCommand}, {"queries", o.Prefix + ".query.>", s.handleQuery}} {
		if err := m.AddEndpoint(e.name, async(e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			_ = m.Stop()
			return nil, fmt.Errorf("service: %w", err)
		}
	}
	return m, nil
}

// Replies are published on the request's reply subject directly rather than through
// micro.Request.Respond/Error: handlers run on worker goroutines, and micro reads a request's error
// state after its handler returns, which would race. The headers and body follow micro's
// convention exactly; micro still counts the requests.

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

func (s *server) observe(r micro.Request, start time.Time) {
	if name, query := kindOf(r.Subject()); query {
		s.metrics.QueryDuration.Observe(time.Since(start), name)
	} else {
		s.metrics.CommandDuration.Observe(time.Since(start), name)
	}
}

// count counts a request's outcome: ok, or its error's category.
func (s *server) count(r micro.Request, outcome string) {
	if name, query := kindOf(r.Subject()); query {
		s.metrics.Queries.Inc(name, outcome)
	} else {
		s.metrics.Commands.Inc(name, outcome)
	}
}

func (s *server) respondJSON(r micro.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.respondErr(r, fmt.Errorf("encode reply: %w", err))
		return
	}
	s.count(r, "ok")
	s.reply(r, b, nil)
}

func (s *server) respondErr(r micro.Request, err error) {
	code, cat := api.StatusOf(err)
	s.count(r, string(cat))
	var body api.ErrorBody
	body.Error.Code = string(cat)
	body.Error.Message = err.Error()
	b, _ := json.Marshal(body)
	h := nats.Header{}
	h.Set(micro.ErrorCodeHeader, strconv.Itoa(code))
	// The header carries one line; the body carries the full message.
	h.Set(micro.ErrorHeader, strings.ReplaceAll(err.Error(), "\n", "; "))
	s.reply(r, b, h)
}

func (s *server) reply(r micro.Request, data []byte, h nats.Header) {
	if r.Reply() == "" {
		return // a publish without a reply subject: nobody to answer
	}
	if err := s.nc.PublishMsg(&nats.Msg{Subject: r.Reply(), Data: data, Header: h}); err != nil {
		s.log.Warn("reply not sent", "subject", r.Subject(), "err", err)
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

func (s *server) handleCommand(ctx context.Context, r micro.Request) {
	rest := strings.TrimPrefix(r.Subject(), s.prefix+".cmd.")
	resource, verb, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(verb, ".") {
		s.respondErr(r, fmt.Errorf("%w: subject %q: want %s.cmd.<resource>.<add|modify|delete|refresh|confirm>", domain.ErrInvalidCommand, r.Subject(), s.prefix))
		return
	}
	if _, err := s.svc.Catalog().Lookup(resource); err != nil {
		s.respondErr(r, &notFound{err})
		return
	}
	name, _ := kindOf(r.Subject())
	ctx, span := s.tracer.Start(traceContext.Extract(ctx, headerCarrier(r.Headers())), "command "+name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("shadowbridge.resource", resource)))
	defer span.End()
	var (
		reply any
		err   error
	)
	if run, ok := commands[verb]; ok {
		reply, err = run(s, ctx, resource, r.Data())
	} else {
		err = &notFound{fmt.Errorf("unknown command %q (want %s)", verb, strings.Join(CommandVerbs, ", "))}
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "refused")
		s.log.Debug("command refused", "subject", r.Subject(), "err", err)
		s.respondErr(r, err)
		return
	}
	s.respondJSON(r, reply)
}

// traceContext reads a command's W3C traceparent/tracestate headers.
var traceContext = propagation.TraceContext{}

// headerCarrier reads NATS headers for the propagator, whatever the case of their names.
type headerCarrier micro.Headers

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

func (s *server) handleQuery(ctx context.Context, r micro.Request) {
	var (
		reply any
		err   error
	)
	q := strings.TrimPrefix(r.Subject(), s.prefix+".query.")
	if run, ok := queries[q]; ok {
		reply, err = run(s, ctx, r.Data())
	} else {
		err = &notFound{fmt.Errorf("unknown query %q (want %s)", q, strings.Join(QueryNames, ", "))}
	}
	if err != nil {
		s.respondErr(r, err)
		return
	}
	s.respondJSON(r, reply)
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
