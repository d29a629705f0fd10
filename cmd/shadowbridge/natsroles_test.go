package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/eventstore/natstest"
)

// The roles of deployments/nats/accounts.conf on a real server with TLS from a CA made here:
// the service user runs shadowbridge; an IDM user sends commands and reads replies and nothing
// else; an auditor reads the event stream (audit works) and nothing else; anonymous clients and
// clients that do not trust the CA are refused.
func TestNATSRolesAndTLS(t *testing.T) {
	dir := t.TempDir()
	natstest.CA(t, dir)
	accounts, err := os.ReadFile(filepath.Join("..", "..", "deployments", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), accounts, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ntls { cert_file: %q, key_file: %q }\ninclude accounts.conf\n",
		filepath.Join(dir, "js"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := map[string]string{"shadowbridge": "svc-pw-0123456789", "idm": "idm-pw-0123456789", "auditor": "aud-pw-0123456789"}
	t.Setenv("SHADOWBRIDGE_NATS_PASSWORD", pw["shadowbridge"])
	t.Setenv("IDM_NATS_PASSWORD", pw["idm"])
	t.Setenv("AUDITOR_NATS_PASSWORD", pw["auditor"])
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	url := ns.ClientURL()
	ca := filepath.Join(dir, "ca.pem")

	// The service, connected as shadowbridge over TLS, the way serve connects.
	svc, err := connect(app.NATSConfig{URL: url, User: "shadowbridge", Password: pw["shadowbridge"], TLS: app.TLSConfig{CA: ca}}, "shadowbridge")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	a, err := app.Start(t.Context(), svc, app.DefaultConfig(), app.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	// Refused: anonymous, a wrong password, a client that does not trust the CA.
	if _, err := nats.Connect(url, nats.RootCAs(ca)); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous: %v", err)
	}
	if _, err := nats.Connect(url, nats.RootCAs(ca), nats.UserInfo("idm", "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if _, err := nats.Connect(url, nats.UserInfo("idm", pw["idm"])); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without the CA: %v", err)
	}

	// Each role through a client that records permission violations.
	role := func(user string) (*nats.Conn, chan error) {
		errs := make(chan error, 16)
		nc, err := nats.Connect(url, nats.RootCAs(ca), nats.UserInfo(user, pw[user]),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc, errs
	}
	denied := func(who string, errs chan error, subject string) {
		t.Helper()
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), subject) {
				t.Fatalf("%s on %s: %v", who, subject, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was not refused %s", who, subject)
		}
	}
	idm, idmErrs := role("idm")
	m, err := idm.Request("prov.cmd.demo.add", []byte(`{"objectClass":"AccountObjectClass","attributes":{"login":["roles"]}}`), 10*time.Second)
	if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("idm add: %v %v", err, m)
	}
	var reply struct{ ShadowID string }
	_ = json.Unmarshal(m.Data, &reply)
	if _, err := idm.Request("prov.query.shadow", fmt.Appendf(nil, `{"shadowId":%q}`, reply.ShadowID), 10*time.Second); err != nil {
		t.Fatalf("idm query: %v", err)
	}
	_ = idm.Publish("prov.evt.demo."+reply.ShadowID, []byte("forged"))
	denied("idm", idmErrs, "prov.evt.demo")
	_, _ = idm.SubscribeSync("prov.evt.>")
	denied("idm", idmErrs, "prov.evt.>")
	_ = idm.Publish("$JS.API.STREAM.INFO.PROV_EVENTS", nil)
	denied("idm", idmErrs, "$JS.API.STREAM.INFO.PROV_EVENTS")

	aud, audErrs := role("auditor")
	var out, errb strings.Builder
	err = run(t.Context(), []string{"audit", "--server", url, "--user", "auditor", "--password", pw["auditor"], "--tls-ca", ca},
		func(string) string { return "" }, &out, &errb)
	if err != nil || !strings.Contains(out.String(), reply.ShadowID) {
		t.Fatalf("auditor audit: %v\n%s\n%s", err, out.String(), errb.String())
	}
	_ = aud.Publish("prov.cmd.demo.add", []byte(`{}`))
	denied("auditor", audErrs, "prov.cmd.demo.add")
	_ = aud.Publish("$JS.API.STREAM.PURGE.PROV_EVENTS", nil)
	denied("auditor", audErrs, "$JS.API.STREAM.PURGE.PROV_EVENTS")
	_ = aud.Publish("$JS.API.STREAM.INFO.KV_PROV_SHADOWS", nil)
	denied("auditor", audErrs, "KV_PROV_SHADOWS")
}
