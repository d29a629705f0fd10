package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// NATSTarget publishes requests to a JetStream-backed work-queue subject through watermill-nats'
// JetStream publisher (a watermill message.Publisher). The message carries the transformed body
// and the request properties as headers; Nats-Msg-Id is the operation id (watermill's UUID), so
// a re-send inside the stream's duplicate window is stored once.
type NATSTarget struct {
	pub            *wmnats.Publisher
	subject        string
	transformation string
}

var _ Target = (*NATSTarget)(nil)

// NewNATSTarget returns a target publishing to subject. If no stream captures the subject, a
// work-queue stream named stream is created for it.
func NewNATSTarget(ctx context.Context, js jetstream.JetStream, subject, stream, transformation string) (*NATSTarget, error) {
	if subject == "" || strings.ContainsAny(subject, "*> ") {
		return nil, fmt.Errorf("%w: nats target subject %q must be a literal subject", domain.CategoryConfiguration, subject)
	}
	if _, err := Transform(transformation, domain.TargetRequest{}); err != nil {
		return nil, err
	}
	if _, err := js.StreamNameBySubject(ctx, subject); errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = eventstore.EnsureStream(ctx, js, jetstream.StreamConfig{
			Name: stream, Subjects: []string{subject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Description: "shadowbridge requests for a target system",
		})
		if err != nil {
			return nil, fmt.Errorf("nats target: create stream %s: %w", stream, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("nats target: %w", err)
	}
	pub, err := wmnats.NewPublisherWithNatsConn(js.Conn(), wmnats.PublisherPublishConfig{
		Marshaler: &wmnats.NATSMarshaler{}, SubjectCalculator: wmnats.DefaultSubjectCalculator,
		JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("nats target: %w", err)
	}
	return &NATSTarget{pub: pub, subject: subject, transformation: transformation}, nil
}

// Send publishes the request and returns its operation id as the reference.
func (t *NATSTarget) Send(ctx context.Context, r Request) (string, error) {
	body, err := Transform(t.transformation, r.Body)
	if err != nil {
		return "", err
	}
	m := message.NewMessage(r.OperationID, body)
	for k, v := range r.Properties() {
		m.Metadata.Set(k, v)
	}
	if err := t.pub.Publish(t.subject, m); err != nil {
		var apiErr *nats.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 403 {
			return "", fmt.Errorf("%w: %w", domain.CategorySecurity, err)
		}
		return "", fmt.Errorf("%w: publish to %s: %w", domain.CategoryCommunication, t.subject, err)
	}
	return r.OperationID, nil
}

// Close does nothing: the connection belongs to the caller (the publisher's Close would close it).
func (t *NATSTarget) Close() error { return nil }
