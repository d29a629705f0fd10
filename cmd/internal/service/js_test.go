package service_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// The official NATS JavaScript client, which nobody here wrote, re-sends commands with their
// request ids: it gets the first reply each time, the same id with another body is refused with
// 409, bad input with 400, and the log holds one decision per request id.
func TestNATSJavaScriptClient(t *testing.T) {
	modules, _ := filepath.Abs(filepath.Join("..", "..", "..", "deployments", "js", "node_modules"))
	if _, err := os.Stat(filepath.Join(modules, "nats", "package.json")); err != nil {
		msg := "the NATS JavaScript client is not installed (deployments/js/install.sh)"
		if os.Getenv("SHADOWBRIDGE_REQUIRE_JS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	e := start(t, app.Options{NoDispatcher: true, NoSample: true})
	node := exec.CommandContext(t.Context(), "node", filepath.Join("testdata", "js_client.cjs"), e.srv.ClientURL())
	node.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := node.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node: %v\n%s", err, stderr)
	}
	type answer struct {
		Code string         `json:"code"`
		Data map[string]any `json:"data"`
	}
	var got map[string]answer
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if fmt.Sprint(got["add1"]) != fmt.Sprint(got["add2"]) || got["add1"].Code != "" || got["add1"].Data["shadowId"] == nil {
		t.Fatalf("add re-sent: %+v then %+v", got["add1"], got["add2"])
	}
	if fmt.Sprint(got["mod1"]) != fmt.Sprint(got["mod2"]) || got["mod1"].Code != "" || got["mod1"].Data["shadowId"] != got["add1"].Data["shadowId"] {
		t.Fatalf("modify re-sent: %+v then %+v", got["mod1"], got["mod2"])
	}
	if got["reused"].Code != "409" || got["bad"].Code != "400" {
		t.Fatalf("reused request id answered %+v, bad input %+v", got["reused"], got["bad"])
	}
	h, err := e.app.Service.History(t.Context(), got["add1"].Data["shadowId"].(string))
	if err != nil {
		t.Fatal(err)
	}
	decided := map[string]int{}
	for _, ev := range h {
		switch ev.Event.(type) {
		case domain.AddRequested, domain.ModifyRequested:
			decided[ev.RequestID]++
		}
	}
	if decided["js-1"] != 1 || decided["js-2"] != 1 {
		t.Fatalf("decisions per request id: %v", decided)
	}
}
