package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill/message"

	"shadowbridge/bridge/amqp10"
	"shadowbridge/domain"
)

// Notifier applies the target's change notifications (the command service implements it). body
// is the notification's JSON ({"change","objectClass","primaryIdentifiers","attributes"}, the
// body of prov.cmd.<resource>.notify), requestID the message's id, so that a redelivery is
// answered once. Its errors carry domain categories: a schema error refuses the notification for
// good; a communication error (the store unavailable) means try again.
type Notifier interface {
	Notify(ctx context.Context, resource, requestID string, body []byte) error
}

// NotificationReceiver consumes a resource's notification address: every message is a change
// notification from the target (midPoint's asynchronous update, inbound). A message is
// acknowledged once the notification is applied, rejected (Artemis dead-letters it) when it can
// never be (malformed, naming no account), and left for redelivery while the store is away.
type NotificationReceiver struct {
	o        AMQPOptions
	resource string
	notifier Notifier
	log      *slog.Logger
	scrub    scrubber
	quiet    *logLimiter
}

// NewNotificationReceiver returns a receiver for o.NotificationAddress.
func NewNotificationReceiver(o AMQPOptions, resource string, n Notifier) (*NotificationReceiver, error) {
	if o.NotificationAddress == "" {
		return nil, fmt.Errorf("%w: notification receiver: no notificationAddress", domain.CategoryConfiguration)
	}
	t, err := NewAMQPTarget(o) // validates and fills in defaults
	if err != nil {
		return nil, err
	}
	_ = t.Close()
	return &NotificationReceiver{o: t.o, resource: resource, notifier: n, scrub: t.scrub, quiet: newLogLimiter(),
		log: t.log.With("notifications", o.NotificationAddress, "resource", resource)}, nil
}

// Run receives until ctx ends.
func (r *NotificationReceiver) Run(ctx context.Context) error {
	// One at a time, in order: two changes of one account must not overtake each other.
	return consume(ctx, r.o, r.scrub, r.log, "notifications-"+r.resource, r.o.NotificationAddress, r.handle, 1, nil)
}

func (r *NotificationReceiver) handle(msg *message.Message) error {
	ctx := msg.Context()
	backoff := 100 * time.Millisecond
	for {
		err := r.notifier.Notify(ctx, r.resource, msg.UUID, msg.Payload)
		switch {
		case err == nil:
			return nil
		case domain.IsRefusal(err), errors.Is(err, domain.CategorySchema), errors.Is(err, domain.CategoryConfiguration), errors.Is(err, domain.CategorySecurity):
			if ok, suppressed := r.quiet.allow(time.Now()); ok {
				r.log.Warn("notification refused", "message", msg.UUID, "err", err, "refusedSinceLastLine", suppressed)
			}
			amqp10.Reject(msg, amqp.ErrCondInvalidField, err.Error())
			msg.Nack()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err() // shutting down: the broker redelivers it
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
