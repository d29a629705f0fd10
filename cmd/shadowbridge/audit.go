package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/cli"
	"shadowbridge/eventstore"
)

// runAudit streams the event log through the filters as a table or JSON lines. Memory stays
// constant (one record at a time); on a terminal, stderr shows progress.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "audit", stdout, stderr)
	cf := clientFlags(fs, getenv)
	var f cli.AuditFilter
	resource := fs.String("resource", "", "only this resource")
	fs.StringVar(&f.ObjectClass, "object-class", "", "only this object class")
	fs.StringVar(&f.Operation, "operation", "", "only events of add, modify or delete operations")
	fs.StringVar(&f.Result, "result", "", "only events with this outcome: "+strings.Join(cli.AuditResults, ", "))
	fs.StringVar(&f.RequestID, "request-id", "", "only events of the operation with this requestId")
	since := fs.String("since", "", "from this time (RFC 3339, date, or duration ago such as 24h)")
	until := fs.String("until", "", "before this time (same forms)")
	out := cli.OutputFlags(fs) // json: one JSON line per event
	progress := fs.Bool("progress", cli.IsTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("audit: unexpected argument %q (filters are flags)", pos[0])
	}
	switch f.Operation {
	case "", "add", "modify", "delete":
	default:
		return fmt.Errorf("audit: --operation %q: want add, modify or delete", f.Operation)
	}
	if f.Result != "" && !slices.Contains(cli.AuditResults, f.Result) {
		hint := ""
		if s := api.Suggest(f.Result, cli.AuditResults); s != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", s)
		}
		return fmt.Errorf("audit: --result %q: want one of %s%s", f.Result, strings.Join(cli.AuditResults, ", "), hint)
	}
	now := time.Now()
	o := eventstore.ScanOptions{Resource: *resource}
	if o.Since, err = cli.ParseTime(*since, now); err != nil {
		return fmt.Errorf("audit: --since %w", err)
	}
	if o.Until, err = cli.ParseTime(*until, now); err != nil {
		return fmt.Errorf("audit: --until %w", err)
	}
	store, closeConn, err := cf.attach(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	if getenv("GOGC") == "" {
		// An audit holds a few batches whatever the log's length, a heap of a few MB, so the
		// collector's default target (twice the live heap) had it collecting all the time:
		// a fifth of the CLI's CPU. A target four times the live heap still keeps its memory
		// independent of the log's length (BenchmarkAudit measures both).
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	return cli.StreamEvents(ctx, store, o, f, *out == cli.JSON, *progress, w, stderr)
}
