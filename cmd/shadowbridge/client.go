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

	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

type cflags struct {
	fs                                                    *flag.FlagSet
	context, server, creds, user, password, tlsCA, prefix *string
	timeout                                               *time.Duration
}

// connFlags are the connection flags every client verb takes (help lists them apart).
var connFlags = map[string]bool{"context": true, "server": true, "creds": true, "user": true, "password": true, "tls-ca": true, "prefix": true, "timeout": true}

func clientFlags(fs *flag.FlagSet, getenv func(string) string) *cflags {
	def := getenv("NATS_URL")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	return &cflags{
		fs:       fs,
		context:  fs.String("context", getenv("NATS_CONTEXT"), "a nats CLI context: its server, credentials and TLS (env NATS_CONTEXT; the flags below override it)"),
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
	if *c.context != "" {
		return c.connectContext()
	}
	return connect(app.NATSConfig{URL: *c.server, Creds: *c.creds, User: *c.user, Password: *c.password,
		TLS: app.TLSConfig{CA: *c.tlsCA}}, "shadowbridge client")
}

// connectContext connects with a nats CLI context (natscontext, as the nats CLI reads it: the
// server, credentials, TLS), the connection flags given on the command line overriding it.
func (c *cflags) connectContext() (*nats.Conn, error) {
	nctx, err := natscontext.New(*c.context, true)
	if err != nil {
		return nil, fmt.Errorf("nats context %q: %w", *c.context, err)
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	opts := []nats.Option{nats.Name("shadowbridge client"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	if set["creds"] {
		opts = append(opts, nats.UserCredentials(*c.creds))
	}
	if set["user"] || set["password"] {
		opts = append(opts, nats.UserInfo(*c.user, *c.password))
	}
	if set["tls-ca"] {
		opts = append(opts, nats.RootCAs(*c.tlsCA))
	}
	all, err := nctx.NATSOptions(opts...) // the context's first, ours after: ours win
	if err != nil {
		return nil, fmt.Errorf("nats context %q: %w", *c.context, err)
	}
	url := nctx.ServerURL()
	if set["server"] {
		url = *c.server
	}
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s (context %q): %w", bridge.RedactURL(url), *c.context, err)
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

// clientArgs is what a client verb's flags and positional arguments hold once parsed.
type clientArgs struct {
	verb                  string
	pos                   []string
	ids, primary          multiFlag
	objectClass, result   string
	requestID, message    string
	asOf, resource        string
	reason                string
	assigned, force, json bool
}

// need checks that at least n positional arguments were given.
func (a *clientArgs) need(n int, what string) error {
	if len(a.pos) < n {
		return fmt.Errorf("%s: missing %s", a.verb, what)
	}
	return nil
}

// bind declares the flags of a's verb on fs.
func (a *clientArgs) bind(fs *flag.FlagSet) {
	for _, name := range clientVerbFlags[a.verb] {
		switch name {
		case "object-class":
			fs.StringVar(&a.objectClass, name, a.objectClass, "object class of the account")
		case "assigned":
			fs.BoolVar(&a.assigned, name, false, "the account comes from an assignment")
		case "request-id":
			fs.StringVar(&a.requestID, name, "", "idempotency key: a re-send with the same key gets the first reply")
		case "force":
			fs.BoolVar(&a.force, name, false, "retry even if the retry period has not passed")
		case "result":
			fs.StringVar(&a.result, name, a.result, "result status: success, partial_error, fatal_error, ...")
		case "message":
			fs.StringVar(&a.message, name, "", "message recorded with the result")
		case "as-of":
			fs.StringVar(&a.asOf, name, "", "show the shadow as it was at this time (RFC 3339, a date, or a duration ago such as 90m)")
		case "resource":
			fs.StringVar(&a.resource, name, "", "only this resource")
		case "json":
			fs.BoolVar(&a.json, name, false, "print JSON instead of a table")
		case "reason":
			fs.StringVar(&a.reason, name, "", "why (recorded with the change)")
		case "id":
			fs.Var(&a.ids, name, "address the shadow by identifier attr=value instead of its id")
		case "primary":
			fs.Var(&a.primary, name, "primary identifier attr=value set by the target system")
		}
	}
}

// clientRequest builds one verb's request: its subject below the prefix and its typed body.
type clientRequest func(a *clientArgs) (subject string, body any, err error)

// clientRequests has one builder per client verb (clientVerbFlags lists their flags).
var clientRequests = map[string]clientRequest{
	"add": addRequest, "modify": modifyRequest, "delete": deleteRequest, "refresh": refreshRequest,
	"confirm": confirmRequest, "cancel": cancelRequest, "maintenance": maintenanceRequest,
	"resource": resourceQuery, "get": shadowQuery, "pending": pendingQuery, "explain": explainQuery, "history": historyQuery,
}

func runClient(ctx context.Context, verb string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, verb, stdout, stderr)
	a := &clientArgs{verb: verb, objectClass: "AccountObjectClass", result: "success"}
	a.bind(fs)
	cf := clientFlags(fs, getenv)
	var err error
	if a.pos, err = parseInterleaved(fs, args); err != nil {
		return err
	}
	subject, body, err := clientRequests[verb](a)
	if err != nil {
		return err
	}
	nc, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ask := func(body any) ([]byte, error) {
		var raw json.RawMessage
		err := request(ctx, nc, *cf.timeout, *cf.prefix+"."+subject, body, &raw)
		return raw, err
	}
	if verb == "pending" {
		return listPending(ask, body.(api.PendingQuery), a.json, stdout)
	}
	data, err := ask(body)
	if err != nil {
		return err
	}
	switch {
	case verb == "history":
		return printHistory(data, a.json, stdout)
	case verb == "explain" && !a.json:
		return printExplanation(data, stdout)
	}
	var pretty any
	if err := json.Unmarshal(data, &pretty); err != nil {
		return fmt.Errorf("reply is not JSON: %w", err)
	}
	out, _ := json.MarshalIndent(pretty, "", "  ")
	fmt.Fprintln(stdout, string(out))
	return nil
}

func addRequest(a *clientArgs) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	attrs, err := assignments(a.pos[1:])
	if err != nil {
		return "", nil, err
	}
	return "cmd." + a.pos[0] + ".add", api.AddBody{RequestID: a.requestID, ObjectClass: a.objectClass,
		Attributes: api.AttributeMap{Values: attrs}, Assigned: a.assigned}, nil
}

// target names the shadow a modify or delete addresses: by --id identifiers, or by the
// positional SHADOW (taken out of a.pos, so that what follows it starts at a.pos[1]).
func (a *clientArgs) target() (shadowID string, ids map[string][]any, err error) {
	if len(a.ids) > 0 {
		ids, err = assignments(a.ids)
		return "", ids, err
	}
	if err := a.need(2, "SHADOW (or --id attr=value)"); err != nil {
		return "", nil, err
	}
	shadowID = a.pos[1]
	a.pos = append(a.pos[:1], a.pos[2:]...)
	return shadowID, nil, nil
}

func modifyRequest(a *clientArgs) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	shadowID, ids, err := a.target()
	if err != nil {
		return "", nil, err
	}
	changes := map[string]api.ChangeBody{}
	for _, arg := range a.pos[1:] {
		name, op, v, err := parseAssign(arg)
		if err != nil {
			return "", nil, err
		}
		c := changes[name]
		switch op {
		case "=":
			c.Replace = ptr(append(deref(c.Replace), v))
		case "+=":
			c.Add = append(c.Add, v)
		case "-=":
			c.Delete = append(c.Delete, v)
		}
		changes[name] = c
	}
	return "cmd." + a.pos[0] + ".modify", api.ModifyBody{RequestID: a.requestID, ShadowID: shadowID, Identifiers: ids,
		Changes: api.ChangeMap{Values: changes}}, nil
}

func ptr[T any](v T) *T { return &v }

func deref(p *[]any) []any {
	if p == nil {
		return nil
	}
	return *p
}

func deleteRequest(a *clientArgs) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	shadowID, ids, err := a.target()
	if err != nil {
		return "", nil, err
	}
	return "cmd." + a.pos[0] + ".delete", api.DeleteBody{RequestID: a.requestID, ShadowID: shadowID, Identifiers: ids}, nil
}

func refreshRequest(a *clientArgs) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	b := api.RefreshBody{ForceRetry: a.force}
	if len(a.pos) > 1 {
		b.ShadowID = a.pos[1]
	}
	return "cmd." + a.pos[0] + ".refresh", b, nil
}

func confirmRequest(a *clientArgs) (string, any, error) {
	if err := a.need(2, "RESOURCE OPERATION"); err != nil {
		return "", nil, err
	}
	b := api.ConfirmBody{OperationID: a.pos[1], ResultStatus: a.result, Message: a.message}
	if len(a.primary) > 0 {
		m, err := assignments(a.primary)
		if err != nil {
			return "", nil, err
		}
		b.PrimaryIdentifiers = m
	}
	return "cmd." + a.pos[0] + ".confirm", b, nil
}

func cancelRequest(a *clientArgs) (string, any, error) {
	if err := a.need(2, "RESOURCE OPERATION"); err != nil {
		return "", nil, err
	}
	return "cmd." + a.pos[0] + ".cancel", api.CancelBody{OperationID: a.pos[1]}, nil
}

func maintenanceRequest(a *clientArgs) (string, any, error) {
	if err := a.need(2, "RESOURCE on|off"); err != nil {
		return "", nil, err
	}
	on, ok := map[string]bool{"on": true, "off": false}[a.pos[1]]
	if !ok {
		return "", nil, fmt.Errorf("maintenance: %q: want on or off", a.pos[1])
	}
	return "cmd." + a.pos[0] + ".maintenance", api.MaintenanceBody{Maintenance: &on, Reason: a.reason}, nil
}

func resourceQuery(a *clientArgs) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	return "query.resource", api.ResourceQuery{Resource: a.pos[0]}, nil
}

func shadowQuery(a *clientArgs) (string, any, error) {
	if err := a.need(1, "SHADOW"); err != nil {
		return "", nil, err
	}
	q := api.ShadowQuery{ShadowID: a.pos[0]}
	at, err := parseTime(a.asOf, time.Now()) // the forms --since takes
	if err != nil {
		return "", nil, fmt.Errorf("get: --as-of %w", err)
	}
	if !at.IsZero() {
		q.AsOf = at.Format(time.RFC3339Nano)
	}
	return "query.shadow", q, nil
}

func pendingQuery(a *clientArgs) (string, any, error) {
	return "query.pending", api.PendingQuery{Resource: a.resource}, nil
}

func explainQuery(a *clientArgs) (string, any, error) {
	if err := a.need(1, "SHADOW"); err != nil {
		return "", nil, err
	}
	return "query.explain", api.HistoryQuery{ShadowID: a.pos[0]}, nil
}

func historyQuery(a *clientArgs) (string, any, error) {
	if err := a.need(1, "SHADOW"); err != nil {
		return "", nil, err
	}
	return "query.history", api.HistoryQuery{ShadowID: a.pos[0]}, nil
}

// listPending asks for every page of the pending shadows (the service answers a page at a
// time) and prints them all.
func listPending(ask func(any) ([]byte, error), q api.PendingQuery, asJSON bool, stdout io.Writer) error {
	var all []json.RawMessage
	next := map[string]time.Time{}
	for {
		data, err := ask(q)
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
		q.After, q.Limit = page.Next, 1000
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

// printPending prints one line per shadow with unfinished operations: what a person scans
// first (the shadow, its login, what is pending, in which state, when it is tried next).
func printPending(shadows []json.RawMessage, next map[string]time.Time, now time.Time, stdout io.Writer) error {
	if len(shadows) == 0 {
		fmt.Fprintln(stdout, "no shadow has unfinished operations")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHADOW\tRESOURCE\tLOGIN\tLIFECYCLE\tOPERATIONS\tSTATUS\tAGE\tNEXT ATTEMPT\tLAST ERROR")
	for _, raw := range shadows {
		var sd domain.ShadowData
		if err := json.Unmarshal(raw, &sd); err != nil {
			return fmt.Errorf("reply: %w", err)
		}
		var ops, status []string
		var oldest, errAt time.Time
		lastErr := "-"
		for _, p := range sd.PendingOperations {
			if p.Completed() {
				continue
			}
			if oldest.IsZero() || p.RequestTimestamp.Before(oldest) {
				oldest = p.RequestTimestamp
			}
			if p.LastError != nil && !p.LastAttemptTimestamp.Before(errAt) {
				errAt, lastErr = p.LastAttemptTimestamp, shorten(string(p.LastError.Category)+": "+p.LastError.Message, 48)
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
		age := "-"
		if !oldest.IsZero() {
			age = now.Sub(oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sd.ShadowID, sd.Resource, loginOf(sd), sd.LifecycleState,
			strings.Join(ops, ","), strings.Join(status, ", "), age, when, lastErr)
	}
	return tw.Flush()
}

// shorten cuts s to n runes, marking the cut.
func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
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
