package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// RabbitMQ over its native AMQP 0-9-1, the target kind `amqp091`: requests reach a durable queue
// (persistent, message-id = operation id, reply-to = the confirmation queue, typed headers), a
// target system written with RabbitMQ's own Go client confirms them, and the shadows become live
// with the uid it assigned; a confirmation that can never be stored goes to the poison queue.
func TestRabbitMQNativeTargetEndToEnd(t *testing.T) {
	b := amqptest.RabbitMQ(t)
	url := strings.TrimSuffix(b.URL, "/") + "/"
	suffix := fmt.Sprint(time.Now().UnixNano())
	req, conf := "sb-requests-"+suffix, "sb-confirmations-"+suffix
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, q := range []string{req, conf, conf + ".poison"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})
	for _, q := range []string{req, conf} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: rabbit
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp091: {url: %q, queue: %q, confirmationQueue: %q}}
    operationExecutionConfirmation: true
`, url, req, conf))
	if err != nil {
		t.Fatal(err)
	}
	// The target system: RabbitMQ's Go client, confirming every request it takes.
	deliveries, err := ch.Consume(req, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		persistent bool
		attempt    any
		replyTo    string
	}
	got := make(chan seen, 100)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for d := range deliveries {
			got <- seen{d.DeliveryMode == amqp091.Persistent, d.Headers["attempt"], d.ReplyTo}
			body, _ := json.Marshal(map[string]any{"resultStatus": "success", "primaryIdentifiers": map[string]any{"uid": []any{"rb-" + d.MessageId[:8]}}})
			if err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, amqp091.Publishing{CorrelationId: d.MessageId, Body: body, DeliveryMode: amqp091.Persistent}); err != nil {
				return
			}
			_ = d.Ack(false)
		}
	}()
	e := start(t, cfg, app.Options{})
	var ids []string
	for i := range 5 {
		r := e.ok(t, "prov.cmd.rabbit.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{fmt.Sprint("r", i)}}})
		ids = append(ids, r["shadowId"].(string))
	}
	for _, id := range ids {
		d := e.waitShadow(t, "rabbit", id, func(d domain.ShadowData) bool {
			return d.LifecycleState == domain.LifecycleLive && len(d.PrimaryIdentifiers["uid"]) == 1
		})
		if uid := fmt.Sprint(d.PrimaryIdentifiers["uid"][0]); !strings.HasPrefix(uid, "rb-") || d.PendingOperations[0].ResultStatus != domain.ResultSuccess {
			t.Fatalf("shadow %s: uid %s, %+v", id, uid, d.PendingOperations[0])
		}
	}
	s := <-got
	if !s.persistent || s.attempt != int32(1) || s.replyTo != conf {
		t.Fatalf("request: persistent %v, attempt %#v, reply-to %q", s.persistent, s.attempt, s.replyTo)
	}
	// A confirmation nobody can store (unknown operation) is moved to the poison queue.
	if err := ch.PublishWithContext(ctx, "", conf, false, false, amqp091.Publishing{CorrelationId: "00000000-0000-4000-8000-000000000000",
		Body: []byte(`{"resultStatus":"success"}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "poison queue", 20*time.Second, func() bool {
		pc, err := conn.Channel() // a failed passive declare closes its channel
		if err != nil {
			return false
		}
		defer pc.Close()
		q, err := pc.QueueDeclarePassive(conf+".poison", true, false, false, false, nil)
		return err == nil && q.Messages == 1
	})
}
