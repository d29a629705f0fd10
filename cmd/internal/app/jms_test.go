package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shadowbridge/bridge"
	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// jmsLine is what the JMS fixture prints for each request it receives.
type jmsLine struct {
	Type, Text, ShadowID, OperationID, Resource, Attempt, DuplicateID, JMSMessageID, ReplyTo string
	Sequence                                                                                 int64
	Persistent                                                                               bool
}

// A target system written with Apache Artemis' own JMS client (deployments/artemis/jms-target,
// built by the test script) receives every request as a persistent TextMessage holding the JSON,
// with the string properties, and answers with a TextMessage whose JMSCorrelationID is the
// operation id: each operation completes, adds with the uid the JMS side assigned.
func TestArtemisJMSTargetSystem(t *testing.T) {
	b := amqptest.Artemis(t)
	dir, _ := filepath.Abs(filepath.Join("..", "..", "..", "deployments", "artemis", "jms-target", "target"))
	if _, err := os.Stat(filepath.Join(dir, "classes", "shadowbridge", "JmsTarget.class")); err != nil {
		t.Fatalf("the JMS fixture is not built (deployments/artemis/test-broker.sh start builds it): %v", err)
	}
	req, conf := amqptest.Unique("jms-requests"), amqptest.Unique("jms-confirmations")
	e := start(t, amqpConfig(t, b.URL, req, conf, true), app.Options{})
	const n = 4 // three adds and a modify
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	java := exec.CommandContext(ctx, "java", "-cp", filepath.Join(dir, "classes")+string(os.PathListSeparator)+filepath.Join(dir, "lib", "*"),
		"shadowbridge.JmsTarget", "tcp://"+b.HostPort(), "shadow", "shadow", req, conf, fmt.Sprint(n))
	var stdout, stderr bytes.Buffer
	java.Stdout, java.Stderr = &stdout, &stderr
	if err := java.Start(); err != nil {
		t.Fatal(err)
	}
	var ids, ops []string
	for i := range 3 {
		r := add(t, e.app, fmt.Sprint("j", i))
		ids, ops = append(ids, r.ShadowID), append(ops, r.OperationID)
	}
	waitFor(t, "the adds confirmed over JMS", 60*time.Second, func() bool {
		return shadow(t, e.app, ids[0]).LifecycleState == domain.LifecycleLive
	})
	mod, err := e.app.Service.Provision(t.Context(), serviceModify(ids[0], "fullName", "Jack JMS"))
	if err != nil {
		t.Fatal(err)
	}
	ops = append(ops, mod.OperationID)
	if err := java.Wait(); err != nil {
		t.Fatalf("JMS target: %v\n%s", err, stderr.String())
	}
	got := map[string]jmsLine{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var l jmsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("fixture output %q: %v", sc.Text(), err)
		}
		got[l.OperationID] = l
	}
	for i, op := range ops {
		l, ok := got[op]
		if !ok {
			t.Fatalf("operation %s never reached the JMS consumer: %v", op, got)
		}
		shadowID := ids[min(i, 2)]
		if i == 3 {
			shadowID = ids[0]
		}
		if l.Type != "TextMessage" || !l.Persistent || l.ShadowID != shadowID || l.Resource != "fs" || l.Attempt != "1" ||
			l.DuplicateID != op || !sameButVersion(strings.TrimPrefix(l.JMSMessageID, "ID:"), op) || l.ReplyTo == "" || l.Sequence < 1 {
			t.Fatalf("request %d as JMS sees it: %+v", i, l)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(l.Text), &body); err != nil {
			t.Fatalf("text is not the JSON request: %q", l.Text)
		}
		if i < 3 && (body["operation"] != "add" || fmt.Sprint(body["attributes"]) != fmt.Sprintf("map[login:[j%d]]", i)) {
			t.Fatalf("add %d: %s", i, l.Text)
		}
	}
	waitFor(t, "every operation completed by the JMS answers", 30*time.Second, func() bool {
		for i, id := range ids {
			d := shadow(t, e.app, id)
			if d.LifecycleState != domain.LifecycleLive || fmt.Sprint(d.PrimaryIdentifiers["uid"]) != "[jms-"+id[:8]+"]" {
				return false
			}
			if i == 0 {
				if p, _ := restoreOp(d, mod.OperationID); p.ResultStatus != domain.ResultSuccess || fmt.Sprint(d.Attributes["fullName"]) != "[Jack JMS]" {
					return false
				}
			}
		}
		return true
	})
	want, _ := bridge.Transform(bridge.SimplifiedJSON, domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "AccountObjectClass",
		PrimaryIdentifiers: domain.Attributes{"uid": {"jms-" + ids[0][:8]}}, SecondaryIdentifiers: domain.Attributes{"login": {"j0"}},
		Changes: domain.Changes{"fullName": {Replace: []any{"Jack JMS"}}}})
	if got[mod.OperationID].Text != string(want) {
		t.Fatalf("modify as JMS sees it: %s, want %s", got[mod.OperationID].Text, want)
	}
}

func serviceModify(shadowID, attr string, value any) service.Request {
	return service.Request{Verb: "modify", Resource: "fs", ShadowID: shadowID, Changes: domain.Changes{attr: {Replace: []any{value}}}}
}

// sameButVersion compares two UUIDs but for their version digit: Artemis turns the AMQP uuid
// message-id into a JMSMessageID whose version digit it rewrites (measured: 4 becomes 1), so a
// JMS application must correlate by the operationId property, not by JMSMessageID.
func sameButVersion(a, b string) bool {
	return len(a) == 36 && len(b) == 36 && a[:14] == b[:14] && a[15:] == b[15:]
}
