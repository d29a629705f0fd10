package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"shadowbridge/bridge"
	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// golden reads one of midPoint's documented requests (bridge/testdata, byte for byte).
func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "bridge", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// midPoint's request sequence through the service and Apache Artemis: add with attributes,
// delete, add again, modify with add, delete and replace; each message on the Artemis queue is
// byte for byte what midPoint sends (its documented requests), carries the contract's properties,
// and a confirmation on the confirmation queue completes its operation.
func TestArtemisMidPointRequestSequence(t *testing.T) {
	b := amqptest.Start(t)
	for _, tr := range []string{bridge.SimplifiedJSON, bridge.SimplifiedQualifiedJSON} {
		t.Run(tr, func(t *testing.T) {
			reqQ, confQ := b.Queue(t, "mp-requests"), b.Queue(t, "mp-confirmations")
			cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp: {url: %q, address: %q, confirmationAddress: %q}}
    transformation: %s
    operationExecutionConfirmation: true
`, b.URL, reqQ, confQ, tr))
			if err != nil {
				t.Fatal(err)
			}
			e := start(t, cfg, app.Options{})
			r := b.Receiver(t, reqQ)
			s := b.Sender(t, confQ)
			// next receives the one request the service sends, checks its layout, confirms it
			// (with primary identifiers for an add) and waits until the operation completed.
			next := func(shadowID, opID string, seq int64, want string, ids string) {
				t.Helper()
				m := amqptest.ReceiveN(t, r, 1, 20*time.Second)[0]
				if body, _ := m.Value.(string); body != want {
					t.Fatalf("body\n got %s\nwant %s", body, want)
				}
				p := m.ApplicationProperties
				id, _ := m.Properties.MessageID.(amqp.UUID)
				if id.String() != opID || p["operationId"] != opID || p["_AMQ_DUPL_ID"] != opID || p["shadowId"] != shadowID ||
					p["resource"] != "fs" || p["attempt"] != int32(1) || p["sequence"] != seq || p["previousSequence"] != seq-1 {
					t.Fatalf("message-id %v, properties %#v (want operation %s, shadow %s, sequence %d)", m.Properties.MessageID, p, opID, shadowID, seq)
				}
				if m.Header == nil || !m.Header.Durable || m.Annotations["x-opt-jms-msg-type"] != int8(5) ||
					m.Properties.ReplyTo == nil || *m.Properties.ReplyTo != confQ {
					t.Fatalf("header %+v, annotations %v, reply-to %v", m.Header, m.Annotations, m.Properties.ReplyTo)
				}
				body := `{"resultStatus":"success","message":"done by the test target"}`
				if ids != "" {
					body = `{"resultStatus":"success","primaryIdentifiers":` + ids + `}`
				}
				if err := s.Send(t.Context(), &amqp.Message{Properties: &amqp.MessageProperties{CorrelationID: m.Properties.MessageID}, Value: body}, nil); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "operation "+opID+" confirmed", 20*time.Second, func() bool {
					p, _ := restoreOp(shadow(t, e.app, shadowID), opID)
					return p.ResultStatus == domain.ResultSuccess
				})
			}
			provision := func(req service.Request) service.Reply {
				t.Helper()
				req.Resource = "fs"
				rep, err := e.app.Service.Provision(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				return rep
			}
			jack := domain.Attributes{"fullName": {"Jack Sparrow"}, "description": {"This is 'jack' called 'Jack Sparrow'"}, "login": {"jack"}}
			add := provision(service.Request{Verb: "add", ObjectClass: "AccountObjectClass", Attributes: jack, Order: []string{"fullName", "description", "login"}})
			next(add.ShadowID, add.OperationID, 1, golden(t, "add."+tr+".json"), `{"uid":["u-1"]}`)
			del := provision(service.Request{Verb: "delete", ShadowID: add.ShadowID})
			next(add.ShadowID, del.OperationID, 2, golden(t, "delete."+tr+".json"), "")

			again := provision(service.Request{Verb: "add", ObjectClass: "AccountObjectClass",
				Attributes: domain.Attributes{"login": {"jack"}, "shoeSize": {int64(42)}, "group": {"navy"}}})
			wantAdd, _ := bridge.Transform(tr, domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass",
				Attributes: domain.Attributes{"login": {"jack"}, "shoeSize": {int64(42)}, "group": {"navy"}}, Order: []string{"group", "login", "shoeSize"}})
			next(again.ShadowID, again.OperationID, 1, string(wantAdd), `{"uid":[7]}`)
			mod := provision(service.Request{Verb: "modify", ShadowID: again.ShadowID,
				Changes: domain.Changes{"group": {Add: []any{"pirates"}, Delete: []any{"navy"}}, "shoeSize": {Replace: []any{}}}})
			want := golden(t, "modify-add-delete-clear.simplifiedJson.json")
			if tr != bridge.SimplifiedJSON {
				b, _ := bridge.Transform(tr, domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
					PrimaryIdentifiers: domain.Attributes{"uid": {int64(7)}}, SecondaryIdentifiers: domain.Attributes{"login": {"jack"}},
					Changes: domain.Changes{"group": {Add: []any{"pirates"}, Delete: []any{"navy"}}, "shoeSize": {Replace: []any{}}}})
				want = string(b)
			}
			next(again.ShadowID, mod.OperationID, 2, want, "")
			d := shadow(t, e.app, again.ShadowID)
			if fmt.Sprint(d.Attributes["group"]) != "[pirates]" || d.Attributes["shoeSize"] != nil {
				t.Fatalf("attribute cache after the modify: %v", d.Attributes)
			}
		})
	}
}
