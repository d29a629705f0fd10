package natsapi_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/natsapi"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// jsonFields returns the JSON names of a struct's fields (embedded structs flattened).
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// The AsyncAPI document names every subject the service answers on, and its schemas have exactly
// the fields of the Go types that read and write those messages.
func TestAsyncAPIMatchesTheCode(t *testing.T) {
	data, err := os.ReadFile("../../../docs/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		AsyncAPI   string `yaml:"asyncapi"`
		Channels   map[string]struct{ Address string }
		Operations map[string]struct{ Action string }
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any
			}
		}
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.AsyncAPI, "3.") {
		t.Fatalf("asyncapi %q, want 3.x", doc.AsyncAPI)
	}
	var addresses []string
	for _, c := range doc.Channels {
		addresses = append(addresses, c.Address)
	}
	want := []string{"prov.evt.{resource}.{shadowId}", "prov.res.{resource}", "prov.timer.{resource}.{shadowId}",
		"prov.due.{resource}.{shadowId}", "$KV.PROV_SHADOWS.{resource}.{shadowId}", "{requestAddress}", "{confirmationAddress}"}
	for _, v := range natsapi.CommandVerbs {
		want = append(want, "prov.cmd.{resource}."+v)
	}
	for _, q := range natsapi.QueryNames {
		want = append(want, "prov.query."+q)
	}
	slices.Sort(addresses)
	slices.Sort(want)
	if !slices.Equal(addresses, want) {
		t.Errorf("channel addresses\n got %v\nwant %v", addresses, want)
	}
	for name, op := range doc.Operations {
		if op.Action != "send" && op.Action != "receive" {
			t.Errorf("operation %s: action %q", name, op.Action)
		}
	}

	// The request the AMQP target sends: its JSON keys and application properties.
	full := domain.TargetRequest{Operation: domain.ChangeModify, ObjectClass: "C", Attributes: domain.Attributes{"a": {"x"}},
		PrimaryIdentifiers: domain.Attributes{"uid": {"1"}}, SecondaryIdentifiers: domain.Attributes{"login": {"j"}},
		Changes: domain.Changes{"a": {Replace: []any{"y"}}}}
	body, err := bridge.Transform(bridge.SimplifiedJSON, full)
	if err != nil {
		t.Fatal(err)
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	var reqKeys []string
	for k := range req {
		reqKeys = append(reqKeys, k)
	}
	add, _ := bridge.Transform(bridge.SimplifiedJSON, domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "C", Attributes: domain.Attributes{"a": {"x"}}})
	if strings.Contains(string(add), `"attributes"`) && !slices.Contains(reqKeys, "attributes") {
		reqKeys = append(reqKeys, "attributes")
	}
	props := []string{"_AMQ_DUPL_ID", bridge.PropertySendID}
	for k := range (bridge.Request{Sequence: 1}).Properties() {
		props = append(props, k)
	}
	slices.Sort(reqKeys)
	slices.Sort(props)

	schemas := map[string][]string{
		"AddBody":                 jsonFields(reflect.TypeFor[api.AddBody]()),
		"ModifyBody":              jsonFields(reflect.TypeFor[api.ModifyBody]()),
		"DeleteBody":              jsonFields(reflect.TypeFor[api.DeleteBody]()),
		"RefreshBody":             jsonFields(reflect.TypeFor[api.RefreshBody]()),
		"ConfirmBody":             jsonFields(reflect.TypeFor[api.ConfirmBody]()),
		"CancelBody":              jsonFields(reflect.TypeFor[api.CancelBody]()),
		"NotifyBody":              jsonFields(reflect.TypeFor[api.NotifyBody]()),
		"NotifyReply":             jsonFields(reflect.TypeFor[service.NotifyReply]()),
		"ReconcileBody":           jsonFields(reflect.TypeFor[api.ReconcileBody]()),
		"ReconcileReply":          jsonFields(reflect.TypeFor[service.ReconcileReply]()),
		"PageBody":                jsonFields(reflect.TypeFor[api.PageBody]()),
		"ListedAccount":           jsonFields(reflect.TypeFor[api.ListedAccountJS]()),
		"PageReply":               jsonFields(reflect.TypeFor[service.PageReply]()),
		"MaintenanceBody":         jsonFields(reflect.TypeFor[api.MaintenanceBody]()),
		"ShadowQuery":             jsonFields(reflect.TypeFor[api.ShadowQuery]()),
		"PendingQuery":            jsonFields(reflect.TypeFor[api.PendingQuery]()),
		"HistoryQuery":            jsonFields(reflect.TypeFor[api.HistoryQuery]()),
		"ResourceQuery":           jsonFields(reflect.TypeFor[api.ResourceQuery]()),
		"ChangeBody":              jsonFields(reflect.TypeFor[api.ChangeBody]()),
		"Reply":                   jsonFields(reflect.TypeFor[service.Reply]()),
		"HistoryEvent":            jsonFields(reflect.TypeFor[service.HistoryEvent]()),
		"ShadowData":              jsonFields(reflect.TypeFor[domain.ShadowData]()),
		"PendingOperation":        jsonFields(reflect.TypeFor[domain.PendingOperation]()),
		"OperationError":          jsonFields(reflect.TypeFor[domain.OperationError]()),
		"Explanation":             jsonFields(reflect.TypeFor[domain.Explanation]()),
		"NextStep":                jsonFields(reflect.TypeFor[domain.NextStep]()),
		"ResourceData":            jsonFields(reflect.TypeFor[domain.ResourceData]()),
		"AvailabilityChange":      jsonFields(reflect.TypeFor[domain.AvailabilityChange]()),
		"AMQPConfirmation":        without(jsonFields(reflect.TypeFor[api.ConfirmBody]()), "operationId"), // the operation id is the correlation-id
		"TargetRequest":           reqKeys,
		"TargetRequestProperties": props,
	}
	for name, fields := range schemas {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		var got []string
		for k := range s.Properties {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, fields) {
			t.Errorf("schema %s\n got %v\nwant %v", name, got, fields)
		}
	}
}

func without(list []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return s == drop })
}
