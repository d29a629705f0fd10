package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"shadowbridge/domain"
)

// AMQP091Options configure a RabbitMQ target over its native protocol, AMQP 0-9-1.
type AMQP091Options struct {
	URL   string // amqp://user:password@host:5672/vhost
	Queue string // the durable requests queue (declared if missing), reached through the default exchange
	// ConfirmationQueue is set as reply-to, and consumed for confirmations, when set.
	ConfirmationQueue string
	Transformation    string
	// MinBackoff and MaxBackoff bound the wait between connection attempts (100ms .. 30s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// Tracer makes each confirmation a span of its operation's trace (nil: none recorded).
	Tracer trace.Tracer
	// Refused counts the confirmations refused, by resource and reason (nil: not counted).
	Refused Counter
}

// AMQP091Target sends requests to a RabbitMQ queue through watermill-amqp's Publisher (a
// watermill message.Publisher) with publisher confirms: Send returns when the broker has
// stored the message (persistent, on a durable queue). The message is the transformed body with
// message-id = operation id, reply-to = the confirmation queue, content type application/json,
// and the request properties as headers (attempt an int, sequences longs). The publisher is
// made on first use, so a broker that is down at start-up only postpones operations. Safe for
// concurrent use.
type AMQP091Target struct {
	o     AMQP091Options
	log   *slog.Logger
	scrub scrubber

	mu      sync.Mutex
	pub     *wamqp.Publisher
	failed  int
	retryAt time.Time
	lastErr error
}

var (
	_ Target = (*AMQP091Target)(nil)
	_ Prober = (*AMQP091Target)(nil)
)

// NewAMQP091Target validates the options; it does not connect.
func NewAMQP091Target(o AMQP091Options) (*AMQP091Target, error) {
	if err := CheckURL("amqp091 target: url", o.URL, "amqp", "amqps"); err != nil {
		return nil, err
	}
	if o.Queue == "" {
		return nil, fmt.Errorf("%w: amqp091 target: queue is required", domain.CategoryConfiguration)
	}
	if _, err := Transform(o.Transformation, domain.TargetRequest{}); err != nil {
		return nil, err
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &AMQP091Target{o: o, log: log.With("broker", RedactURL(o.URL), "queue", o.Queue), scrub: newScrubber("", o.URL)}, nil
}

// amqp091Config is watermill-amqp's durable queue configuration for url, with publisher confirms.
func amqp091Config(url string, m wamqp.Marshaler) wamqp.Config {
	cfg := wamqp.NewDurableQueueConfig(url)
	cfg.Publish.ConfirmDelivery = true
	cfg.Marshaler = m
	return cfg
}

func (t *AMQP091Target) publisher() (*wamqp.Publisher, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pub != nil {
		return t.pub, nil
	}
	if wait := time.Until(t.retryAt); wait > 0 {
		return nil, NotSent(fmt.Errorf("%w: broker unavailable, next connection attempt in %s: %w", domain.CategoryCommunication, wait.Round(time.Millisecond), t.lastErr))
	}
	pub, err := wamqp.NewPublisher(amqp091Config(t.o.URL, requestMarshaler{replyTo: t.o.ConfirmationQueue}), watermill.NewSlogLogger(t.log))
	if err == nil {
		// Publishing through the default exchange to a queue that does not exist is confirmed
		// and dropped: declare the queues first (durable, as the subscriber would).
		if err = declareQueues(pub.Connection(), t.o.Queue, t.o.ConfirmationQueue); err == nil {
			t.pub, t.failed = pub, 0
			return pub, nil
		}
		_ = pub.Close()
	}
	err = t.scrub.err(fmt.Errorf("%w: %w", domain.CategoryCommunication, err))
	t.failed++
	backoff := min(t.o.MinBackoff<<min(t.failed-1, 20), t.o.MaxBackoff)
	backoff = backoff/2 + rand.N(backoff/2+1)
	t.retryAt, t.lastErr = time.Now().Add(backoff), err
	if t.failed&(t.failed-1) == 0 {
		t.log.Warn("connection failed", "attempt", t.failed, "retry_in", backoff, "err", err)
	}
	return nil, NotSent(err)
}

// declareQueues declares durable queues (those that are not "").
func declareQueues(conn *amqp091.Connection, queues ...string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, q := range queues {
		if q == "" {
			continue
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare queue %s: %w", q, err)
		}
	}
	return nil
}

// Send publishes one request and waits for the broker's confirm.
func (t *AMQP091Target) Send(ctx context.Context, r Request) (string, error) {
	body, err := Transform(t.o.Transformation, r.Body)
	if err != nil {
		return "", err
	}
	pub, err := t.publisher()
	if err != nil {
		return "", err
	}
	m := message.NewMessage(r.OperationID, body)
	for k, v := range r.Properties() {
		m.Metadata.Set(k, v)
	}
	m.SetContext(ctx)
	if err := pub.Publish(t.o.Queue, m); err != nil {
		if !pub.IsConnected() {
			return "", NotSent(t.scrub.err(fmt.Errorf("%w: %w", domain.CategoryCommunication, err)))
		}
		return "", t.scrub.err(fmt.Errorf("%w: publish to %s: %w", domain.CategoryCommunication, t.o.Queue, err))
	}
	return r.OperationID, nil
}

// Probe reports whether the broker is reachable (connecting within the backoff if needed).
func (t *AMQP091Target) Probe(ctx context.Context) error {
	pub, err := t.publisher()
	if err != nil {
		return err
	}
	if !pub.IsConnected() {
		return fmt.Errorf("%w: not connected to %s", domain.CategoryCommunication, RedactURL(t.o.URL))
	}
	return nil
}

// Close closes the publisher's connection.
func (t *AMQP091Target) Close() error {
	t.mu.Lock()
	pub := t.pub
	t.pub = nil
	t.mu.Unlock()
	if pub != nil {
		return pub.Close()
	}
	return nil
}

// requestMarshaler is watermill-amqp's default marshaling (persistent, metadata as headers)
// with the request's AMQP properties and typed headers.
type requestMarshaler struct{ replyTo string }

func (m requestMarshaler) Marshal(msg *message.Message) (amqp091.Publishing, error) {
	p, err := wamqp.DefaultMarshaler{}.Marshal(msg)
	if err != nil {
		return p, err
	}
	p.MessageId, p.ReplyTo, p.ContentType = msg.UUID, m.replyTo, "application/json"
	for k, v := range p.Headers {
		if s, ok := v.(string); ok {
			p.Headers[k] = typedProperty(k, s)
		}
	}
	return p, nil
}

// Unmarshal reads any message: the UUID from the message-id (or watermill's header), every
// header as text, and the correlation-id as metadata correlation_id.
func (m requestMarshaler) Unmarshal(d amqp091.Delivery) (*message.Message, error) {
	id := d.MessageId
	if s, ok := d.Headers[wamqp.DefaultMessageUUIDHeaderKey].(string); ok && id == "" {
		id = s
	}
	msg := message.NewMessage(id, d.Body)
	for k, v := range d.Headers {
		if k != wamqp.DefaultMessageUUIDHeaderKey {
			msg.Metadata.Set(k, fmt.Sprint(v))
		}
	}
	if d.CorrelationId != "" {
		msg.Metadata.Set(middleware.CorrelationIDMetadataKey, d.CorrelationId)
	}
	return msg, nil
}

// AMQP091ConfirmationReceiver consumes a RabbitMQ confirmation queue (correlation-id = operation
// id, the JSON confirmation as body) with watermill-amqp's Subscriber under a watermill router:
// a message is acknowledged once its confirmation is stored; one that can never be stored goes
// to the poison queue <confirmationQueue>.poison (the router's poison-queue middleware); while
// the store is unavailable the message stays unacknowledged.
type AMQP091ConfirmationReceiver struct {
	o       AMQP091Options
	handler confirmationHandler
	log     *slog.Logger
	scrub   scrubber
}

// NewAMQP091ConfirmationReceiver returns a receiver for o.ConfirmationQueue.
func NewAMQP091ConfirmationReceiver(o AMQP091Options, resource string, c Confirmer) (*AMQP091ConfirmationReceiver, error) {
	t, err := NewAMQP091Target(o)
	if err != nil {
		return nil, err
	}
	if o.ConfirmationQueue == "" {
		return nil, fmt.Errorf("%w: amqp091 confirmations: no confirmationQueue", domain.CategoryConfiguration)
	}
	log := t.log.With("confirmations", o.ConfirmationQueue, "resource", resource)
	return &AMQP091ConfirmationReceiver{o: t.o, log: log, scrub: t.scrub,
		handler: confirmationHandler{resource: resource, confirmer: c, log: log, tracer: tracerOr(o.Tracer), refused: o.Refused, quiet: newLogLimiter()}}, nil
}

// Run receives until ctx ends, (re)connecting with backoff.
func (r *AMQP091ConfirmationReceiver) Run(ctx context.Context) error {
	logger := watermill.NewSlogLogger(r.log)
	cfg := amqp091Config(r.o.URL, requestMarshaler{})
	for failed := 0; ctx.Err() == nil; failed++ {
		err := r.run(ctx, cfg, logger)
		if ctx.Err() != nil {
			return nil
		}
		backoff := min(r.o.MinBackoff<<min(failed, 20), r.o.MaxBackoff)
		r.log.Warn("confirmation consumer down", "err", r.scrub.err(err), "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

func (r *AMQP091ConfirmationReceiver) run(ctx context.Context, cfg wamqp.Config, logger watermill.LoggerAdapter) error {
	sub, err := wamqp.NewSubscriber(cfg, logger)
	if err != nil {
		return err
	}
	defer sub.Close()
	poison, err := wamqp.NewPublisher(cfg, logger)
	if err != nil {
		return err
	}
	defer poison.Close()
	if err := declareQueues(poison.Connection(), r.o.ConfirmationQueue+".poison"); err != nil {
		return err
	}
	pq, err := middleware.PoisonQueueWithFilter(poison, r.o.ConfirmationQueue+".poison", func(err error) bool { return errors.Is(err, errUnprocessable) })
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		return err
	}
	router.AddMiddleware(middleware.CorrelationID, middleware.Recoverer, pq)
	router.AddConsumerHandler("confirmations", r.o.ConfirmationQueue, sub, func(msg *message.Message) error {
		return r.handler.handle(msg, nil)
	})
	r.log.Info("receiving confirmations")
	return router.Run(ctx)
}

// errUnprocessable marks a confirmation that can never be stored (malformed, unknown operation,
// refused): redelivering it would not help.
var errUnprocessable = errors.New("unprocessable confirmation")

// confirmationHandler stores the confirmations a router hands it, for any transport.
type confirmationHandler struct {
	resource  string
	confirmer Confirmer
	log       *slog.Logger
	tracer    trace.Tracer
	refused   Counter     // by resource and reason; nil: not counted
	quiet     *logLimiter // one line per refusal at most, and not a flood of them
}

func (h confirmationHandler) handle(msg *message.Message, reject func(cond, desc string)) error {
	ctx := msg.Context()
	refuse := func(reason, cond, operation string, err error) error {
		if h.refused != nil {
			h.refused.Inc(h.resource, reason)
		}
		if ok, suppressed := h.quiet.allow(time.Now()); ok {
			h.log.Warn("confirmation refused", "reason", reason, "operation", operation, "err", err, "refusedSinceLastLine", suppressed)
		}
		if reject != nil {
			reject(cond, err.Error())
		}
		return fmt.Errorf("%w: %w", errUnprocessable, err)
	}
	c, perr := ParseConfirmationMessage(msg)
	if perr != nil {
		return refuse("malformed", "amqp:invalid-field", "", perr)
	}
	ctx, span := tracerOr(h.tracer).Start(WithTraceParent(ctx, c.TraceParent), "confirm "+h.resource,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.String("shadowbridge.operation_id", c.OperationID)))
	defer span.End()
	backoff := 100 * time.Millisecond
	for {
		err := h.confirmer.Confirm(ctx, h.resource, c)
		switch {
		case err == nil, errors.Is(err, domain.ErrOperationFinished):
			return nil
		case errors.Is(err, ErrMalformed):
			return refuse("malformed", "amqp:invalid-field", c.OperationID, err)
		case errors.Is(err, domain.CategoryNotFound):
			return refuse("unknown-operation", "amqp:not-found", c.OperationID, err)
		case errors.Is(err, domain.CategorySchema), errors.Is(err, domain.CategoryConflict):
			return refuse("invalid", "amqp:invalid-field", c.OperationID, err)
		}
		h.log.Warn("confirmation not stored yet; retrying", "operation", c.OperationID, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err() // shutting down: the broker redelivers it
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Counter counts events by label values (a Prometheus counter vector is one).
type Counter interface {
	Inc(labels ...string)
}

// logLimiter lets one line through per interval and counts the ones it held back, so that a
// target sending thousands of bad confirmations does not flood the log.
type logLimiter struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int
}

func newLogLimiter() *logLimiter { return &logLimiter{every: 10 * time.Second} }

// allow reports whether a line may be written now, and how many were held back since the last.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
