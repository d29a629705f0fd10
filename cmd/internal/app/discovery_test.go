package app_test

import (
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// The target answers an add with "already exists": the new shadow is tombstoned and the existing
// account gets a live shadow, found by its login, with the attributes of the answer.
func TestDiscoveryAlreadyExists(t *testing.T) {
	cfg, err := app.Parse([]byte(`
resources:
  - name: hr
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {nats: {subject: target.hr}}
    operationExecutionConfirmation: true
`))
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg, app.Options{})
	r := e.ok(t, "prov.cmd.hr.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"jack"}}})
	id, op := r["shadowId"].(string), r["operationId"].(string)
	e.ok(t, "prov.cmd.hr.confirm", map[string]any{"operationId": op, "resultStatus": "fatal_error", "errorCategory": "already-exists",
		"message": "account jack exists", "attributes": map[string]any{"login": []any{"jack"}, "fullName": []any{"Jack (old)"}},
		"primaryIdentifiers": map[string]any{"uid": []any{"u-17"}}})
	old, err := e.app.Service.Shadow(t.Context(), id, time.Time{})
	if err != nil || !old.Dead || old.PendingOperations[0].ResultStatus != domain.ResultHandledError {
		t.Fatalf("new shadow: %+v %v", old, err)
	}
	found, err := e.app.Service.Resolve(t.Context(), "hr", "", domain.Attributes{"login": {"jack"}})
	if err != nil || found == id {
		t.Fatalf("discovered shadow by login: %q %v", found, err)
	}
	d, err := e.app.Service.Shadow(t.Context(), found, time.Time{})
	if err != nil || d.LifecycleState != domain.LifecycleLive || d.Attributes["fullName"][0] != "Jack (old)" || d.PrimaryIdentifiers["uid"][0] != "u-17" {
		t.Fatalf("discovered shadow: %+v %v", d, err)
	}
	// The discovered account can be managed as any other.
	e.ok(t, "prov.cmd.hr.modify", map[string]any{"identifiers": map[string]any{"uid": []any{"u-17"}},
		"changes": map[string]any{"fullName": map[string]any{"replace": []any{"Jack"}}}})
}
