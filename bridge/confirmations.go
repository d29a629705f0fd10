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

	"shadowbridge/domain"
)

// Confirmation is the target system's answer to an operation.
type Confirmation struct {
	OperationID        string
	ResultStatus       string
	Message            string
	PrimaryIdentifiers map[string][]any
	ErrorCategory      string           // why it failed (already-exists, not-found, ...), optional
	Attributes         map[string][]any // the existing account's, with already-exists
}

// Confirmer records confirmations (the command service implements it). Its errors carry domain
// categories: schema and not-found errors refuse the confirmation; a conflict means the operation
// is already completed (a redelivered confirmation), which is fine.
type Confirmer interface {
	Confirm(ctx context.Context, resource string, c Confirmation) error
}

// ConfirmationReceiver consumes the confirmation address of one resource and turns every message
// (correlation-id = operation id, JSON body {"resultStatus","message","primaryIdentifiers"}) into
// a confirmation. A message is settled only after its confirmation is stored (or refused for
// good), so a crash redelivers rather than loses. It reconnects with the same backoff as the
// target.
type ConfirmationReceiver struct {
	o         AMQPOptions
	resource  string
	confirmer Confirmer
	log       *slog.Logger
	scrub     scrubber
	cur       int // index of the URL that worked last (Run's goroutine only)
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
	return &ConfirmationReceiver{o: t.o, resource: resource, confirmer: c, scrub: t.scrub,
		log: t.log.With("confirmations", o.ConfirmationAddress, "resource", resource)}, nil
}

// Run receives until ctx ends.
func (r *ConfirmationReceiver) Run(ctx context.Context) error {
	failed := 0
	for ctx.Err() == nil {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		failed++
		backoff := min(r.o.MinBackoff<<min(failed-1, 20), r.o.MaxBackoff)
		r.log.Warn("confirmation link down", "err", r.scrub.err(classify(err)), "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

func (r *ConfirmationReceiver) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, cur, err := dial(dctx, r.o, r.cur)
	if err != nil {
		cancel()
		return err
	}
	r.cur = cur
	t := &AMQPTarget{o: r.o, log: r.log}
	defer t.closeConn(conn)
	sess, err := conn.NewSession(dctx, nil)
	if err != nil {
		cancel()
		return err
	}
	// Credit 1000: RabbitMQ 3.10 can stall a go-amqp receiver for good with credit 10..500.
	rcv, err := sess.NewReceiver(dctx, r.o.ConfirmationAddress, &amqp.ReceiverOptions{
		Credit: 1000, SourceCapabilities: []string{"queue"},
	})
	cancel()
	if err != nil {
		return err
	}
	r.log.Info("receiving confirmations")
	for {
		m, err := rcv.Receive(ctx, nil)
		if err != nil {
			return err
		}
		if err := r.handle(ctx, rcv, m); err != nil {
			return err
		}
	}
}

// handle settles one message; it returns an error only when the link failed.
func (r *ConfirmationReceiver) handle(ctx context.Context, rcv *amqp.Receiver, m *amqp.Message) error {
	c, perr := ParseConfirmation(m)
	if perr != nil {
		r.log.Warn("malformed confirmation rejected", "err", perr)
		return rcv.RejectMessage(ctx, m, &amqp.Error{Condition: amqp.ErrCondInvalidField, Description: perr.Error()})
	}
	backoff := 100 * time.Millisecond
	for {
		err := r.confirmer.Confirm(ctx, r.resource, c)
		switch {
		case err == nil, errors.Is(err, domain.ErrOperationFinished):
			return rcv.AcceptMessage(ctx, m)
		case errors.Is(err, domain.CategoryNotFound):
			r.log.Warn("confirmation of an unknown operation rejected", "operation", c.OperationID, "err", err)
			return rcv.RejectMessage(ctx, m, &amqp.Error{Condition: amqp.ErrCondNotFound, Description: err.Error()})
		case errors.Is(err, domain.CategorySchema), errors.Is(err, domain.CategoryConflict):
			r.log.Warn("confirmation refused", "operation", c.OperationID, "err", err)
			return rcv.RejectMessage(ctx, m, &amqp.Error{Condition: amqp.ErrCondInvalidField, Description: err.Error()})
		}
		// Not stored (NATS unavailable): keep the message unsettled and try again.
		r.log.Warn("confirmation not stored yet; retrying", "operation", c.OperationID, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = rcv.ReleaseMessage(rctx, m)
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// ParseConfirmation reads a confirmation message: correlation-id (UUID, string or binary) and a
// JSON body (AMQP value string, or data sections).
func ParseConfirmation(m *amqp.Message) (Confirmation, error) {
	var c Confirmation
	if m.Properties == nil || m.Properties.CorrelationID == nil {
		return c, errors.New("no correlation-id (it must be the operation id)")
	}
	switch id := m.Properties.CorrelationID.(type) {
	case amqp.UUID:
		c.OperationID = id.String()
	case string:
		c.OperationID = id
	case []byte:
		c.OperationID = string(id)
	default:
		return c, fmt.Errorf("correlation-id of type %T (want the operation id as UUID or string)", id)
	}
	if !domain.ValidID(c.OperationID) {
		return c, fmt.Errorf("correlation-id %q is not an operation id (UUID)", c.OperationID)
	}
	var body []byte
	switch v := m.Value.(type) {
	case string:
		body = []byte(v)
	case []byte:
		body = v
	case nil:
		body = bytes.Join(m.Data, nil)
	default:
		return c, fmt.Errorf("body is an AMQP value of type %T (want a JSON string)", v)
	}
	var b struct {
		ResultStatus       string           `json:"resultStatus"`
		Message            string           `json:"message"`
		PrimaryIdentifiers map[string][]any `json:"primaryIdentifiers"`
		ErrorCategory      string           `json:"errorCategory"`
		Attributes         map[string][]any `json:"attributes"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&b); err != nil {
		return c, fmt.Errorf("body is not the JSON confirmation {\"resultStatus\",\"message\",\"primaryIdentifiers\"}: %w", err)
	}
	if b.ResultStatus == "" {
		return c, errors.New("resultStatus is required")
	}
	c.ResultStatus, c.Message, c.PrimaryIdentifiers = b.ResultStatus, b.Message, b.PrimaryIdentifiers
	c.ErrorCategory, c.Attributes = b.ErrorCategory, b.Attributes
	return c, nil
}
