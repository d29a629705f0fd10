// Package cli is the client side of shadowbridge's command line: each client verb's request
// (its flags, arguments and typed body), the tables and texts the verbs print, and the audit's
// filters and output. The binary (cmd/shadowbridge) composes them with its connections.
package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/domain"
	"shadowbridge/projections"
)

// MultiFlag collects repeated flags.
type MultiFlag []string

// String joins the values (flag.Value).
func (m *MultiFlag) String() string { return strings.Join(*m, ",") }

// Set adds a value (flag.Value).
func (m *MultiFlag) Set(v string) error { *m = append(*m, v); return nil }

// ParseAssign reads attr=value (a string) or attr:=<json> (a number, boolean or string in JSON).
func ParseAssign(arg string) (name, op string, value any, err error) {
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

// VerbFlags lists the flags each client verb takes beside the connection flags.
var VerbFlags = map[string][]string{
	"add":         {"object-class", "assigned", "request-id"},
	"modify":      {"id", "request-id"},
	"delete":      {"id", "request-id"},
	"refresh":     {"force"},
	"confirm":     {"result", "message", "primary"},
	"cancel":      {},
	"maintenance": {"reason"},
	"resource":    {},
	"get":         {"as-of"},
	"pending":     {"resource"},
	"history":     {},
	"explain":     {},
}

// Args is what a client verb's flags and positional arguments hold once parsed.
type Args struct {
	Verb                string   // the client verb
	Pos                 []string // positional arguments
	ids, primary        MultiFlag
	objectClass, result string
	requestID, message  string
	asOf, resource      string
	reason              string
	assigned, force     bool
	// Output is how the reply is printed (--output, -o, --json; every verb takes it).
	Output *Output
}

// NewArgs returns the arguments of verb with their defaults (object class AccountObjectClass,
// result success).
func NewArgs(verb string) *Args {
	return &Args{Verb: verb, objectClass: "AccountObjectClass", result: "success"}
}

// need checks that at least n positional arguments were given.
func (a *Args) need(n int, what string) error {
	if len(a.Pos) < n {
		return fmt.Errorf("%s: missing %s", a.Verb, what)
	}
	return nil
}

// Bind declares the flags of a's verb on fs, --output among them.
func (a *Args) Bind(fs *flag.FlagSet) {
	a.Output = OutputFlags(fs)
	for _, name := range VerbFlags[a.Verb] {
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
		case "reason":
			fs.StringVar(&a.reason, name, "", "why (recorded with the change)")
		case "id":
			fs.Var(&a.ids, name, "address the shadow by identifier attr=value instead of its id")
		case "primary":
			fs.Var(&a.primary, name, "primary identifier attr=value set by the target system")
		}
	}
}

// Builder builds one verb's request: its subject below the prefix and its typed body.
type Builder func(a *Args) (subject string, body any, err error)

// Builders has one builder per client verb (VerbFlags lists their flags).
var Builders = map[string]Builder{
	"add": addRequest, "modify": modifyRequest, "delete": deleteRequest, "refresh": refreshRequest,
	"confirm": confirmRequest, "cancel": cancelRequest, "maintenance": maintenanceRequest,
	"resource": resourceQuery, "get": shadowQuery, "pending": pendingQuery, "explain": explainQuery, "history": historyQuery,
}

func addRequest(a *Args) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	attrs, err := Assignments(a.Pos[1:])
	if err != nil {
		return "", nil, err
	}
	return "cmd." + a.Pos[0] + ".add", api.AddBody{RequestID: a.requestID, ObjectClass: a.objectClass,
		Attributes: api.AttributeMap{Values: attrs}, Assigned: a.assigned}, nil
}

// target names the shadow a modify or delete addresses: by --id identifiers, or by the
// positional SHADOW (taken out of a.Pos, so that what follows it starts at a.Pos[1]).
func (a *Args) target() (shadowID string, ids map[string][]any, err error) {
	if len(a.ids) > 0 {
		ids, err = Assignments(a.ids)
		return "", ids, err
	}
	if err := a.need(2, "SHADOW (or --id attr=value)"); err != nil {
		return "", nil, err
	}
	shadowID = a.Pos[1]
	a.Pos = append(a.Pos[:1], a.Pos[2:]...)
	return shadowID, nil, nil
}

func modifyRequest(a *Args) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	shadowID, ids, err := a.target()
	if err != nil {
		return "", nil, err
	}
	changes := map[string]api.ChangeBody{}
	for _, arg := range a.Pos[1:] {
		name, op, v, err := ParseAssign(arg)
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
	return "cmd." + a.Pos[0] + ".modify", api.ModifyBody{RequestID: a.requestID, ShadowID: shadowID, Identifiers: ids,
		Changes: api.ChangeMap{Values: changes}}, nil
}

func ptr[T any](v T) *T { return &v }

func deref(p *[]any) []any {
	if p == nil {
		return nil
	}
	return *p
}

func deleteRequest(a *Args) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	shadowID, ids, err := a.target()
	if err != nil {
		return "", nil, err
	}
	return "cmd." + a.Pos[0] + ".delete", api.DeleteBody{RequestID: a.requestID, ShadowID: shadowID, Identifiers: ids}, nil
}

func refreshRequest(a *Args) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	b := api.RefreshBody{ForceRetry: a.force}
	if len(a.Pos) > 1 {
		b.ShadowID = a.Pos[1]
	}
	return "cmd." + a.Pos[0] + ".refresh", b, nil
}

func confirmRequest(a *Args) (string, any, error) {
	if err := a.need(2, "RESOURCE OPERATION"); err != nil {
		return "", nil, err
	}
	b := api.ConfirmBody{OperationID: a.Pos[1], ResultStatus: a.result, Message: a.message}
	if len(a.primary) > 0 {
		m, err := Assignments(a.primary)
		if err != nil {
			return "", nil, err
		}
		b.PrimaryIdentifiers = m
	}
	return "cmd." + a.Pos[0] + ".confirm", b, nil
}

func cancelRequest(a *Args) (string, any, error) {
	if err := a.need(2, "RESOURCE OPERATION"); err != nil {
		return "", nil, err
	}
	return "cmd." + a.Pos[0] + ".cancel", api.CancelBody{OperationID: a.Pos[1]}, nil
}

func maintenanceRequest(a *Args) (string, any, error) {
	if err := a.need(2, "RESOURCE on|off"); err != nil {
		return "", nil, err
	}
	on, ok := map[string]bool{"on": true, "off": false}[a.Pos[1]]
	if !ok {
		return "", nil, fmt.Errorf("maintenance: %q: want on or off", a.Pos[1])
	}
	return "cmd." + a.Pos[0] + ".maintenance", api.MaintenanceBody{Maintenance: &on, Reason: a.reason}, nil
}

func resourceQuery(a *Args) (string, any, error) {
	if err := a.need(1, "RESOURCE"); err != nil {
		return "", nil, err
	}
	return "query.resource", api.ResourceQuery{Resource: a.Pos[0]}, nil
}

func shadowQuery(a *Args) (string, any, error) {
	if err := a.need(1, "SHADOW"); err != nil {
		return "", nil, err
	}
	q := api.ShadowQuery{ShadowID: a.Pos[0]}
	at, err := ParseTime(a.asOf, time.Now()) // the forms --since takes
	if err != nil {
		return "", nil, fmt.Errorf("get: --as-of %w", err)
	}
	if !at.IsZero() {
		q.AsOf = at.Format(time.RFC3339Nano)
	}
	return "query.shadow", q, nil
}

func pendingQuery(a *Args) (string, any, error) {
	return "query.pending", api.PendingQuery{Resource: a.resource}, nil
}

func explainQuery(a *Args) (string, any, error) {
	if err := a.need(1, "SHADOW"); err != nil {
		return "", nil, err
	}
	return "query.explain", api.HistoryQuery{ShadowID: a.Pos[0]}, nil
}

func historyQuery(a *Args) (string, any, error) {
	if err := a.need(1, "SHADOW"); err != nil {
		return "", nil, err
	}
	return "query.history", api.HistoryQuery{ShadowID: a.Pos[0]}, nil
}

// ListPending asks for every page of the pending shadows (the service answers a page at a
// time) and prints them all.
func ListPending(ask func(any) ([]byte, error), q api.PendingQuery, out Output, stdout io.Writer) error {
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
	if out == JSON {
		return PrintJSON(stdout, map[string]any{"shadows": all, "nextAttempts": next})
	}
	return PrintPending(all, next, time.Now(), stdout)
}

// PrintPending prints one line per shadow with unfinished operations: what a person scans
// first (the shadow, its login, what is pending, in which state, when it is tried next).
func PrintPending(shadows []json.RawMessage, next map[string]time.Time, now time.Time, stdout io.Writer) error {
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
		row := projections.NewPendingRow(sd, func(sd domain.ShadowData) (time.Time, bool) { at, ok := next[sd.ShadowID]; return at, ok })
		var ops, status []string
		for _, p := range row.PendingOperations {
			ops = append(ops, string(p.Delta.ChangeType))
			st := string(p.ExecutionStatus)
			if p.Type == domain.TypeRetry {
				st += fmt.Sprintf(" (retry, %d attempts)", p.AttemptNumber)
			}
			status = append(status, st)
		}
		when := "-"
		if at := row.NextAttempt; !at.IsZero() {
			when = at.Local().Format(time.DateTime)
			if d := at.Sub(now).Round(time.Second); d > 0 {
				when += " (in " + d.String() + ")"
			} else {
				when += " (due)"
			}
		}
		age, lastErr := "-", "-"
		if !row.Since.IsZero() {
			age = now.Sub(row.Since).Round(time.Second).String()
		}
		if row.LastError != "" {
			lastErr = shorten(row.LastError, 48)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sd.ShadowID, sd.Resource, loginOf(sd), sd.LifecycleState,
			strings.Join(ops, ","), strings.Join(status, ", "), age, when, lastErr)
	}
	return tw.Flush()
}

// ExactTime is how the audit and history tables write a time: local, to the nanosecond, with
// its offset (fixed width, so that columns line up and rows sort by text within one zone).
const ExactTime = "2006-01-02T15:04:05.000000000Z07:00"

// rfc3339 finds the times a server's sentence carries (RFC 3339, as the domain writes them).
var rfc3339 = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})`)

// LocalTimes rewrites the RFC 3339 times in a server's sentence (UTC) as local times.
func LocalTimes(s string) string {
	return rfc3339.ReplaceAllStringFunc(s, func(t string) string {
		at, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return t
		}
		return at.Local().Format(time.RFC3339)
	})
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

// Assignments reads attr=value arguments (attr:=<json> too) into attribute values.
func Assignments(args []string) (map[string][]any, error) {
	m := map[string][]any{}
	for _, a := range args {
		name, op, v, err := ParseAssign(a)
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

// PrintHistory prints a history reply as a table (or JSON lines).
func PrintHistory(data []byte, out Output, stdout io.Writer) error {
	var h struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return err
	}
	if out == JSON {
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

// PrintExplanation prints an explain reply as text: why, then what happens next.
func PrintExplanation(data []byte, stdout io.Writer) error {
	var x domain.Explanation
	if err := json.Unmarshal(data, &x); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "shadow %s is %s\n", x.ShadowID, x.LifecycleState)
	for _, w := range x.Why {
		fmt.Fprintf(stdout, "  because %s\n", LocalTimes(w))
	}
	if len(x.Next) == 0 {
		fmt.Fprintln(stdout, "nothing is due")
		return nil
	}
	fmt.Fprintln(stdout, "next:")
	for _, n := range x.Next {
		at := "waiting"
		if !n.At.IsZero() {
			at = n.At.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "  %-25s %s\n", at, LocalTimes(n.What))
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
