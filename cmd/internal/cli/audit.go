package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/projections"
)

// AuditFilter selects history events; empty fields select everything.
type AuditFilter struct {
	ObjectClass, Operation, Result, RequestID, ShadowID string
}

func (f AuditFilter) match(h service.HistoryEvent) bool {
	return (f.ObjectClass == "" || h.ObjectClass == f.ObjectClass) &&
		(f.Operation == "" || h.Operation == f.Operation) &&
		(f.Result == "" || h.Outcome == f.Result || strings.HasPrefix(h.Outcome, f.Result+":")) &&
		(f.RequestID == "" || h.RequestID == f.RequestID) &&
		(f.ShadowID == "" || h.ShadowID == f.ShadowID)
}

// ParseTime reads an RFC 3339 time, a date (UTC midnight), or a duration meaning that long ago.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time, a date (2006-01-02) or a duration ago (90m)", s)
}

// StreamEvents is the audit loop (projections.Audit), shared by audit and its benchmark: the
// filter, the output format and the progress line are the CLI's.
func StreamEvents(ctx context.Context, store *eventstore.Store, o eventstore.ScanOptions, f AuditFilter, asJSON, progress bool, w io.Writer, stderr io.Writer) error {
	if !asJSON {
		fmt.Fprintln(w, auditHeader)
	}
	format := func(b *bytes.Buffer, h service.HistoryEvent) error {
		_, err := b.WriteString(tableRow(h))
		return err
	}
	var shown time.Time
	show := func(p projections.AuditProgress) {
		if time.Since(shown) < 200*time.Millisecond {
			return
		}
		shown = time.Now()
		rate := float64(p.Records) / p.Elapsed.Seconds()
		eta := time.Duration(float64(p.Last-min(p.Seq, p.Last)) / max(rate, 1) * float64(time.Second))
		fmt.Fprintf(stderr, "\raudit: record %d of %d (%.0f%%), %d events shown, %.0f records/s, ETA %s   ",
			p.Seq, p.Last, 100*float64(p.Seq)/float64(max(p.Last, 1)), p.Shown, rate, eta.Round(time.Second))
	}
	if !progress {
		show = nil
	}
	var p projections.AuditProgress
	var err error
	if asJSON {
		p, err = projections.AuditJSON(ctx, store, o, f.match, w, show)
	} else {
		p, err = projections.Audit(ctx, store, o, f.match, format, w, show)
	}
	if progress {
		fmt.Fprintf(stderr, "\raudit: %d records read, %d events shown in %s%s\n", p.Records, p.Shown,
			p.Elapsed.Round(time.Millisecond), strings.Repeat(" ", 30))
	}
	if n := len(p.Skipped); n > 0 {
		fmt.Fprintf(stderr, "audit: %d record(s) skipped: they cannot be decoded (not written by shadowbridge; `shadowbridge verify` lists them): sequence %v\n",
			n, p.Skipped[:min(n, 20)])
	}
	return err
}

// tableHeader heads history's table (one shadow); auditHeader audit's, which names the shadow
// of each event.
const (
	tableHeader = "TIME                                SEQ       EVENT                 OPERATION                             OP      ATT  REQUEST           OUTCOME"
	auditHeader = "TIME                                SEQ       RESOURCE     SHADOW                                EVENT                 OPERATION                             OP      ATT  REQUEST           OUTCOME"
)

// row is one line of the audit and history tables.
type row struct {
	Time        time.Time `json:"time"`
	Seq         uint64    `json:"seq"`
	Type        string    `json:"type"`
	OperationID string    `json:"operationId"`
	Operation   string    `json:"operation"`
	RequestID   string    `json:"requestId"`
	Outcome     string    `json:"outcome"`
	Attempt     int       `json:"attempt"`
	shadow      string    // audit's resource and shadow columns, formatted
}

// tableRow formats one event with fixed widths (no buffering of the whole table: constant memory).
func tableRow(h service.HistoryEvent) string {
	prefix := fmt.Sprintf("%-12s %-37s ", h.Resource, h.ShadowID)
	return formatRow(row{Time: h.Time, Seq: h.Seq, Type: h.Type, OperationID: h.OperationID, Operation: h.Operation,
		RequestID: h.RequestID, Outcome: outcomeDetail(h), Attempt: h.Attempt, shadow: prefix})
}

func formatRow(r row) string {
	req := r.RequestID
	if len(req) > 16 {
		req = req[:15] + "…"
	}
	att := ""
	if r.Attempt > 0 {
		att = fmt.Sprint(r.Attempt)
	}
	return fmt.Sprintf("%-35s %-9d %s%-21s %-37s %-7s %-4s %-17s %s\n", r.Time.Local().Format(ExactTime), r.Seq, r.shadow, r.Type,
		dash(r.OperationID), dash(r.Operation), att, dash(req), r.Outcome)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// outcomeDetail adds what an auditor wants next to the outcome: the message or error.
func outcomeDetail(h service.HistoryEvent) string {
	out := h.Outcome
	switch x := h.Event.(type) {
	case domain.OperationCompleted:
		if x.Message != "" {
			out += " (" + x.Message + ")"
		}
	case domain.AttemptFailed:
		out += " (" + x.Error.Message + ")"
	case domain.AddRequested:
		out = "shadow " + h.ShadowID
	case domain.TimerSet:
		out = "due " + x.At.Local().Format(ExactTime)
	}
	return out
}

// IsTerminal reports whether w is a terminal (progress is shown only there by default).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// AuditResults are the outcomes --result filters on: an operation's final result, or what
// happened to an attempt.
var AuditResults = []string{"success", "warning", "partial_error", "fatal_error", "handled_error", "not_applicable",

	"released", "sent", "failed", "postponed"}
