package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/go-amqp"

	"shadowbridge/domain"
)

// AMQPOptions configure an AMQP 1.0 target (Apache Artemis in production).
type AMQPOptions struct {
	URL string // amqp://host:5672 or amqps://host:5671
	// URLs, instead of URL, is an ordered failover list (a primary and its backups): a new
	// connection tries them in order from the one that worked last.
	URLs     []string
	Address  string // the requests queue, e.g. FileSystemRequestsQueue (anycast on Artemis)
	Username string // SASL PLAIN when set, ANONYMOUS otherwise
	Password string
	TLS      *tls.Config // for amqps:// (nil: system roots)
	// ConfirmationAddress is set as reply-to, when confirmations are on.
	ConfirmationAddress string
	Transformation      string
	// Backoff bounds the wait between reconnection attempts (defaults 100ms .. 30s).
	MinBackoff, MaxBackoff time.Duration
	// CloseTimeout bounds closing a connection (default 5s): some brokers never answer a close.
	CloseTimeout time.Duration
	Logger       *slog.Logger
}

// AMQPTarget sends requests to an AMQP 1.0 broker over one connection, one session and one
// sender link (target capability "queue"), re-established on demand with capped exponential
// backoff and jitter. Safe for concurrent use: concurrent Sends are pipelined on the link (each
// waits for its own disposition).
type AMQPTarget struct {
	o   AMQPOptions
	log *slog.Logger

	mu      sync.Mutex
	conn    *amqp.Conn
	sender  *amqp.Sender
	failed  int       // consecutive failed connection attempts
	retryAt time.Time // no new attempt before this
	lastErr error
	cur     int      // index of the URL that worked last
	scrub   scrubber // every error leaving the target goes through it
}

var (
	_ Target = (*AMQPTarget)(nil)
	_ Prober = (*AMQPTarget)(nil)
)

// NewAMQPTarget validates the options; it does not connect (the first Send does), so a broker
// that is down at start-up only postpones operations.
func NewAMQPTarget(o AMQPOptions) (*AMQPTarget, error) {
	if len(o.URLs) == 0 && o.URL != "" {
		o.URLs = []string{o.URL}
	}
	if len(o.URLs) == 0 || o.Address == "" {
		return nil, fmt.Errorf("%w: amqp target: url (or urls) and address are required", domain.CategoryConfiguration)
	}
	o.URL = o.URLs[0]
	var scrub scrubber
	for i, u := range o.URLs {
		if err := CheckURL(fmt.Sprintf("amqp target: urls[%d]", i), u, "amqp", "amqps"); err != nil {
			return nil, err
		}
		scrub = append(scrub, newScrubber(o.Password, u)...)
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
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &AMQPTarget{o: o, log: log.With("broker", RedactURL(o.URL), "address", o.Address), scrub: scrub}, nil
}

// dial connects to the first of the URLs that answers, starting from the one that worked last
// (*cur), and returns the connection and its URL's index.
func dial(ctx context.Context, o AMQPOptions, cur int) (*amqp.Conn, int, error) {
	var errs []error
	for k := range o.URLs {
		i := (cur + k) % len(o.URLs)
		oi := o
		oi.URL = o.URLs[i]
		conn, err := DialAMQP(ctx, oi)
		if err == nil {
			return conn, i, nil
		}
		if len(o.URLs) > 1 {
			err = fmt.Errorf("%s: %w", RedactURL(oi.URL), err)
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return nil, cur, errs[0]
	}
	return nil, cur, errors.Join(errs...)
}

// DialAMQP opens a connection with the options' SASL and TLS settings.
func DialAMQP(ctx context.Context, o AMQPOptions) (*amqp.Conn, error) {
	opts := &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous(), TLSConfig: o.TLS, IdleTimeout: time.Minute}
	if o.Username != "" {
		opts.SASLType = amqp.SASLTypePlain(o.Username, o.Password)
	}
	url := o.URL
	if strings.Contains(url, "@") && o.Username == "" {
		// credentials in the URL: go-amqp reads them; nothing to add
		opts.SASLType = nil
	}
	return amqp.Dial(ctx, url, opts)
}

// link returns a working sender, connecting if needed. While backing off it fails at once.
func (t *AMQPTarget) link(ctx context.Context) (*amqp.Sender, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sender != nil {
		return t.sender, nil
	}
	if wait := time.Until(t.retryAt); wait > 0 {
		return nil, NotSent(fmt.Errorf("%w: broker unavailable, next connection attempt in %s: %w", domain.CategoryCommunication, wait.Round(time.Millisecond), t.lastErr))
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, cur, err := dial(dctx, t.o, t.cur)
	if err == nil {
		t.cur = cur
		var sess *amqp.Session
		if sess, err = conn.NewSession(dctx, nil); err == nil {
			var snd *amqp.Sender
			// Artemis auto-creates a MULTICAST address (dropping messages without subscribers)
			// unless the sender asks for a queue.
			if snd, err = sess.NewSender(dctx, t.o.Address, &amqp.SenderOptions{TargetCapabilities: []string{"queue"}}); err == nil {
				t.conn, t.sender, t.failed, t.lastErr = conn, snd, 0, nil
				t.log.Info("connected", "url", RedactURL(t.o.URLs[t.cur]))
				return snd, nil
			}
			err = fmt.Errorf("address %q: %w", t.o.Address, err)
		}
		t.closeConn(conn)
	}
	err = t.scrub.err(classify(err))
	t.failed++
	backoff := min(t.o.MinBackoff<<min(t.failed-1, 20), t.o.MaxBackoff)
	backoff = backoff/2 + rand.N(backoff/2+1) // jitter: herds of instances do not reconnect in step
	t.retryAt, t.lastErr = time.Now().Add(backoff), err
	// Attempts 1, 2, 4, 8, ... at warn, the rest at debug: a long outage is a few lines.
	level := slog.LevelDebug
	if t.failed&(t.failed-1) == 0 {
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, "connection failed", "attempt", t.failed, "retry_in", backoff, "err", err)
	return nil, NotSent(err)
}

func (t *AMQPTarget) closeConn(c *amqp.Conn) {
	if c == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(t.o.CloseTimeout):
		t.log.Warn("connection close timed out; abandoned")
	}
}

// drop forgets a broken link (only if it is still the current one).
func (t *AMQPTarget) drop(s *amqp.Sender, cause error) {
	t.mu.Lock()
	if t.sender != s {
		t.mu.Unlock()
		return
	}
	c := t.conn
	t.conn, t.sender, t.lastErr = nil, nil, cause
	t.mu.Unlock()
	t.log.Warn("link lost", "err", cause)
	go t.closeConn(c)
}

// Message builds the AMQP message of a request (CONTRACT.md "Requests to the target system").
func (t *AMQPTarget) Message(r Request) (*amqp.Message, error) {
	body, err := Transform(t.o.Transformation, r.Body)
	if err != nil {
		return nil, err
	}
	id, err := ParseUUID(r.OperationID)
	if err != nil {
		return nil, fmt.Errorf("%w: operation id: %w", domain.CategorySchema, err)
	}
	m := &amqp.Message{
		Header: &amqp.MessageHeader{Durable: true},
		// Artemis keeps the AMQP message-id as JMSMessageID only when it is a UUID.
		Properties: &amqp.MessageProperties{MessageID: id},
		// JMS TextMessage for Qpid JMS consumers.
		Annotations: amqp.Annotations{"x-opt-jms-msg-type": int8(5)},
		ApplicationProperties: map[string]any{
			"shadowId":    r.ShadowID,
			"operationId": r.OperationID,
			"resource":    r.Resource,
			"attempt":     int32(r.Attempt),
			// Artemis duplicate detection: a re-send of the same operation is accepted, not routed.
			"_AMQ_DUPL_ID": r.OperationID,
		},
		Value: string(body),
	}
	if r.Sequence > 0 {
		// The target applies one account's requests in this order (JMS long properties).
		m.ApplicationProperties["sequence"] = r.Sequence
		m.ApplicationProperties["previousSequence"] = r.PreviousSequence
	}
	if t.o.ConfirmationAddress != "" {
		reply := t.o.ConfirmationAddress
		m.Properties.ReplyTo = &reply
	}
	return m, nil
}

// Send sends one request and waits for the broker's outcome: Accepted returns the message id
// as reference; Rejected is a configuration or security error; Released, Modified, a broken
// connection or a timeout are communication errors.
func (t *AMQPTarget) Send(ctx context.Context, r Request) (string, error) {
	ref, err := t.send(ctx, r)
	return ref, t.scrub.err(err)
}

func (t *AMQPTarget) send(ctx context.Context, r Request) (string, error) {
	m, err := t.Message(r)
	if err != nil {
		return "", err
	}
	s, err := t.link(ctx)
	if err != nil {
		return "", err
	}
	receipt, err := s.SendWithReceipt(ctx, m, nil)
	if err != nil {
		return "", t.linkFailure(s, err)
	}
	state, err := receipt.Wait(ctx)
	if err != nil {
		return "", t.linkFailure(s, err)
	}
	switch st := state.(type) {
	case *amqp.StateAccepted:
		return r.OperationID, nil
	case *amqp.StateRejected:
		return "", rejected(st.Error)
	case *amqp.StateReleased:
		return "", fmt.Errorf("%w: broker released the message", domain.CategoryCommunication)
	case *amqp.StateModified:
		return "", fmt.Errorf("%w: broker modified the delivery (failed %v, undeliverable here %v)", domain.CategoryCommunication, st.DeliveryFailed, st.UndeliverableHere)
	default:
		return "", fmt.Errorf("%w: unexpected delivery state %T", domain.CategoryCommunication, state)
	}
}

// linkFailure classifies a send error; a timeout or a broken link drops the link so that the next
// send reconnects (a timed-out delivery's fate is unknown: the re-send is deduplicated).
func (t *AMQPTarget) linkFailure(s *amqp.Sender, err error) error {
	err = classify(err)
	if errors.Is(err, domain.CategoryCommunication) {
		t.drop(s, err)
	}
	return err
}

func rejected(e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%w: broker rejected the message", domain.CategoryConfiguration)
	}
	cat := domain.CategoryConfiguration
	if e.Condition == amqp.ErrCondUnauthorizedAccess {
		cat = domain.CategorySecurity
	}
	return fmt.Errorf("%w: broker rejected the message: %s %s", cat, e.Condition, e.Description)
}

// classify maps go-amqp and network errors to domain categories.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var remote *amqp.Error
	var connErr *amqp.ConnError
	var sessErr *amqp.SessionError
	var linkErr *amqp.LinkError
	switch {
	case errors.As(err, &linkErr) && linkErr.RemoteErr != nil:
		remote = linkErr.RemoteErr
	case errors.As(err, &sessErr) && sessErr.RemoteErr != nil:
		remote = sessErr.RemoteErr
	case errors.As(err, &connErr) && connErr.RemoteErr != nil:
		remote = connErr.RemoteErr
	case errors.As(err, &remote):
	}
	if remote != nil {
		switch remote.Condition {
		case amqp.ErrCondUnauthorizedAccess:
			return fmt.Errorf("%w: %w", domain.CategorySecurity, err)
		case amqp.ErrCondNotFound, amqp.ErrCondNotAllowed, amqp.ErrCondInvalidField, amqp.ErrCondNotImplemented:
			return fmt.Errorf("%w: %w", domain.CategoryConfiguration, err)
		}
		return fmt.Errorf("%w: %w", domain.CategoryCommunication, err)
	}
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &badHost) {
		return fmt.Errorf("%w: the broker's TLS certificate is not trusted (check target.amqp.tls.ca): %w", domain.CategorySecurity, err)
	}
	if strings.Contains(err.Error(), "SASL") && strings.Contains(err.Error(), "auth") {
		return fmt.Errorf("%w: %w", domain.CategorySecurity, err) // go-amqp's untyped SASL failure
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &connErr) || errors.As(err, &sessErr) || errors.As(err, &linkErr) {
		return fmt.Errorf("%w: %w", domain.CategoryCommunication, err)
	}
	return fmt.Errorf("%w: %w", domain.CategoryCommunication, err)
}

// Probe connects if the link is down (respecting the reconnection backoff) and reports whether
// the broker is reachable. It sends nothing.
func (t *AMQPTarget) Probe(ctx context.Context) error {
	_, err := t.link(ctx)
	return t.scrub.err(err)
}

// Close closes the connection (bounded by CloseTimeout).
func (t *AMQPTarget) Close() error {
	t.mu.Lock()
	c := t.conn
	t.conn, t.sender = nil, nil
	t.mu.Unlock()
	t.closeConn(c)
	return nil
}

// ParseUUID converts a canonical UUID string (an operation id) to an AMQP uuid.
func ParseUUID(s string) (amqp.UUID, error) {
	var u amqp.UUID
	if !domain.ValidID(s) {
		return u, fmt.Errorf("%q is not a UUID", s)
	}
	hex := strings.ReplaceAll(s, "-", "")
	for i := range 16 {
		b, err := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		if err != nil {
			return u, err
		}
		u[i] = byte(b)
	}
	return u, nil
}
