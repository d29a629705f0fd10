package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
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
	req, conf := amqptest.Unique("jms-requests"), amqptest.Unique("jms-confirmations")
	e := start(t, amqpConfig(t, b.URL, req, conf, true), app.Options{})
	java, stdout, stderr := amqptest.JMSTarget(t, b, req, conf, 4) // three adds and a modify
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
	sc := bufio.NewScanner(stdout)
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

// Reconciliation against a target written with Artemis' JMS client: the list request reaches it
// as a TextMessage, its pages (TextMessages correlated by the run's id) come back on the
// confirmation queue, and the shadows follow what an administrator did on the target meanwhile:
// an attribute added, an account deleted, an account created.
func TestArtemisJMSTargetListsForReconciliation(t *testing.T) {
	b := amqptest.Artemis(t)
	req, conf := amqptest.Unique("jms-requests"), amqptest.Unique("jms-confirmations")
	e := start(t, amqpConfig(t, b.URL, req, conf, true), app.Options{})
	java, stdout, stderr := amqptest.JMSTarget(t, b, req, conf, 4, "drift") // three adds and a list
	var ids []string
	for i := range 3 {
		ids = append(ids, add(t, e.app, fmt.Sprint("jr", i)).ShadowID)
	}
	waitFor(t, "the adds confirmed over JMS", 60*time.Second, func() bool {
		for _, id := range ids {
			if shadow(t, e.app, id).LifecycleState != domain.LifecycleLive {
				return false
			}
		}
		return true
	})
	out, err := e.app.Service.Reconcile(t.Context(), "fs", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := java.Wait(); err != nil {
		t.Fatalf("JMS target: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `\"operation\":\"list\"`) || !strings.Contains(stdout.String(), out.ReconciliationID) {
		t.Fatalf("the list request as JMS saw it:\n%s", stdout.String())
	}
	var run *domain.ReconciliationRun
	waitFor(t, "the run finished", 30*time.Second, func() bool {
		r, err := e.app.Service.ResourceState(t.Context(), "fs")
		run = r.Reconciliation
		return err == nil && run != nil && run.ID == out.ReconciliationID && run.State != domain.RunRunning
	})
	want := domain.ReconciliationCounts{Accounts: 3, Unchanged: 1, Changed: 1, Discovered: 1, Gone: 1}
	if run.State != domain.RunFinished || run.Pages != 2 || run.Counts != want {
		t.Fatalf("run %+v, want finished after 2 pages with %+v", run, want)
	}
	if a := shadow(t, e.app, ids[1]).Attributes; fmt.Sprint(a["fullName"]) != "[Edited In JMS]" || fmt.Sprint(a["login"]) != "[jr1]" {
		t.Errorf("the edit on the target did not reach the cache: %v", a)
	}
	if !shadow(t, e.app, ids[2]).Dead {
		t.Error("the account deleted on the target left its shadow alive")
	}
	outside, err := e.app.Service.Resolve(t.Context(), "fs", "AccountObjectClass", domain.Attributes{"uid": {"jms-outside"}})
	if err != nil || shadow(t, e.app, outside).LifecycleState != domain.LifecycleLive {
		t.Errorf("the account created on the target has no live shadow (%v)", err)
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
