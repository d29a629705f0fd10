package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"shadowbridge/bridge/amqp10"

	"shadowbridge/domain"
)

// Confirmation is a target system's answer to an operation as a transport received it: the
// operation it answers (the message's correlation-id), its JSON body as it came, and the W3C
// traceparent it carried (optional). The body is read once, by the Confirmer, with the same
// decoder as the NATS confirm command's: AMQP and NATS confirmations meet the same rules.
type Confirmation struct {
	OperationID string
	Body        []byte
	TraceParent string
}

// Confirmer records confirmations (the command service implements it). Its errors carry domain
// categories: ErrMalformed (a body that cannot be read), schema and not-found errors refuse the
// confirmation; a conflict means the operation is already completed (a redelivered
// confirmation), which is fine.
type Confirmer interface {
	Confirm(ctx context.Context, resource string, c Confirmation) error
}

// ErrMalformed marks a confirmation whose body the Confirmer cannot read (not the JSON
// confirmation, no resultStatus, an unknown field): it is refused as malformed.
var ErrMalformed = errors.New("malformed confirmation")

// ConfirmationReceiver consumes the confirmation address of one resource and turns every message
// (correlation-id = operation id, JSON body {"resultStatus","message","primaryIdentifiers"}) into
// a confirmation. It is a watermill router handler over an amqp10.Subscriber (with the router's
// correlation-id and recoverer middleware): a message is acknowledged only after its
// confirmation is stored, and rejected (Artemis moves it to its dead-letter address) when it can
// never be (malformed, unknown operation), so a crash redelivers rather than loses. The
// subscriber reconnects with the same backoff as the target.
type ConfirmationReceiver struct {
	o         AMQPOptions
	resource  string
	confirmer Confirmer
	log       *slog.Logger
	scrub     scrubber
	quiet     *logLimiter
	// Pages, when set, takes the pages of a reconciliation run's listing that the target sends
	// on the same address (a JSON body with "reconciliationId").
	Pages Pager
}

// Pager applies one page of a target's answer to a list request (the command service implements
// it). Errors carry domain categories: a page ahead of the next (ErrAttemptOutOfSequence) or a
// communication error means later; a schema error refuses the page for good.
type Pager interface {
	Page(ctx context.Context, resource string, body []byte) error
}

// NewConfirmationReceiver returns a receiver for o.ConfirmationAddress.
func NewConfirmationReceiver(o AMQPOptions, resource string, c Confirmer) (*ConfirmationReceiver, error) {
	if o.ConfirmationAddress == "" {
		return nil, fmt.Errorf("%w: confirmation receiver: no confirmationAddress", domain.CategoryConfiguration)
	}
	t, err := NewAMQPTarget(o) // validates and fills in defaults
	if err != nil {
		return nil, err
	}
	_ = t.Close()
	return &ConfirmationReceiver{o: t.o, resource: resource, confirmer: c, scrub: t.scrub, quiet: newLogLimiter(),
		log: t.log.With("confirmations", o.ConfirmationAddress, "resource", resource)}, nil
}

// Run receives until ctx ends.
func (r *ConfirmationReceiver) Run(ctx context.Context) error {
	// Confirmations complete operations of their own and need no order among them: up to
	// confirmationParallel are stored at once. The pages of a listing are applied in order: one
	// lane.
	return consume(ctx, r.o, r.scrub, r.log, "confirmations-"+r.resource, r.o.ConfirmationAddress, r.handle,
		confirmationParallel, func(m *message.Message) string {
			if r.Pages != nil && isPage(m.Payload) {
				return "pages"
			}
			return ""
		})
}

// confirmationParallel is how many confirmations are stored at once: each is a few store round
// trips, and one at a time left the broker's confirmations waiting on them.
const confirmationParallel = 64

// consume runs handler on every message of address (a watermill router over an amqp10
// Subscriber, with the router's correlation-id and recoverer middleware) until ctx ends, up to
// parallel messages at once (one at a time per lane; 1: one at a time, in order).
func consume(ctx context.Context, o AMQPOptions, scrub scrubber, log *slog.Logger, name, address string, handler message.NoPublishHandlerFunc,
	parallel int, lane func(*message.Message) string) error {
	logger := watermill.NewSlogLogger(log)
	// Credit 1000: RabbitMQ 3.10 can stall a go-amqp receiver for good with credit 10..500. The
	// byte budget keeps a reconciliation's pages (tens of KiB each) from piling up in memory
	// ahead of the one being applied.
	sub, err := amqp10.NewSubscriber(amqp10.Config{URLs: o.URLs, Username: o.Username, Password: o.Password, TLS: o.TLS,
		MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff, CloseTimeout: o.CloseTimeout, Credit: 1000, PrefetchBytes: prefetchBytes,
		Concurrency: parallel, Lane: lane, Logger: logger})
	if err != nil {
		return fmt.Errorf("%w: %s: %w", domain.CategoryConfiguration, name, err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: o.CloseTimeout}, logger)
	if err != nil {
		return err
	}
	router.AddMiddleware(middleware.CorrelationID, middleware.Recoverer)
	router.AddConsumerHandler(name, address, sub, handler)
	log.Info("receiving", "address", address)
	if err := router.Run(ctx); err != nil && ctx.Err() == nil {
		return scrub.err(err)
	}
	return nil
}

// prefetchBytes is how much the broker may send ahead of the confirmation handler.
const prefetchBytes = 1 << 20

// handle stores one confirmation (confirmationHandler); what can never be stored is rejected
// (Artemis dead-letters it).
func (r *ConfirmationReceiver) handle(msg *message.Message) error {
	if r.Pages != nil && isPage(msg.Payload) {
		return r.handlePage(msg)
	}
	h := confirmationHandler{resource: r.resource, confirmer: r.confirmer, log: r.log, tracer: tracerOr(r.o.Tracer), refused: r.o.Refused, quiet: r.quiet}
	err := h.handle(msg, func(cond, desc string) { amqp10.Reject(msg, amqp.ErrCond(cond), desc) })
	if errors.Is(err, errUnprocessable) {
		// Rejected (the handler logged it, once): settled here rather than returned, or the
		// router would log every refusal a second time.
		msg.Nack()
		return nil
	}
	return err
}

// isPage tells a page of a listing from a confirmation: its JSON body names the run.
func isPage(body []byte) bool {
	if !bytes.Contains(body, []byte(`"reconciliationId"`)) {
		return false
	}
	var p struct {
		ReconciliationID string `json:"reconciliationId"`
	}
	return json.Unmarshal(body, &p) == nil && p.ReconciliationID != ""
}

// handlePage applies one page: acknowledged once applied (or applied before), sent back to the
// broker for later when it is ahead of the next page or the store is away (a page must not hold
// the address while the one before it waits behind it), rejected when it can never be applied.
func (r *ConfirmationReceiver) handlePage(msg *message.Message) error {
	err := r.Pages.Page(msg.Context(), r.resource, msg.Payload)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, domain.ErrAttemptOutOfSequence), !domain.IsRefusal(err) && !errors.Is(err, domain.CategorySchema):
		time.Sleep(200 * time.Millisecond)
		msg.Nack()
		return nil
	}
	if ok, suppressed := r.quiet.allow(time.Now()); ok {
		r.log.Warn("page refused", "err", err, "refusedSinceLastLine", suppressed)
	}
	amqp10.Reject(msg, amqp.ErrCondInvalidField, err.Error())
	msg.Nack()
	return nil
}

// ParseConfirmationMessage reads a confirmation's envelope from a watermill message: the
// correlation id (metadata correlation_id, the AMQP correlation-id), which must be an operation
// id, the body and the traceparent. The body is the Confirmer's to read.
func ParseConfirmationMessage(msg *message.Message) (Confirmation, error) {
	id := msg.Metadata.Get(amqp10.MetadataCorrelationID)
	if id == "" {
		return Confirmation{}, errors.New("no correlation-id (it must be the operation id)")
	}
	if !domain.ValidID(id) {
		return Confirmation{}, fmt.Errorf("correlation-id %q is not an operation id (UUID)", id)
	}
	return Confirmation{OperationID: id, Body: msg.Payload, TraceParent: msg.Metadata.Get("traceparent")}, nil
}
