// Package amqp10 is a watermill Pub/Sub for AMQP 1.0 brokers on github.com/Azure/go-amqp
// (watermill has none for AMQP 1.0; watermill-amqp speaks RabbitMQ's 0-9-1). It keeps Apache
// Artemis' conventions: links ask for the "queue" capability (an anycast address, auto-created
// by Artemis), messages are durable, the message-id is the watermill UUID (an AMQP uuid when it
// is one, which Artemis keeps as JMSMessageID), _AMQ_DUPL_ID carries it for Artemis' duplicate
// detection, and a UTF-8 payload is an AMQP value string (a JMS TextMessage).
//
// Features (as watermill's test suite declares them): persistent, guaranteed order with one
// subscriber per topic (each subscription has credit 1, and a Nack'ed message goes back to the
// head of the queue), at-least-once. No consumer groups (every subscription on a topic competes
// for its messages), no exactly-once, no replay for new subscribers.
//
// The Publisher and the Subscriber are safe for concurrent use. Each holds one connection,
// opened on first use and re-opened on failure with capped exponential backoff and jitter,
// trying Config.URLs in order from the one that worked last (a primary and its backups).
package amqp10

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Config configures a Publisher or Subscriber.
type Config struct {
	// URLs is an ordered failover list: amqp://host:5672 or amqps://host:5671.
	URLs     []string
	Username string // SASL PLAIN when set, ANONYMOUS otherwise (or credentials in the URL)
	Password string
	TLS      *tls.Config
	// Capability is the link capability asked of the broker (default "queue": anycast on
	// Artemis; "topic" for multicast).
	Capability string
	// Marshaler converts messages (default DefaultMarshaler{}).
	Marshaler Marshaler
	// MinBackoff and MaxBackoff bound the wait between connection attempts (100ms .. 30s).
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one connection attempt with its session and link (default 10s);
	// CloseTimeout bounds closing a connection (default 5s: some brokers never answer a close).
	DialTimeout, CloseTimeout time.Duration
	// Credit is a subscription's link credit (default 1: messages one at a time, in order).
	Credit int32
	// PrefetchBytes, when set, bounds what a subscription lets the broker send ahead of the
	// handler: the link's credit is managed by hand, at most Credit messages and about
	// PrefetchBytes bytes by the sizes of the recent messages (see creditWindow). 0: the broker
	// may send Credit messages ahead, whatever their size.
	PrefetchBytes int
	// Concurrency, above 1, hands a subscription's messages out without waiting for the last
	// one's settlement, up to Concurrency unsettled at once, each settled as its handler acks or
	// nacks it: they are then handled in no particular order, except the messages Lane puts in
	// one lane, handed out one at a time in the order they came. 0 or 1: one at a time, in order.
	Concurrency int
	// Lane names a message's lane under Concurrency ("": none).
	Lane   func(*message.Message) string
	Logger watermill.LoggerAdapter
}

func (c Config) withDefaults() (Config, error) {
	if len(c.URLs) == 0 {
		return c, errors.New("amqp10: at least one URL is required")
	}
	for _, u := range c.URLs {
		if !strings.HasPrefix(u, "amqp://") && !strings.HasPrefix(u, "amqps://") {
			return c, fmt.Errorf("amqp10: URL %q: want amqp:// or amqps://", redact(u))
		}
	}
	if c.Capability == "" {
		c.Capability = "queue"
	}
	if c.Marshaler == nil {
		c.Marshaler = DefaultMarshaler{}
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 5 * time.Second
	}
	if c.Credit <= 0 {
		c.Credit = 1
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	return c, nil
}

// ErrClosed is returned by a closed Publisher or Subscriber.
var ErrClosed = errors.New("amqp10: closed")

// NotConnectedError says that no connection or link to the broker could be made (or the backoff
// after a failed attempt is still running): nothing was sent.
type NotConnectedError struct {
	RetryIn time.Duration
	Err     error
}

func (e *NotConnectedError) Error() string {
	if e.RetryIn > 0 {
		return fmt.Sprintf("amqp10: broker unavailable, next connection attempt in %s: %v", e.RetryIn.Round(time.Millisecond), e.Err)
	}
	return fmt.Sprintf("amqp10: cannot connect: %v", e.Err)
}
func (e *NotConnectedError) Unwrap() error { return e.Err }

// DeliveryError is a settlement other than Accepted: the broker did not take the message.
type DeliveryError struct {
	// State is the delivery state: *amqp.StateRejected (the broker refused it: Error says why),
	// *amqp.StateReleased or *amqp.StateModified (not taken; sending again may work).
	State amqp.DeliveryState
}

func (e *DeliveryError) Error() string {
	switch st := e.State.(type) {
	case *amqp.StateRejected:
		if st.Error != nil {
			return fmt.Sprintf("amqp10: broker rejected the message: %s %s", st.Error.Condition, st.Error.Description)
		}
		return "amqp10: broker rejected the message"
	case *amqp.StateReleased:
		return "amqp10: broker released the message"
	case *amqp.StateModified:
		return fmt.Sprintf("amqp10: broker modified the delivery (failed %v, undeliverable here %v)", st.DeliveryFailed, st.UndeliverableHere)
	}
	return fmt.Sprintf("amqp10: unexpected delivery state %T", e.State)
}

// Rejected reports whether the broker refused the message for good.
func (e *DeliveryError) Rejected() (*amqp.Error, bool) {
	st, ok := e.State.(*amqp.StateRejected)
	if !ok {
		return nil, false
	}
	return st.Error, true
}

// connection is the one connection of a Publisher or Subscriber, with its reconnection state.
type connection struct {
	cfg Config

	mu      sync.Mutex
	conn    *amqp.Conn
	sess    *amqp.Session
	gen     int // incremented on every new connection
	failed  int
	retryAt time.Time
	lastErr error
	cur     int // index of the URL that worked last
	closed  bool
}

// session returns the current session and its generation, connecting if needed. While backing
// off after a failure it fails at once with a *NotConnectedError.
func (c *connection) session(ctx context.Context) (*amqp.Session, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, 0, ErrClosed
	}
	if c.sess != nil {
		return c.sess, c.gen, nil
	}
	if wait := time.Until(c.retryAt); wait > 0 {
		return nil, 0, &NotConnectedError{RetryIn: wait, Err: c.lastErr}
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var errs []error
	for k := range c.cfg.URLs {
		i := (c.cur + k) % len(c.cfg.URLs)
		conn, err := dial(dctx, c.cfg, c.cfg.URLs[i])
		if err == nil {
			sess, serr := conn.NewSession(dctx, nil)
			if serr == nil {
				c.conn, c.sess, c.cur, c.failed, c.lastErr = conn, sess, i, 0, nil
				c.gen++
				c.cfg.Logger.Info("amqp10: connected", watermill.LogFields{"url": redact(c.cfg.URLs[i])})
				return sess, c.gen, nil
			}
			c.closeConn(conn)
			err = serr
		}
		if len(c.cfg.URLs) > 1 {
			err = fmt.Errorf("%s: %w", redact(c.cfg.URLs[i]), err)
		}
		errs = append(errs, err)
		if dctx.Err() != nil {
			break
		}
	}
	err := errors.Join(errs...)
	if len(errs) == 1 {
		err = errs[0]
	}
	c.failed++
	backoff := min(c.cfg.MinBackoff<<min(c.failed-1, 20), c.cfg.MaxBackoff)
	backoff = backoff/2 + rand.N(backoff/2+1) // jitter: herds of clients do not reconnect in step
	c.retryAt, c.lastErr = time.Now().Add(backoff), err
	// Attempts 1, 2, 4, 8, ... at info, the rest at debug: a long outage is a few lines.
	fields := watermill.LogFields{"attempt": c.failed, "retry_in": backoff, "err": err}
	if c.failed&(c.failed-1) == 0 {
		c.cfg.Logger.Info("amqp10: connection failed", fields)
	} else {
		c.cfg.Logger.Debug("amqp10: connection failed", fields)
	}
	return nil, 0, &NotConnectedError{Err: err}
}

// drop forgets the connection of generation gen (a link on it failed); the next call to
// session reconnects.
func (c *connection) drop(gen int, cause error) {
	c.mu.Lock()
	if c.gen != gen || c.conn == nil {
		c.mu.Unlock()
		return
	}
	conn := c.conn
	c.conn, c.sess, c.lastErr = nil, nil, cause
	c.mu.Unlock()
	c.cfg.Logger.Info("amqp10: connection dropped", watermill.LogFields{"err": cause})
	go c.closeConn(conn)
}

func (c *connection) close() {
	c.mu.Lock()
	conn := c.conn
	c.conn, c.sess, c.closed = nil, nil, true
	c.mu.Unlock()
	c.closeConn(conn)
}

func (c *connection) closeConn(conn *amqp.Conn) {
	if conn == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = conn.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.cfg.CloseTimeout):
		c.cfg.Logger.Info("amqp10: connection close timed out; abandoned", nil)
	}
}

// dial connects with the configuration's SASL and TLS settings.
func dial(ctx context.Context, cfg Config, url string) (*amqp.Conn, error) {
	opts := &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous(), TLSConfig: cfg.TLS, IdleTimeout: time.Minute}
	if cfg.Username != "" {
		opts.SASLType = amqp.SASLTypePlain(cfg.Username, cfg.Password)
	} else if strings.Contains(url, "@") {
		opts.SASLType = nil // credentials in the URL: go-amqp reads them
	}
	return amqp.Dial(ctx, url, opts)
}

// redact hides a password in a URL.
func redact(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	cred := u[scheme+3 : at]
	if i := strings.Index(cred, ":"); i >= 0 {
		return u[:scheme+3] + cred[:i] + ":xxxxx" + u[at:]
	}
	return u
}

// broken reports whether err means the link or connection is gone (as opposed to a refusal).
func broken(err error) bool {
	var connErr *amqp.ConnError
	var sessErr *amqp.SessionError
	var linkErr *amqp.LinkError
	return errors.As(err, &connErr) || errors.As(err, &sessErr) || errors.As(err, &linkErr) ||
		errors.Is(err, context.DeadlineExceeded)
}
