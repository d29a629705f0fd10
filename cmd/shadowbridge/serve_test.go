package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shadowbridge/eventstore/embedded"

	"github.com/nats-io/nats-server/v2/server"
)

// natsWithPassword starts a NATS server (JetStream in a temporary directory) that lets in user
// "sb" with password only; it stops with the test.
func natsWithPassword(t *testing.T, password string) *server.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Username: "sb", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// serve against an external NATS that requires a password; the client verbs use the same auth.
func TestServeWithAuthAndConfirmVerb(t *testing.T) {
	srv := natsWithPassword(t, "s3cret")
	cfgFile := filepath.Join(t.TempDir(), "sb.yaml")
	cfg := `
nats: {url: "` + srv.ClientURL() + `", user: sb, password: s3cret}
http: {listen: "127.0.0.1:0"}
resources:
  - name: hr
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {nats: {subject: target.hr}}
    operationExecutionConfirmation: true
`
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errb := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgFile}, func(string) string { return "" }, &syncBuf{}, errb)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(errb.String(), "s3cret") {
			t.Error("the password was logged")
		}
	}()
	auth := []string{"--user", "sb", "--password", "s3cret", "--server", srv.ClientURL()}
	var out string
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err = client(t, "", append([]string{"add", "hr", "login=anne", "-o", "json"}, auth...)...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never answered: %v\n%s", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var r map[string]string
	_ = json.Unmarshal([]byte(out), &r)
	// The target system (here: us) confirms through the CLI, assigning the uid.
	deadline = time.Now().Add(15 * time.Second)
	for {
		out, err = client(t, "", append([]string{"confirm", "hr", r["operationId"], "--result", "success", "--primary", "uid=4711", "-o", "json"}, auth...)...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("confirm: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the dispatcher may not have recorded the send yet: fine either way
	}
	if !strings.Contains(out, `"resultStatus": "success"`) {
		t.Fatalf("confirm reply: %s", out)
	}
	got, err := client(t, "", append([]string{"get", r["shadowId"], "-o", "json"}, auth...)...)
	if err != nil || !strings.Contains(got, `"live"`) || !strings.Contains(got, "4711") {
		t.Fatalf("after confirm: %v\n%s", err, got)
	}
	if _, err := client(t, "", "get", r["shadowId"], "--server", srv.ClientURL(), "--timeout", "1s"); err == nil {
		t.Fatal("a client without credentials was served")
	}
	// A nats CLI context (natscontext: where NATS users keep server, credentials and TLS) stands
	// in for the connection flags, by --context or NATS_CONTEXT; a flag given overrides it.
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	if err := os.MkdirAll(filepath.Join(cfgHome, "nats", "context"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, pw := range map[string]string{"sbtest": "s3cret", "wrongpw": "nope"} {
		body := fmt.Sprintf(`{"url":%q,"user":"sb","password":%q}`, srv.ClientURL(), pw)
		if err := os.WriteFile(filepath.Join(cfgHome, "nats", "context", name+".json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := client(t, "", "get", r["shadowId"], "--context", "sbtest"); err != nil || !strings.Contains(got, r["shadowId"]) {
		t.Fatalf("get --context: %v\n%s", err, got)
	}
	var viaEnv bytes.Buffer
	if err := run(t.Context(), []string{"get", r["shadowId"]}, func(k string) string {
		return map[string]string{"NATS_CONTEXT": "sbtest"}[k]
	}, &viaEnv, io.Discard); err != nil || !strings.Contains(viaEnv.String(), r["shadowId"]) {
		t.Fatalf("get with NATS_CONTEXT: %v\n%s", err, viaEnv.String())
	}
	if _, err := client(t, "", "get", r["shadowId"], "--context", "wrongpw", "--timeout", "1s"); err == nil {
		t.Fatal("a context with the wrong password was served")
	}
	if _, err := client(t, "", "get", r["shadowId"], "--context", "wrongpw", "--password", "s3cret", "--user", "sb"); err != nil {
		t.Fatalf("--user/--password over a context: %v", err)
	}
	if _, err := client(t, "", "get", r["shadowId"], "--context", "nosuch"); err == nil || !strings.Contains(err.Error(), `nats context "nosuch"`) {
		t.Fatalf("an unknown context: %v", err)
	}
	if _, err := client(t, "", append([]string{"confirm", "hr", r["operationId"]}, auth...)...); err == nil || !strings.HasSuffix(err.Error(), "(status 409)") {
		t.Fatalf("second confirm: %v", err)
	}
}

// Credentials in a NATS URL never reach what serve prints: not when it cannot connect, not when
// it serves (the log shows the URL with the password masked).
func TestServeNeverPrintsTheNATSPassword(t *testing.T) {
	const canary = "n4ts-canary-pw"
	srv := natsWithPassword(t, canary)
	port := srv.ClientURL()[strings.LastIndex(srv.ClientURL(), ":")+1:]
	write := func(url string) string {
		f := filepath.Join(t.TempDir(), "sb.yaml")
		if err := os.WriteFile(f, []byte(`
nats: {url: "`+url+`"}
http: {listen: "127.0.0.1:0"}
resources:
  - name: hr
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {nats: {subject: target.hr}}
`), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Nothing listens on port 1: serve waits for NATS, saying why, until it is stopped.
	var out, errb syncBuf
	wctx, stopWaiting := context.WithCancel(t.Context())
	waited := make(chan error, 1)
	go func() {
		waited <- run(wctx, []string{"serve", "--config", write("nats://sb:" + canary + "@127.0.0.1:1")}, func(string) string { return "" }, &out, &errb)
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(errb.String(), "waiting for NATS"); {
		if time.Now().After(deadline) {
			t.Fatalf("serve with an unreachable NATS does not say it waits:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopWaiting()
	if err := <-waited; err == nil || strings.Contains(err.Error()+out.String()+errb.String(), canary) {
		t.Fatalf("serve with an unreachable NATS: %v\n%s%s", err, out.String(), errb.String())
	}
	// It connects and serves.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", write("nats://sb:" + canary + "@127.0.0.1:" + port)}, func(string) string { return "" }, &out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errb.String(), "serving") {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if all := out.String() + errb.String(); strings.Contains(all, canary) {
		t.Fatalf("serve printed the password:\n%s", all)
	}
}

// serve takes its NATS password from a file in systemd's credentials directory (LoadCredential=,
// as the shipped unit does) and never prints it.
func TestServeReadsThePasswordFromACredentialFile(t *testing.T) {
	const canary = "cr3d-canary-pw"
	srv := natsWithPassword(t, canary)
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "nats-password"), []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(cfgFile, []byte(`
nats: {url: "`+srv.ClientURL()+`", user: sb, passwordFile: nats-password}
http: {listen: "127.0.0.1:0"}
resources:
  - name: hr
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {nats: {subject: target.hr}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgFile}, func(k string) string {
			return map[string]string{"CREDENTIALS_DIRECTORY": creds}[k]
		}, &out, &errb)
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(errb.String(), "serving"); {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start with the password from the file:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String()+errb.String(), canary) {
		t.Fatal("serve printed the password")
	}
}
