package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/projections"
)

// Version is reported by the micro service.
const Version = "0.1.0"

// Status codes of the micro error convention.
const (
	CodeBadRequest  = 400
	CodeNotFound    = 404
	CodeConflict    = 409
	CodeUnavailable = 503
)

// ErrorBody is the JSON body of an error reply.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StatusOf maps an error to the micro status code by its category.
func StatusOf(err error) (int, domain.Category) {
	for _, c := range []struct {
		cat  domain.Category
		code int
	}{
		{domain.CategoryNotFound, CodeNotFound},
		{domain.CategoryAlreadyExists, CodeConflict},
		{domain.CategoryConflict, CodeConflict},
		{domain.CategoryCommunication, CodeUnavailable},
		{domain.CategorySchema, CodeBadRequest},
		{domain.CategoryConfiguration, CodeBadRequest},
		{domain.CategorySecurity, CodeBadRequest},
	} {
		if errors.Is(err, c.cat) {
			return c.code, c.cat
		}
	}
	if errors.Is(err, eventstore.ErrConflict) {
		return CodeConflict, domain.CategoryConflict
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, nats.ErrTimeout) {
		return CodeUnavailable, domain.CategoryCommunication
	}
	return CodeUnavailable, domain.CategoryGeneric
}

// ServeOptions configure the micro service.
type ServeOptions struct {
	Prefix string // "prov"
	// Concurrency bounds the requests handled at once by this instance (default 256).
	Concurrency int
	// Timeout bounds the handling of one request (default 10s).
	Timeout time.Duration
}

// Serve registers the micro service `shadowbridge` on nc: endpoint "commands" on <prefix>.cmd.>
// and "queries" on <prefix>.query.>, in queue group "shadowbridge" so that instances share the
// load. Stop the returned service to unsubscribe.
func (s *Service) Serve(ctx context.Context, nc *nats.Conn, o ServeOptions) (micro.Service, error) {
	if o.Prefix == "" {
		o.Prefix = "prov"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	s.nc = nc
	svc, err := micro.AddService(nc, micro.Config{
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
			started := s.goWork(func() {
				defer func() { <-sem }()
				rctx, cancel := context.WithTimeout(ctx, o.Timeout)
				defer cancel()
				h(rctx, r)
			})
			if !started { // closing: another instance takes the retry
				<-sem
				s.respondErr(r, fmt.Errorf("%w: shadowbridge is stopping; try again", domain.CategoryCommunication))
			}
		}
	}
	if err := svc.AddEndpoint("commands", async(func(ctx context.Context, r micro.Request) {
		defer s.observe(r, time.Now())
		s.handleCommand(ctx, o.Prefix, r)
	}),
		micro.WithEndpointSubject(o.Prefix+".cmd.>")); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("service: %w", err)
	}
	if err := svc.AddEndpoint("queries", async(func(ctx context.Context, r micro.Request) {
		defer s.observe(r, time.Now())
		s.handleQuery(ctx, o.Prefix, r)
	}),
		micro.WithEndpointSubject(o.Prefix+".query.>")); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("service: %w", err)
	}
	return svc, nil
}

// Replies are published on the request's reply subject directly rather than through
// micro.Request.Respond/Error: handlers run on worker goroutines, and micro reads a request's error
// state after its handler returns, which would race. The headers and body follow micro's
// convention exactly; micro still counts the requests.
// verbOf names a request for metrics: the command verb, or "query_<name>"; anything else is
// "unknown", so that a client publishing to made-up subjects cannot add series to /metrics.
func verbOf(subject string) string {
	i := strings.LastIndexByte(subject, '.')
	verb := subject[i+1:]
	if strings.Contains(subject, ".query.") {
		if slices.Contains(QueryNames, verb) {
			return "query_" + verb
		}
		return "unknown"
	}
	if slices.Contains(CommandVerbs, verb) {
		return verb
	}
	return "unknown"
}

func (s *Service) observe(r micro.Request, start time.Time) {
	s.metrics.CommandDuration.Observe(time.Since(start), verbOf(r.Subject()))
}

func (s *Service) respondJSON(r micro.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.respondErr(r, fmt.Errorf("encode reply: %w", err))
		return
	}
	s.metrics.Commands.Inc(verbOf(r.Subject()), "ok")
	s.reply(r, b, nil)
}

func (s *Service) respondErr(r micro.Request, err error) {
	code, cat := StatusOf(err)
	s.metrics.Commands.Inc(verbOf(r.Subject()), string(cat))
	var body ErrorBody
	body.Error.Code = string(cat)
	body.Error.Message = err.Error()
	b, _ := json.Marshal(body)
	h := nats.Header{}
	h.Set(micro.ErrorCodeHeader, strconv.Itoa(code))
	// The header carries one line; the body carries the full message.
	h.Set(micro.ErrorHeader, strings.ReplaceAll(err.Error(), "\n", "; "))
	s.reply(r, b, h)
}

func (s *Service) reply(r micro.Request, data []byte, h nats.Header) {
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

func (s *Service) handleCommand(ctx context.Context, prefix string, r micro.Request) {
	rest := strings.TrimPrefix(r.Subject(), prefix+".cmd.")
	resource, verb, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(verb, ".") {
		s.respondErr(r, fmt.Errorf("%w: subject %q: want %s.cmd.<resource>.<add|modify|delete|refresh|confirm>", domain.ErrInvalidCommand, r.Subject(), prefix))
		return
	}
	if _, err := s.catalog.Lookup(resource); err != nil {
		s.respondErr(r, &notFound{err})
		return
	}
	ctx, span := s.tracer.Start(traceContext.Extract(ctx, headerCarrier(r.Headers())), "command "+verbOf(r.Subject()),
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("shadowbridge.resource", resource)))
	defer span.End()
	var (
		reply any
		err   error
	)
	switch verb {
	case "add":
		reply, err = s.cmdAdd(ctx, resource, r.Data())
	case "modify":
		reply, err = s.cmdModify(ctx, resource, r.Data())
	case "delete":
		reply, err = s.cmdDelete(ctx, resource, r.Data())
	case "refresh":
		reply, err = s.cmdRefresh(ctx, resource, r.Data())
	case "confirm":
		reply, err = s.cmdConfirm(ctx, resource, r.Data())
	case "cancel":
		var b CancelBody
		if b, err = Decode[CancelBody](r.Data()); err == nil {
			if b.OperationID == "" {
				err = fmt.Errorf("cancel: %w: operationId is required", ErrBadRequest)
			} else {
				reply, err = s.Cancel(ctx, resource, b.OperationID)
			}
		}
	case "notify":
		reply, err = s.cmdNotify(ctx, resource, r.Data())
	case "reconcile":
		var b ReconcileBody
		if b, err = Decode[ReconcileBody](r.Data()); err == nil {
			reply, err = s.Reconcile(ctx, resource, b.RequestID)
		}
	case "page":
		var b PageBody
		if b, err = Decode[PageBody](r.Data()); err == nil {
			reply, err = s.PageBody(ctx, resource, b)
		}
	case "maintenance":
		var b MaintenanceBody
		if b, err = Decode[MaintenanceBody](r.Data()); err == nil {
			if b.Maintenance == nil {
				err = fmt.Errorf("maintenance: %w: maintenance (true or false) is required", ErrBadRequest)
			} else {
				reply, err = s.SetMaintenance(ctx, resource, *b.Maintenance, b.Reason)
			}
		}
	default:
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

func (s *Service) cmdAdd(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := Decode[AddBody](data)
	if err != nil {
		return nil, err
	}
	attrs, err := AttributesFrom(b.Attributes.Values)
	if err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	return s.Provision(ctx, Request{Verb: "add", Resource: resource, RequestID: b.RequestID, Fingerprint: Fingerprint(b),
		ObjectClass: b.ObjectClass, Attributes: attrs, Order: orderOf(b.Attributes.Order), Assigned: b.Assigned})
}

// target checks how a modify or delete names its shadow: by id, or by identifiers (resolved by
// Provision once the request id has been looked at).
func target(verb, shadowID string, ids map[string][]any) (string, domain.Attributes, error) {
	switch {
	case shadowID != "" && len(ids) > 0:
		return "", nil, fmt.Errorf("%s: %w: give shadowId or identifiers, not both", verb, ErrBadRequest)
	case shadowID != "":
		if !domain.ValidID(shadowID) {
			return "", nil, fmt.Errorf("%s: %w: shadowId %q is not a UUID", verb, domain.ErrInvalidID, shadowID)
		}
		return shadowID, nil, nil
	case len(ids) > 0:
		attrs, err := AttributesFrom(ids)
		if err != nil {
			return "", nil, fmt.Errorf("%s: identifiers: %w", verb, err)
		}
		if len(attrs) != 1 {
			return "", nil, fmt.Errorf("%s: %w: identifiers must name exactly one attribute", verb, domain.ErrInvalidCommand)
		}
		return "", attrs, nil
	}
	return "", nil, fmt.Errorf("%s: %w: shadowId or identifiers is required", verb, ErrBadRequest)
}

func (s *Service) cmdModify(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := Decode[ModifyBody](data)
	if err != nil {
		return nil, err
	}
	id, ids, err := target("modify", b.ShadowID, b.Identifiers)
	if err != nil {
		return nil, err
	}
	changes, err := ChangesFrom(b.Changes.Values)
	if err != nil {
		return nil, fmt.Errorf("modify: %w", err)
	}
	return s.Provision(ctx, Request{Verb: "modify", Resource: resource, ShadowID: id, Identifiers: ids, ObjectClass: b.ObjectClass,
		RequestID: b.RequestID, Fingerprint: Fingerprint(b), Changes: changes, Order: orderOf(b.Changes.Order)})
}

func (s *Service) cmdDelete(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := Decode[DeleteBody](data)
	if err != nil {
		return nil, err
	}
	id, ids, err := target("delete", b.ShadowID, b.Identifiers)
	if err != nil {
		return nil, err
	}
	return s.Provision(ctx, Request{Verb: "delete", Resource: resource, ShadowID: id, Identifiers: ids, ObjectClass: b.ObjectClass,
		RequestID: b.RequestID, Fingerprint: Fingerprint(b)})
}

func (s *Service) cmdRefresh(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := Decode[RefreshBody](data)
	if err != nil {
		return nil, err
	}
	if b.ShadowID != "" && !domain.ValidID(b.ShadowID) {
		return nil, fmt.Errorf("refresh: %w: shadowId %q is not a UUID", domain.ErrInvalidID, b.ShadowID)
	}
	n, err := s.Refresh(ctx, resource, b.ShadowID, b.ForceRetry)
	if err != nil {
		return nil, err
	}
	return map[string]int{"refreshed": n}, nil
}

func (s *Service) cmdNotify(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := Decode[NotifyBody](data)
	if err != nil {
		return nil, err
	}
	return s.NotifyBody(ctx, resource, b)
}

// NotifyBody runs a decoded notification (the NATS notify command and the AMQP notification
// address).
func (s *Service) NotifyBody(ctx context.Context, resource string, b NotifyBody) (NotifyReply, error) {
	ids, err := AttributesFrom(b.PrimaryIdentifiers)
	if err != nil {
		return NotifyReply{}, fmt.Errorf("notify: primaryIdentifiers: %w", err)
	}
	attrs, err := AttributesFrom(b.Attributes)
	if err != nil {
		return NotifyReply{}, fmt.Errorf("notify: attributes: %w", err)
	}
	var at time.Time
	if b.ObservedAt != "" {
		if at, err = time.Parse(time.RFC3339Nano, b.ObservedAt); err != nil {
			return NotifyReply{}, fmt.Errorf("notify: %w: observedAt %q is not an RFC 3339 time", ErrBadRequest, b.ObservedAt)
		}
	}
	return s.Notify(ctx, Notification{Resource: resource, RequestID: b.RequestID, Fingerprint: Fingerprint(b),
		Change: domain.ChangeType(b.Change), ObjectClass: b.ObjectClass, PrimaryIdentifiers: ids, Attributes: attrs, ObservedAt: at})
}

// PageBody applies a decoded page (the NATS page command and pages on the confirmation address).
func (s *Service) PageBody(ctx context.Context, resource string, b PageBody) (PageReply, error) {
	if !domain.ValidID(b.ReconciliationID) || b.Page < 1 {
		return PageReply{}, fmt.Errorf("page: %w: reconciliationId (a UUID) and page (from 1) are required", ErrBadRequest)
	}
	p := Page{Resource: resource, ReconciliationID: b.ReconciliationID, Number: b.Page, Last: b.Last}
	for i, a := range b.Accounts {
		ids, err := AttributesFrom(a.PrimaryIdentifiers)
		if err != nil {
			return PageReply{}, fmt.Errorf("page: account %d: primaryIdentifiers: %w", i, err)
		}
		attrs, err := AttributesFrom(a.Attributes)
		if err != nil {
			return PageReply{}, fmt.Errorf("page: account %d: attributes: %w", i, err)
		}
		p.Accounts = append(p.Accounts, ListedAccount{PrimaryIdentifiers: ids, Attributes: attrs, AppliedSequence: a.AppliedSequence})
	}
	return s.ApplyPage(ctx, p)
}

func (s *Service) cmdConfirm(ctx context.Context, resource string, data []byte) (any, error) {
	b, err := Decode[ConfirmBody](data)
	if err != nil {
		return nil, err
	}
	return s.ConfirmBody(ctx, resource, b)
}

// ConfirmBody runs a decoded confirmation (the NATS confirm command and AMQP confirmations).
func (s *Service) ConfirmBody(ctx context.Context, resource string, b ConfirmBody) (Reply, error) {
	if b.OperationID == "" {
		return Reply{}, fmt.Errorf("confirm: %w: operationId is required", ErrBadRequest)
	}
	ids, err := AttributesFrom(b.PrimaryIdentifiers)
	if err != nil {
		return Reply{}, fmt.Errorf("confirm: primaryIdentifiers: %w", err)
	}
	attrs, err := AttributesFrom(b.Attributes)
	if err != nil {
		return Reply{}, fmt.Errorf("confirm: attributes: %w", err)
	}
	return s.Confirm(ctx, ConfirmRequest{Resource: resource, OperationID: b.OperationID,
		Result: domain.ResultStatus(b.ResultStatus), Message: b.Message, PrimaryIdentifiers: ids,
		ErrorCategory: domain.Category(b.ErrorCategory), Attributes: attrs})
}

func (s *Service) handleQuery(ctx context.Context, prefix string, r micro.Request) {
	var (
		reply any
		err   error
	)
	switch q := strings.TrimPrefix(r.Subject(), prefix+".query."); q {
	case "shadow":
		reply, err = s.queryShadow(ctx, r.Data())
	case "pending":
		reply, err = s.queryPending(ctx, r.Data())
	case "history":
		reply, err = s.queryHistory(ctx, r.Data())
	case "resource":
		var q ResourceQuery
		if q, err = Decode[ResourceQuery](r.Data()); err == nil {
			reply, err = s.ResourceState(ctx, q.Resource)
			if errors.Is(err, domain.ErrUnknownResource) {
				err = &notFound{err}
			}
		}
	case "explain":
		var q HistoryQuery
		if q, err = Decode[HistoryQuery](r.Data()); err == nil {
			reply, err = s.Explain(ctx, q.ShadowID)
		}
	default:
		err = &notFound{fmt.Errorf("unknown query %q (want %s)", q, strings.Join(QueryNames, ", "))}
	}
	if err != nil {
		s.respondErr(r, err)
		return
	}
	s.respondJSON(r, reply)
}

// Explain says why the shadow is in its lifecycle state and what happens next (projections.Queries).
func (s *Service) Explain(ctx context.Context, shadowID string) (domain.Explanation, error) {
	return s.queries.Explain(ctx, shadowID, func(resource string) domain.Consistency {
		if res, err := s.catalog.Lookup(resource); err == nil {
			return res.Consistency()
		}
		return domain.DefaultConsistency()
	})
}

// Shadow returns the shadow now (refreshed first with refreshOnRead), or as it was at asOf when
// asOf is not zero (projections.Queries).
func (s *Service) Shadow(ctx context.Context, shadowID string, asOf time.Time) (domain.ShadowData, error) {
	if !asOf.IsZero() {
		return s.queries.AsOf(ctx, shadowID, asOf)
	}
	if !domain.ValidID(shadowID) {
		return domain.ShadowData{}, fmt.Errorf("shadow: %w: shadowId %q is not a UUID", domain.ErrInvalidID, shadowID)
	}
	st, _, err := s.store.LoadByID(ctx, shadowID)
	if err != nil {
		return domain.ShadowData{}, err
	}
	if !st.Created() {
		return domain.ShadowData{}, fmt.Errorf("get: %w: %s", domain.ErrShadowNotFound, shadowID)
	}
	if res, err := s.lookup(ctx, st.Resource()); err == nil && res.Consistency().RefreshOnRead {
		// refreshOnRead: retry what is due before answering, as midPoint does on get.
		out, err := s.Update(ctx, st.Resource(), shadowID, "", func(cur domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(cur, domain.Refresh{Resource: res}, s.now())
		})
		if err != nil {
			return domain.ShadowData{}, err
		}
		st = out.Shadow
	}
	return st.Data(), nil
}

func (s *Service) queryShadow(ctx context.Context, data []byte) (any, error) {
	q, err := Decode[ShadowQuery](data)
	if err != nil {
		return nil, err
	}
	var asOf time.Time
	if q.AsOf != "" {
		if asOf, err = time.Parse(time.RFC3339Nano, q.AsOf); err != nil {
			return nil, fmt.Errorf("%w: asOf %q is not an RFC 3339 time", ErrBadRequest, q.AsOf)
		}
	}
	return s.Shadow(ctx, q.ShadowID, asOf)
}

func (s *Service) queryPending(ctx context.Context, data []byte) (any, error) {
	q, err := Decode[PendingQuery](data)
	if err != nil {
		return nil, err
	}
	if q.Resource != "" {
		if _, err := s.catalog.Lookup(q.Resource); err != nil {
			return nil, &notFound{err}
		}
	}
	switch {
	case q.Limit < 0 || q.Limit > MaxPendingLimit:
		return nil, fmt.Errorf("%w: limit must be between 1 and %d", ErrBadRequest, MaxPendingLimit)
	case q.Limit == 0:
		q.Limit = DefaultPendingLimit
	}
	if s.pending == nil {
		return nil, fmt.Errorf("%w: pending index not available", eventstore.ErrUnavailable)
	}
	page, err := s.pending.PendingPage(ctx, q.Resource, q.After, q.Limit)
	if err != nil {
		return nil, err
	}
	// A page must fit one NATS message: it ends before the shadow that would not fit.
	room, size := int(s.nc.MaxPayload())-4096, 0
	out := pendingReply{Shadows: make([]json.RawMessage, 0, len(page.Shadows)), Total: page.Total, Next: page.Next}
	for i, sd := range page.Shadows {
		b, err := json.Marshal(sd)
		if err != nil {
			return nil, err
		}
		if size += len(b) + 1; size > room && i > 0 {
			prev := page.Shadows[i-1]
			out.Next = prev.Resource + "." + prev.ShadowID
			break
		}
		out.Shadows = append(out.Shadows, b)
		if r, err := s.catalog.Lookup(sd.Resource); err == nil {
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

// HistoryEvent is one event as history and audit show it.
type HistoryEvent = projections.HistoryEvent

// HistoryOf turns one record into history events (projections.HistoryOf).
func HistoryOf(rec *eventstore.Record) ([]HistoryEvent, error) { return projections.HistoryOf(rec) }

// History returns a shadow's events in order.
func (s *Service) History(ctx context.Context, shadowID string) ([]HistoryEvent, error) {
	return s.queries.History(ctx, shadowID)
}

func (s *Service) queryHistory(ctx context.Context, data []byte) (any, error) {
	q, err := Decode[HistoryQuery](data)
	if err != nil {
		return nil, err
	}
	ev, err := s.History(ctx, q.ShadowID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"events": ev}, nil
}
