package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"shadowbridge/bridge/amqp10"

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
	// NotificationAddress, when set, is where the target sends change notifications of its
	// accounts (NotificationReceiver).
	NotificationAddress string
	Transformation      string
	// Backoff bounds the wait between reconnection attempts (defaults 100ms .. 30s).
	MinBackoff, MaxBackoff time.Duration
	// CloseTimeout bounds closing a connection (default 5s): some brokers never answer a close.
	CloseTimeout time.Duration
	Logger       *slog.Logger
	// Tracer makes each confirmation a span of its operation's trace (nil: none recorded).
	Tracer trace.Tracer
	// Refused counts the confirmations refused, by resource and reason (nil: not counted).
	Refused Counter
}

// AMQPTarget sends requests to an AMQP 1.0 broker through a watermill message.Publisher
// (amqp10.Publisher: one connection, one sender link per address, target capability "queue",
// re-established on demand with capped exponential backoff and jitter, failover over URLs).
// Safe for concurrent use: concurrent Sends are pipelined on the link (each waits for its own
// disposition).
type AMQPTarget struct {
	o     AMQPOptions
	log   *slog.Logger
	pub   *amqp10.Publisher
	marsh amqp10.Marshaler
	scrub scrubber // every error leaving the target goes through it
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
	// Backoff defaults are amqp10's; the close timeout also bounds the confirmation router.
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("broker", RedactURL(o.URL), "address", o.Address)
	marsh := amqp10.DefaultMarshaler{Typed: typedProperty}
	pub, err := amqp10.NewPublisher(amqp10.Config{URLs: o.URLs, Username: o.Username, Password: o.Password, TLS: o.TLS,
		Marshaler: marsh, MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff, CloseTimeout: o.CloseTimeout,
		Logger: watermill.NewSlogLogger(log)})
	if err != nil {
		return nil, fmt.Errorf("%w: amqp target: %w", domain.CategoryConfiguration, err)
	}
	return &AMQPTarget{o: o, log: log, pub: pub, marsh: marsh, scrub: scrub}, nil
}

// typedProperty gives the request's numeric application properties their JMS types (int
// attempt, long sequences), as CONTRACT.md's targets read them.
func typedProperty(key, value string) any {
	switch key {
	case "attempt":
		if n, err := strconv.ParseInt(value, 10, 32); err == nil {
			return int32(n)
		}
	case "sequence", "previousSequence":
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			return n
		}
	}
	return value
}

// WatermillMessage is the watermill message of a request: UUID = operation id, the transformed
// body as payload, the contract's application properties as metadata (CONTRACT.md "Requests to
// the target system").
func (t *AMQPTarget) WatermillMessage(r Request) (*message.Message, error) {
	body, err := Transform(t.o.Transformation, r.Body)
	if err != nil {
		return nil, err
	}
	if !domain.ValidID(r.OperationID) {
		return nil, fmt.Errorf("%w: operation id: %q is not a UUID", domain.CategorySchema, r.OperationID)
	}
	m := message.NewMessage(r.OperationID, body)
	m.Metadata.Set("shadowId", r.ShadowID)
	m.Metadata.Set("operationId", r.OperationID)
	m.Metadata.Set("resource", r.Resource)
	m.Metadata.Set("attempt", strconv.Itoa(r.Attempt))
	if r.Sequence > 0 {
		// The target applies one account's requests in this order (JMS long properties).
		m.Metadata.Set("sequence", strconv.FormatInt(r.Sequence, 10))
		m.Metadata.Set("previousSequence", strconv.FormatInt(r.PreviousSequence, 10))
	}
	if t.o.ConfirmationAddress != "" {
		m.Metadata.Set(amqp10.MetadataReplyTo, t.o.ConfirmationAddress)
	}
	if r.TraceParent != "" {
		m.Metadata.Set("traceparent", r.TraceParent)
	}
	return m, nil
}

// Message builds the AMQP message of a request, exactly as Send puts it on the wire.
func (t *AMQPTarget) Message(r Request) (*amqp.Message, error) {
	m, err := t.WatermillMessage(r)
	if err != nil {
		return nil, err
	}
	return t.marsh.Marshal(t.o.Address, m)
}

// Send sends one request and waits for the broker's outcome: Accepted returns the message id
// as reference; Rejected is a configuration or security error; Released, Modified, a broken
// connection or a timeout are communication errors.
func (t *AMQPTarget) Send(ctx context.Context, r Request) (string, error) {
	ref, err := t.send(ctx, r)
	return ref, t.scrub.err(err)
}

func (t *AMQPTarget) send(ctx context.Context, r Request) (string, error) {
	m, err := t.WatermillMessage(r)
	if err != nil {
		return "", err
	}
	m.SetContext(ctx)
	// A fresh id per send: a target (or a test) tells the broker repeating one delivery (the same
	// sendId) from a second message of the operation (another sendId, a re-send that got past the
	// broker's duplicate detection).
	m.Metadata.Set(PropertySendID, watermill.NewUUID())
	if err := t.pub.Publish(t.o.Address, m); err != nil {
		return "", publishError(err)
	}
	return r.OperationID, nil
}

// PropertySendID is the application property that names one send of a request (a fresh UUID each
// time the bridge sends it).
const PropertySendID = "sendId"

// publishError maps the publisher's errors to domain categories: no connection or link means
// nothing was sent; a rejection is the broker's refusal; the rest (released, modified, a broken
// connection, a timeout) are communication errors whose delivery may have happened (the re-send
// is deduplicated by the target).
func publishError(err error) error {
	var nc *amqp10.NotConnectedError
	if errors.As(err, &nc) {
		return NotSent(classify(err))
	}
	var de *amqp10.DeliveryError
	if errors.As(err, &de) {
		if e, ok := de.Rejected(); ok {
			return rejected(e)
		}
		return fmt.Errorf("%w: %w", domain.CategoryCommunication, err)
	}
	return classify(err)
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
	if err := t.pub.Connect(ctx, t.o.Address); err != nil {
		return t.scrub.err(publishError(err))
	}
	return nil
}

// Close closes the connection (bounded by CloseTimeout).
func (t *AMQPTarget) Close() error { return t.pub.Close() }
