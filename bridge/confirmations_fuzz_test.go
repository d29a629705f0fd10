package bridge_test

import (
	"bytes"
	"testing"

	"github.com/Azure/go-amqp"

	"shadowbridge/bridge"
	"shadowbridge/bridge/amqp10"
	"shadowbridge/domain"
)

// FuzzParseConfirmation feeds arbitrary bodies and correlation ids to the AMQP confirmation
// decoder, as the receiver gets them (the amqp10 marshaler's message, then
// ParseConfirmationMessage): it never panics, and what it accepts names a valid operation id and
// carries the body as sent (the Confirmer reads it: see api.Confirmation).
func FuzzParseConfirmation(f *testing.F) {
	for _, s := range []struct{ id, body string }{
		{"6f1c9a3e-2b4d-4e8f-9a1b-3c5d7e9f1a2b", `{"resultStatus":"success","primaryIdentifiers":{"uid":["u-1"]}}`},
		{"6f1c9a3e-2b4d-4e8f-9a1b-3c5d7e9f1a2b", `{"resultStatus":"fatal_error","errorCategory":"already-exists","attributes":{"login":["x"],"n":[1e400]}}`},
		{"not-a-uuid", `{"resultStatus":"success"}`},
		{"6f1c9a3e-2b4d-4e8f-9a1b-3c5d7e9f1a2b", `[1,2]`},
		{"", "\xff"},
	} {
		f.Add(s.id, []byte(s.body), false)
		f.Add(s.id, []byte(s.body), true)
	}
	f.Fuzz(func(t *testing.T, id string, body []byte, asData bool) {
		m := &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: id}}
		if asData {
			m.Data = [][]byte{body}
		} else {
			m.Value = string(body)
		}
		wm, err := amqp10.DefaultMarshaler{}.Unmarshal(m)
		if err != nil {
			return
		}
		c, err := bridge.ParseConfirmationMessage(wm)
		if err != nil {
			return
		}
		if !domain.ValidID(c.OperationID) || !bytes.Equal(c.Body, body) {
			t.Fatalf("accepted %q %q as %+v", id, body, c)
		}
	})
}
