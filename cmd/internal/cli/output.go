package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/domain"
	"shadowbridge/projections"
)

// Output is how a verb prints its result: a table for people (the default) or JSON for
// programs. Every verb that prints a result takes it as --output (-o); --json is the same as
// --output json.
type Output string

const (
	Table Output = "table"
	JSON  Output = "json"
)

// String implements flag.Value.
func (o *Output) String() string { return string(*o) }

// Set implements flag.Value: table or json, a misspelling answered with the closest.
func (o *Output) Set(s string) error {
	switch Output(s) {
	case Table, JSON:
		*o = Output(s)
		return nil
	}
	if m := api.Suggest(s, []string{string(Table), string(JSON)}); m != "" {
		return fmt.Errorf("want table or json (did you mean %s?)", m)
	}
	return fmt.Errorf("want table or json")
}

// jsonAlias is --json: a boolean flag that sets the output to JSON.
type jsonAlias struct{ o *Output }

func (j jsonAlias) String() string {
	if j.o != nil && *j.o == JSON {
		return "true"
	}
	return "false"
}
func (j jsonAlias) IsBoolFlag() bool { return true }
func (j jsonAlias) Set(s string) error {
	switch s {
	case "true":
		*j.o = JSON
	case "false":
		*j.o = Table
	default:
		return fmt.Errorf("want true or false")
	}
	return nil
}

// OutputFlags declares --output, -o and --json on fs, the output a table unless asked.
func OutputFlags(fs *flag.FlagSet) *Output {
	o := Table
	fs.Var(&o, "output", "how to print the result: table (for people) or json (for programs)")
	fs.Var(&o, "o", "short for --output")
	fs.Var(jsonAlias{&o}, "json", "the same as --output json")
	return &o
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

// printers are the table forms of the client verbs' replies (pending, history and explain have
// their own: they ask for more than one reply or read it differently).
var printers = map[string]func(data []byte, w io.Writer) error{
	"add": printOperation, "modify": printOperation, "delete": printOperation, "confirm": printOperation, "cancel": printOperation,
	"refresh": printRefreshed, "maintenance": printResource, "resource": printResource, "get": printShadow,
}

// PrintReply prints a client verb's reply: as indented JSON, or as the verb's table.
func PrintReply(verb string, data []byte, out Output, w io.Writer) error {
	p, ok := printers[verb]
	if out == JSON || !ok {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("reply is not JSON: %w", err)
		}
		return PrintJSON(w, v)
	}
	return p(data, w)
}

func printOperation(data []byte, w io.Writer) error {
	var r struct {
		ShadowID        string `json:"shadowId"`
		OperationID     string `json:"operationId"`
		ExecutionStatus string `json:"executionStatus"`
		ResultStatus    string `json:"resultStatus"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHADOW\tOPERATION\tEXECUTION\tRESULT")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ShadowID, r.OperationID, r.ExecutionStatus, r.ResultStatus)
	return tw.Flush()
}

func printRefreshed(data []byte, w io.Writer) error {
	var r struct {
		Refreshed int `json:"refreshed"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	noun := "shadows"
	if r.Refreshed == 1 {
		noun = "shadow"
	}
	_, err := fmt.Fprintf(w, "refreshed %d %s\n", r.Refreshed, noun)
	return err
}

// localTime writes a time for a table: local, to the second, with its offset; "-" for none.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func printResource(data []byte, w io.Writer) error {
	var r domain.ResourceData
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "resource\t%s\n", r.Resource)
	fmt.Fprintf(tw, "availability\t%s\n", r.Availability)
	fmt.Fprintf(tw, "administrative status\t%s\n", r.AdministrativeAvailabilityStatus)
	if run := r.Reconciliation; run != nil {
		fmt.Fprintf(tw, "last reconciliation\t%s %s (started %s, ended %s, %d page(s), %d account(s))\n", run.ID, run.State,
			localTime(run.StartedAt), localTime(run.FinishedAt), run.Pages, run.Counts.Accounts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	type change struct {
		at        time.Time
		what, why string
	}
	var changes []change
	for _, c := range r.Changes {
		changes = append(changes, change{c.Time, string(c.Status), c.Reason})
	}
	for _, c := range r.AdministrativeChanges {
		changes = append(changes, change{c.Time, string(c.Status), c.Reason})
	}
	if len(changes) == 0 {
		return nil
	}
	slices.SortStableFunc(changes, func(a, b change) int { return a.at.Compare(b.at) })
	fmt.Fprintln(w, "\nrecent changes:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTATUS\tREASON")
	for _, c := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", localTime(c.at), c.what, dash(c.why))
	}
	return tw.Flush()
}

func printShadow(data []byte, w io.Writer) error {
	var s domain.ShadowData
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "shadow\t%s\n", s.ShadowID)
	fmt.Fprintf(tw, "resource\t%s (%s)\n", s.Resource, s.ObjectClass)
	fmt.Fprintf(tw, "lifecycle\t%s (exists %t, dead %t)\n", s.LifecycleState, s.Exists, s.Dead)
	fmt.Fprintf(tw, "primary identifiers\t%s\n", dash(attrLine(s.PrimaryIdentifiers)))
	fmt.Fprintf(tw, "secondary identifiers\t%s\n", dash(attrLine(s.SecondaryIdentifiers)))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nattributes:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVALUES")
	for _, n := range slices.Sorted(maps.Keys(s.Attributes)) {
		fmt.Fprintf(tw, "%s\t%s\n", n, projections.Values(s.Attributes[n]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.PendingOperations) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\noperations:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OPERATION\tTYPE\tCHANGE\tEXECUTION\tRESULT\tATTEMPTS\tREQUESTED\tLAST ERROR")
	for _, p := range s.PendingOperations {
		lastErr := "-"
		if p.LastError != nil {
			lastErr = shorten(p.LastError.String(), 48)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.Type, p.Delta.ChangeType, p.ExecutionStatus, p.ResultStatus,
			p.AttemptNumber, localTime(p.RequestTimestamp), lastErr)
	}
	return tw.Flush()
}

// attrLine writes attributes as name=value|value, names sorted.
func attrLine(a domain.Attributes) string {
	parts := make([]string, 0, len(a))
	for _, n := range slices.Sorted(maps.Keys(a)) {
		parts = append(parts, n+"="+projections.Values(a[n]))
	}
	return strings.Join(parts, " ")
}

// PrintRun prints a reconciliation run: its state, times and what it found.
func PrintRun(w io.Writer, run *domain.ReconciliationRun) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "reconciliation\t%s\n", run.ID)
	state := run.State
	if run.Reason != "" {
		state += " (" + run.Reason + ")"
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "started\t%s\n", localTime(run.StartedAt))
	fmt.Fprintf(tw, "ended\t%s\n", localTime(run.FinishedAt))
	fmt.Fprintf(tw, "pages\t%d\n", run.Pages)
	c := run.Counts
	for _, kv := range []struct {
		name string
		n    int
	}{{"accounts listed", c.Accounts}, {"unchanged", c.Unchanged}, {"changed on the target", c.Changed}, {"discovered", c.Discovered},
		{"gone", c.Gone}, {"re-created", c.Recreated}, {"skipped (in flight)", c.Skipped}} {
		fmt.Fprintf(tw, "%s\t%d\n", kv.name, kv.n)
	}
	return tw.Flush()
}
