package amqp10

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Marshaler converts between watermill and AMQP messages.
type Marshaler interface {
	Marshal(topic string, msg *message.Message) (*amqp.Message, error)
	Unmarshal(m *amqp.Message) (*message.Message, error)
}

// Metadata keys with a meaning of their own: they set (and, received, report) the AMQP
// properties of those names instead of application properties.
const (
	MetadataCorrelationID = "correlation_id" // watermill's middleware.CorrelationID uses this key
	MetadataReplyTo       = "reply_to"
	MetadataSubject       = "subject"
)

// DefaultMarshaler maps a watermill message to an Artemis-friendly AMQP message: durable,
// message-id = UUID (an AMQP uuid when it parses as one), _AMQ_DUPL_ID = UUID, a UTF-8 payload
// as an AMQP value string with the JMS TextMessage annotation (other payloads as one data
// section), metadata as application properties (correlation_id, reply_to and subject as the
// AMQP properties). Received messages map back the same way: an AMQP value string or data
// sections become the payload, application properties the metadata (non-string values in their
// Go text form).
type DefaultMarshaler struct {
	// Typed, if set, converts a metadata value to the application property's AMQP type (for
	// example an int32 for a JMS int property); return the string unchanged to keep it a string.
	Typed func(key, value string) any
}

// Marshal implements Marshaler.
func (d DefaultMarshaler) Marshal(topic string, msg *message.Message) (*amqp.Message, error) {
	m := &amqp.Message{
		Header:                &amqp.MessageHeader{Durable: true},
		Properties:            &amqp.MessageProperties{},
		ApplicationProperties: map[string]any{},
	}
	if u, ok := parseUUID(msg.UUID); ok {
		m.Properties.MessageID = u
	} else {
		m.Properties.MessageID = msg.UUID
	}
	for k, v := range msg.Metadata {
		switch k {
		case MetadataCorrelationID:
			if u, ok := parseUUID(v); ok {
				m.Properties.CorrelationID = u
			} else {
				m.Properties.CorrelationID = v
			}
		case MetadataReplyTo:
			r := v
			m.Properties.ReplyTo = &r
		case MetadataSubject:
			s := v
			m.Properties.Subject = &s
		default:
			if d.Typed != nil {
				m.ApplicationProperties[k] = d.Typed(k, v)
			} else {
				m.ApplicationProperties[k] = v
			}
		}
	}
	if _, ok := m.ApplicationProperties["_AMQ_DUPL_ID"]; !ok {
		m.ApplicationProperties["_AMQ_DUPL_ID"] = msg.UUID
	}
	if utf8.Valid(msg.Payload) {
		m.Value = string(msg.Payload)
		m.Annotations = amqp.Annotations{"x-opt-jms-msg-type": int8(5)}
	} else {
		m.Data = [][]byte{bytes.Clone(msg.Payload)}
	}
	return m, nil
}

// Unmarshal implements Marshaler.
func (d DefaultMarshaler) Unmarshal(m *amqp.Message) (*message.Message, error) {
	var payload []byte
	switch v := m.Value.(type) {
	case string:
		payload = []byte(v)
	case []byte:
		payload = v
	case nil:
		payload = bytes.Join(m.Data, nil)
	default:
		return nil, fmt.Errorf("amqp10: body is an AMQP value of type %T (want a string or binary)", v)
	}
	uuid := ""
	if m.Properties != nil {
		uuid = idText(m.Properties.MessageID)
	}
	msg := message.NewMessage(uuid, payload)
	for k, v := range m.ApplicationProperties {
		if k == "_AMQ_DUPL_ID" {
			continue
		}
		if s, ok := v.(string); ok {
			msg.Metadata.Set(k, s)
		} else {
			msg.Metadata.Set(k, fmt.Sprint(v))
		}
	}
	if p := m.Properties; p != nil {
		if p.CorrelationID != nil {
			msg.Metadata.Set(MetadataCorrelationID, idText(p.CorrelationID))
		}
		if p.ReplyTo != nil {
			msg.Metadata.Set(MetadataReplyTo, *p.ReplyTo)
		}
		if p.Subject != nil {
			msg.Metadata.Set(MetadataSubject, *p.Subject)
		}
	}
	return msg, nil
}

// idText is a message-id or correlation-id as text (a uuid in its canonical form).
func idText(id any) string {
	switch v := id.(type) {
	case nil:
		return ""
	case amqp.UUID:
		return v.String()
	case string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(id)
}

// parseUUID parses a canonical UUID (8-4-4-4-12 hexadecimal digits).
func parseUUID(s string) (amqp.UUID, bool) {
	var u amqp.UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	hex := strings.ReplaceAll(s, "-", "")
	for i := range 16 {
		b, err := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		if err != nil {
			return u, false
		}
		u[i] = byte(b)
	}
	return u, true
}

var _ Marshaler = DefaultMarshaler{}
