package amqp10

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Publisher sends messages to AMQP 1.0 addresses (the watermill topic is the address). Publish
// is synchronous: it returns when the broker has settled every message (Accepted), or the first
// error. Messages are sent with their own Context() (its deadline bounds the wait). Concurrent
// Publish calls are pipelined on one sender link per address.
type Publisher struct {
	c *connection

	mu      sync.Mutex
	senders map[string]*sender // address -> link
}

type sender struct {
	link *amqp.Sender
	gen  int
}

// NewPublisher validates the configuration; it does not connect (the first Publish does).
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Publisher{c: &connection{cfg: cfg}, senders: map[string]*sender{}}, nil
}

// Publish implements message.Publisher.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		if err := p.publish(msg.Context(), topic, msg); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, topic string, msg *message.Message) error {
	m, err := p.c.cfg.Marshaler.Marshal(topic, msg)
	if err != nil {
		return fmt.Errorf("amqp10: marshal message %s: %w", msg.UUID, err)
	}
	s, err := p.sender(ctx, topic)
	if err != nil {
		return err
	}
	receipt, err := s.link.SendWithReceipt(ctx, m, nil)
	if err == nil {
		var state amqp.DeliveryState
		if state, err = receipt.Wait(ctx); err == nil {
			if _, ok := state.(*amqp.StateAccepted); ok {
				return nil
			}
			return &DeliveryError{State: state}
		}
	}
	// A timeout leaves the delivery's fate unknown and the link in doubt: start afresh (a
	// re-send of the same message is deduplicated by Artemis through _AMQ_DUPL_ID).
	if broken(err) {
		p.forget(topic, s)
		p.c.drop(s.gen, err)
	}
	return fmt.Errorf("amqp10: publish to %q: %w", topic, err)
}

// Connect makes sure a sender link to topic exists, connecting if needed (within the
// reconnection backoff), without sending anything: a health probe.
func (p *Publisher) Connect(ctx context.Context, topic string) error {
	_, err := p.sender(ctx, topic)
	return err
}

func (p *Publisher) sender(ctx context.Context, topic string) (*sender, error) {
	sess, gen, err := p.c.session(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.senders[topic]; s != nil && s.gen == gen {
		return s, nil
	}
	lctx, cancel := context.WithTimeout(ctx, p.c.cfg.DialTimeout)
	defer cancel()
	link, err := sess.NewSender(lctx, topic, &amqp.SenderOptions{TargetCapabilities: []string{p.c.cfg.Capability}})
	if err != nil {
		if broken(err) && !isRemote(err) {
			p.c.drop(gen, err)
		}
		return nil, &NotConnectedError{Err: fmt.Errorf("address %q: %w", topic, err)}
	}
	s := &sender{link: link, gen: gen}
	p.senders[topic] = s
	return s, nil
}

func (p *Publisher) forget(topic string, s *sender) {
	p.mu.Lock()
	if p.senders[topic] == s {
		delete(p.senders, topic)
	}
	p.mu.Unlock()
}

// Close closes the connection (bounded by Config.CloseTimeout). Publish fails afterwards.
func (p *Publisher) Close() error {
	p.c.close()
	return nil
}

// isRemote reports whether err is the broker's refusal (an AMQP error condition), not a
// transport failure.
func isRemote(err error) bool {
	var remote *amqp.Error
	var linkErr *amqp.LinkError
	return (errors.As(err, &linkErr) && linkErr.RemoteErr != nil) || errors.As(err, &remote)
}

var _ message.Publisher = (*Publisher)(nil)
