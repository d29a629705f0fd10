package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

type cflags struct {
	server, creds, user, password, tlsCA, prefix *string
	timeout                                      *time.Duration
}

// connFlags are the connection flags every client verb takes (help lists them apart).
var connFlags = map[string]bool{"server": true, "creds": true, "user": true, "password": true, "tls-ca": true, "prefix": true, "timeout": true}

func clientFlags(fs *flag.FlagSet, getenv func(string) string) *cflags {
	def := getenv("NATS_URL")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	return &cflags{
		server:   fs.String("server", def, "NATS URL (env NATS_URL)"),
		creds:    fs.String("creds", "", "NATS credentials file"),
		user:     fs.String("user", "", "NATS user"),
		password: fs.String("password", "", "NATS password"),
		tlsCA:    fs.String("tls-ca", "", "CA certificate (PEM) to verify the NATS server"),
		prefix:   fs.String("prefix", "prov", "subject prefix"),
		timeout:  fs.Duration("timeout", 10*time.Second, "request timeout"),
	}
}

func (c *cflags) connect() (*nats.Conn, error) {
	nc, err := connect(app.NATSConfig{URL: *c.server, Creds: *c.creds, User: *c.user, Password: *c.password,
		TLS: app.TLSConfig{CA: *c.tlsCA}}, "shadowbridge client")
	if err != nil {
		return nil, err
	}
	return nc, nil
}

// attach connects and attaches to the event store the service made (client verbs never
// create or change it); closeConn closes the connection.
func (c *cflags) attach(ctx context.Context) (store *eventstore.Store, closeConn func(), err error) {
	nc, err := c.connect()
	if err != nil {
		return nil, nil, err
	}
	if store, err = openStore(ctx, nc, *c.prefix); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return store, nc.Close, nil
}

func openStore(ctx context.Context, nc *nats.Conn, prefix string) (*eventstore.Store, error) {
	cfg := eventstore.DefaultConfig()
	cfg.Prefix = prefix
	return eventstore.Attach(ctx, nc, cfg)
}

// multiFlag collects repeated flags.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseValue reads attr=value (a string) or attr:=<json> (a number, boolean or string in JSON).
func parseAssign(arg string) (name, op string, value any, err error) {
	for _, sep := range []string{":=", "+=", "-=", "="} {
		if i := strings.Index(arg, sep); i > 0 {
			name, raw := arg[:i], arg[i+len(sep):]
			if sep == ":=" {
				if err := json.Unmarshal([]byte(raw), &value); err != nil {
					return "", "", nil, fmt.Errorf("%s: %q is not JSON", name, raw)
				}
				return name, "=", value, nil
			}
			return name, sep, raw, nil
		}
	}
	return "", "", nil, fmt.Errorf("%q: want attr=value, attr:=<json>, attr+=value or attr-=value", arg)
}

// clientVerbFlags lists the flags each client verb takes beside the connection flags.
var clientVerbFlags = map[string][]string{
	"add":         {"object-class", "assigned", "request-id"},
	"modify":      {"id", "request-id"},
	"delete":      {"id", "request-id"},
	"refresh":     {"force"},
	"confirm":     {"result", "message", "primary"},
	"cancel":      {},
	"maintenance": {"reason"},
	"resource":    {},
	"get":         {"as-of"},
	"pending":     {"resource", "json"},
	"history":     {"json"},
	"explain":     {"json"},
}

func runClient(ctx context.Context, verb string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, verb, stdout, stderr)
	var (
		ids, primary multiFlag
		objectClass  = "AccountObjectClass"
		assigned     bool
		requestID    string
		force        bool
		result       = "success"
		message      string
		asOf         string
		resource     string
		asJSON       bool
		reason       string
	)
	for _, name := range clientVerbFlags[verb] {
		switch name {
		case "object-class":
			fs.StringVar(&objectClass, name, objectClass, "object class of the account")
		case "assigned":
			fs.BoolVar(&assigned, name, false, "the account comes from an assignment")
		case "request-id":
			fs.StringVar(&requestID, name, "", "idempotency key: a re-send with the same key gets the first reply")
		case "force":
			fs.BoolVar(&force, name, false, "retry even if the retry period has not passed")
		case "result":
			fs.StringVar(&result, name, result, "result status: success, partial_error, fatal_error, ...")
		case "message":
			fs.StringVar(&message, name, "", "message recorded with the result")
		case "as-of":
			fs.StringVar(&asOf, name, "", "show the shadow as it was at this RFC 3339 time")
		case "resource":
			fs.StringVar(&resource, name, "", "only this resource")
		case "json":
			fs.BoolVar(&asJSON, name, false, "print JSON instead of a table")
		case "reason":
			fs.StringVar(&reason, name, "", "why (recorded with the change)")
		case "id":
			fs.Var(&ids, name, "address the shadow by identifier attr=value instead of its id")
		case "primary":
			fs.Var(&primary, name, "primary identifier attr=value set by the target system")
		}
	}
	cf := clientFlags(fs, getenv)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	need := func(n int, what string) error {
		if len(pos) < n {
			return fmt.Errorf("%s: missing %s", verb, what)
		}
		return nil
	}
	var subject string
	body := map[string]any{}
	if requestID != "" {
		body["requestId"] = requestID
	}
	target := func() error {
		if len(ids) > 0 {
			m, err := assignments(ids)
			if err != nil {
				return err
			}
			body["identifiers"] = m
			return nil
		}
		if err := need(2, "SHADOW (or --id attr=value)"); err != nil {
			return err
		}
		body["shadowId"] = pos[1]
		pos = append(pos[:1], pos[2:]...)
		return nil
	}
	switch verb {
	case "add":
		if err := need(1, "RESOURCE"); err != nil {
			return err
		}
		attrs, err := assignments(pos[1:])
		if err != nil {
			return err
		}
		subject = *cf.prefix + ".cmd." + pos[0] + ".add"
		body["objectClass"], body["attributes"] = objectClass, attrs
		if assigned {
			body["assigned"] = true
		}
	case "modify":
		if err := need(1, "RESOURCE"); err != nil {
			return err
		}
		if err := target(); err != nil {
			return err
		}
		changes := map[string]map[string][]any{}
		for _, a := range pos[1:] {
			name, op, v, err := parseAssign(a)
			if err != nil {
				return err
			}
			c := changes[name]
			if c == nil {
				c = map[string][]any{}
				changes[name] = c
			}
			key := map[string]string{"=": "replace", "+=": "add", "-=": "delete"}[op]
			c[key] = append(c[key], v)
		}
		subject = *cf.prefix + ".cmd." + pos[0] + ".modify"
		body["changes"] = changes
	case "delete":
		if err := need(1, "RESOURCE"); err != nil {
			return err
		}
		if err := target(); err != nil {
			return err
		}
		subject = *cf.prefix + ".cmd." + pos[0] + ".delete"
	case "refresh":
		if err := need(1, "RESOURCE"); err != nil {
			return err
		}
		if len(pos) > 1 {
			body["shadowId"] = pos[1]
		}
		if force {
			body["forceRetry"] = true
		}
		subject = *cf.prefix + ".cmd." + pos[0] + ".refresh"
	case "confirm":
		if err := need(2, "RESOURCE OPERATION"); err != nil {
			return err
		}
		body["operationId"], body["resultStatus"] = pos[1], result
		if message != "" {
			body["message"] = message
		}
		if len(primary) > 0 {
			m, err := assignments(primary)
			if err != nil {
				return err
			}
			body["primaryIdentifiers"] = m
		}
		subject = *cf.prefix + ".cmd." + pos[0] + ".confirm"
	case "cancel":
		if err := need(2, "RESOURCE OPERATION"); err != nil {
			return err
		}
		body["operationId"] = pos[1]
		subject = *cf.prefix + ".cmd." + pos[0] + ".cancel"
	case "maintenance":
		if err := need(2, "RESOURCE on|off"); err != nil {
			return err
		}
		switch pos[1] {
		case "on":
			body["maintenance"] = true
		case "off":
			body["maintenance"] = false
		default:
			return fmt.Errorf("maintenance: %q: want on or off", pos[1])
		}
		if reason != "" {
			body["reason"] = reason
		}
		subject = *cf.prefix + ".cmd." + pos[0] + ".maintenance"
	case "resource":
		if err := need(1, "RESOURCE"); err != nil {
			return err
		}
		body["resource"] = pos[0]
		subject = *cf.prefix + ".query.resource"
	case "get":
		if err := need(1, "SHADOW"); err != nil {
			return err
		}
		body["shadowId"] = pos[0]
		if asOf != "" {
			body["asOf"] = asOf
		}
		subject = *cf.prefix + ".query.shadow"
	case "pending":
		if resource != "" {
			body["resource"] = resource
		}
		subject = *cf.prefix + ".query.pending"
	case "explain":
		if err := need(1, "SHADOW"); err != nil {
			return err
		}
		body["shadowId"] = pos[0]
		subject = *cf.prefix + ".query.explain"
	case "history":
		if err := need(1, "SHADOW"); err != nil {
			return err
		}
		body["shadowId"] = pos[0]
		subject = *cf.prefix + ".query.history"
	}
	nc, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ask := func(body map[string]any) ([]byte, error) {
		var raw json.RawMessage
		err := request(ctx, nc, *cf.timeout, subject, body, &raw)
		return raw, err
	}
	if verb == "pending" {
		// The service answers a page at a time; the CLI lists them all.
		var all []json.RawMessage
		next := map[string]time.Time{}
		for {
			data, err := ask(body)
			if err != nil {
				return err
			}
			var page struct {
				Shadows      []json.RawMessage    `json:"shadows"`
				Next         string               `json:"next"`
				NextAttempts map[string]time.Time `json:"nextAttempts"`
			}
			if err := json.Unmarshal(data, &page); err != nil {
				return fmt.Errorf("reply is not JSON: %w", err)
			}
			all = append(all, page.Shadows...)
			maps.Copy(next, page.NextAttempts)
			if page.Next == "" {
				break
			}
			body["after"], body["limit"] = page.Next, 1000
		}
		if all == nil {
			all = []json.RawMessage{}
		}
		if asJSON {
			out, _ := json.MarshalIndent(map[string]any{"shadows": all, "nextAttempts": next}, "", "  ")
			fmt.Fprintln(stdout, string(out))
			return nil
		}
		return printPending(all, next, time.Now(), stdout)
	}
	data, err := ask(body)
	if err != nil {
		return err
	}
	reply := struct{ Data []byte }{data}
	if verb == "history" {
		return printHistory(reply.Data, asJSON, stdout)
	}
	if verb == "explain" && !asJSON {
		return printExplanation(reply.Data, stdout)
	}
	var pretty any
	if err := json.Unmarshal(reply.Data, &pretty); err != nil {
		return fmt.Errorf("reply is not JSON: %w", err)
	}
	out, _ := json.MarshalIndent(pretty, "", "  ")
	fmt.Fprintln(stdout, string(out))
	return nil
}

// printPending prints one line per shadow with unfinished operations: what a person scans
// first (the shadow, its login, what is pending, in which state, when it is tried next).
func printPending(shadows []json.RawMessage, next map[string]time.Time, now time.Time, stdout io.Writer) error {
	if len(shadows) == 0 {
		fmt.Fprintln(stdout, "no shadow has unfinished operations")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHADOW\tRESOURCE\tLOGIN\tLIFECYCLE\tOPERATIONS\tSTATUS\tNEXT ATTEMPT")
	for _, raw := range shadows {
		var sd domain.ShadowData
		if err := json.Unmarshal(raw, &sd); err != nil {
			return fmt.Errorf("reply: %w", err)
		}
		var ops, status []string
		for _, p := range sd.PendingOperations {
			if p.Completed() {
				continue
			}
			ops = append(ops, string(p.Delta.ChangeType))
			st := string(p.ExecutionStatus)
			if p.Type == domain.TypeRetry {
				st += fmt.Sprintf(" (retry, %d attempts)", p.AttemptNumber)
			}
			status = append(status, st)
		}
		when := "-"
		if at, ok := next[sd.ShadowID]; ok {
			when = at.Local().Format(time.DateTime)
			if d := at.Sub(now).Round(time.Second); d > 0 {
				when += " (in " + d.String() + ")"
			} else {
				when += " (due)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sd.ShadowID, sd.Resource, loginOf(sd), sd.LifecycleState,
			strings.Join(ops, ","), strings.Join(status, ", "), when)
	}
	return tw.Flush()
}

// loginOf is the name a person knows the account by: its login attribute, else its first
// secondary identifier, else its primary identifier.
func loginOf(sd domain.ShadowData) string {
	for _, attrs := range []domain.Attributes{{"login": sd.Attributes["login"]}, sd.SecondaryIdentifiers, sd.PrimaryIdentifiers} {
		for _, name := range slices.Sorted(maps.Keys(attrs)) {
			if vs := attrs[name]; len(vs) > 0 {
				return fmt.Sprint(vs[0])
			}
		}
	}
	return "-"
}

func assignments(args []string) (map[string][]any, error) {
	m := map[string][]any{}
	for _, a := range args {
		name, op, v, err := parseAssign(a)
		if err != nil {
			return nil, err
		}
		if op != "=" {
			return nil, fmt.Errorf("%q: only attr=value or attr:=<json> here", a)
		}
		m[name] = append(m[name], v)
	}
	return m, nil
}

func printHistory(data []byte, asJSON bool, stdout io.Writer) error {
	var h struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return err
	}
	if asJSON {
		for _, e := range h.Events {
			fmt.Fprintln(stdout, string(e))
		}
		return nil
	}
	fmt.Fprintln(stdout, tableHeader)
	for _, raw := range h.Events {
		var e struct {
			row
			Event map[string]any `json:"event"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		if d := detail(e.Event); d != "" {
			e.Outcome = strings.TrimSpace(e.Outcome + " " + d)
		}
		fmt.Fprint(stdout, formatRow(e.row))
	}
	return nil
}

func printExplanation(data []byte, stdout io.Writer) error {
	var x domain.Explanation
	if err := json.Unmarshal(data, &x); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "shadow %s is %s\n", x.ShadowID, x.LifecycleState)
	for _, w := range x.Why {
		fmt.Fprintf(stdout, "  because %s\n", w)
	}
	if len(x.Next) == 0 {
		fmt.Fprintln(stdout, "nothing is due")
		return nil
	}
	fmt.Fprintln(stdout, "next:")
	for _, n := range x.Next {
		at := "waiting"
		if !n.At.IsZero() {
			at = n.At.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "  %-20s %s\n", at, n.What)
	}
	return nil
}

func detail(ev map[string]any) string {
	var parts []string
	for _, k := range []string{"message", "source", "reference", "at"} {
		if v, ok := ev[k]; ok && v != "" {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if e, ok := ev["error"].(map[string]any); ok {
		parts = append(parts, fmt.Sprintf("error=%v: %v", e["category"], e["message"]))
	}
	return strings.Join(parts, " ")
}

// parseInterleaved parses flags anywhere among the positional arguments ("--" ends flags).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
