package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// auditFilter selects history events; empty fields select everything.
type auditFilter struct {
	objectClass, operation, result, requestID, shadowID string
}

func (f auditFilter) match(h service.HistoryEvent) bool {
	return (f.objectClass == "" || h.ObjectClass == f.objectClass) &&
		(f.operation == "" || h.Operation == f.operation) &&
		(f.result == "" || h.Outcome == f.result || strings.HasPrefix(h.Outcome, f.result+":")) &&
		(f.requestID == "" || h.RequestID == f.requestID) &&
		(f.shadowID == "" || h.ShadowID == f.shadowID)
}

// parseTime reads an RFC 3339 time, a date (UTC midnight), or a duration meaning that long ago.
func parseTime(s string, now time.Time) (time.Time, error) {
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

// runAudit streams the event log through the filters as a table or JSON lines. Memory stays
// constant (one record at a time); on a terminal, stderr shows progress.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "audit", stdout, stderr)
	cf := clientFlags(fs, getenv)
	var f auditFilter
	resource := fs.String("resource", "", "only this resource")
	fs.StringVar(&f.objectClass, "object-class", "", "only this object class")
	fs.StringVar(&f.operation, "operation", "", "only events of add, modify or delete operations")
	fs.StringVar(&f.result, "result", "", "only events with this outcome (success, fatal_error, ..., sent, failed, postponed)")
	fs.StringVar(&f.requestID, "request-id", "", "only events of the operation with this requestId")
	since := fs.String("since", "", "from this time (RFC 3339, date, or duration ago such as 24h)")
	until := fs.String("until", "", "before this time (same forms)")
	asJSON := fs.Bool("json", false, "JSON lines instead of a table")
	progress := fs.Bool("progress", isTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("audit: unexpected argument %q (filters are flags)", pos[0])
	}
	switch f.operation {
	case "", "add", "modify", "delete":
	default:
		return fmt.Errorf("audit: --operation %q: want add, modify or delete", f.operation)
	}
	now := time.Now()
	o := eventstore.ScanOptions{Resource: *resource}
	if o.Since, err = parseTime(*since, now); err != nil {
		return fmt.Errorf("audit: --since %w", err)
	}
	if o.Until, err = parseTime(*until, now); err != nil {
		return fmt.Errorf("audit: --until %w", err)
	}
	store, closeConn, err := cf.attach(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	return streamEvents(ctx, store, o, f, *asJSON, *progress, w, stderr)
}

// streamEvents is the audit loop, shared by audit and its benchmark. Records are read in log
// order on one goroutine and formatted in batches on every core, and the batches are written in
// log order: decoding and formatting, not reading, bound an audit, and a single goroutine left
// the second core to the NATS server alone. Memory stays bounded by the batches in flight.
func streamEvents(ctx context.Context, store *eventstore.Store, o eventstore.ScanOptions, f auditFilter, asJSON, progress bool, w io.Writer, stderr io.Writer) error {
	last, err := store.LastSeq(ctx)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintln(w, auditHeader)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *auditBatch, workers)
	order := make(chan *auditBatch, 2*workers) // formatted or being formatted, in log order
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for b := range work {
				b.format(f, asJSON)
				close(b.done)
			}
		})
	}
	start, lastShown := time.Now(), time.Time{}
	var records, shown int
	written := make(chan error, 1)
	go func() {
		var werr error
		for b := range order {
			<-b.done
			if werr != nil {
				continue // drain: the scan is being stopped
			}
			if werr = b.err; werr == nil {
				_, werr = w.Write(b.out.Bytes())
			}
			if werr != nil {
				cancel(werr)
				continue
			}
			records += len(b.recs)
			shown += b.shown
			r := b.recs[len(b.recs)-1]
			batches.Put(b)
			if progress && time.Since(lastShown) > 200*time.Millisecond {
				lastShown = time.Now()
				rate := float64(records) / time.Since(start).Seconds()
				eta := time.Duration(float64(last-min(r.Seq, last)) / max(rate, 1) * float64(time.Second))
				fmt.Fprintf(stderr, "\raudit: record %d of %d (%.0f%%), %d events shown, %.0f records/s, ETA %s   ",
					r.Seq, last, 100*float64(r.Seq)/float64(max(last, 1)), shown, rate, eta.Round(time.Second))
			}
		}
		written <- werr
	}()
	b := newAuditBatch()
	send := func() {
		work <- b
		order <- b
		b = newAuditBatch()
	}
	_, err = store.Scan(ctx, o, func(r *eventstore.Record) error {
		b.recs = append(b.recs, r)
		if len(b.recs) == cap(b.recs) {
			send()
		}
		return nil
	})
	if len(b.recs) > 0 {
		send()
	}
	close(work)
	close(order)
	wg.Wait()
	if werr := <-written; werr != nil {
		err = werr // the scan stopped because of it
	}
	if progress {
		fmt.Fprintf(stderr, "\raudit: %d records read, %d events shown in %s%s\n", records, shown,
			time.Since(start).Round(time.Millisecond), strings.Repeat(" ", 30))
	}
	return err
}

// auditBatch is a run of consecutive records and their formatted output.
type auditBatch struct {
	recs  []*eventstore.Record
	out   bytes.Buffer
	shown int
	err   error
	done  chan struct{} // closed when out (or err) is ready
}

// batches keeps written batches for reuse: growing a fresh output buffer for every batch was
// the audit's largest allocation.
var batches sync.Pool

func newAuditBatch() *auditBatch {
	b, _ := batches.Get().(*auditBatch)
	if b == nil {
		return &auditBatch{recs: make([]*eventstore.Record, 0, 128), done: make(chan struct{})}
	}
	clear(b.recs)
	*b = auditBatch{recs: b.recs[:0], out: b.out, done: make(chan struct{})}
	b.out.Reset()
	return b
}

func (b *auditBatch) format(f auditFilter, asJSON bool) {
	enc := json.NewEncoder(&b.out)
	for _, r := range b.recs {
		hs, err := service.HistoryOf(r)
		if err != nil {
			b.err = fmt.Errorf("record %d: %w", r.Seq, err)
			return
		}
		for _, h := range hs {
			if !f.match(h) {
				continue
			}
			b.shown++
			if asJSON {
				if err := enc.Encode(h); err != nil {
					b.err = err
					return
				}
			} else {
				b.out.WriteString(tableRow(h))
			}
		}
	}
}

// tableHeader heads history's table (one shadow); auditHeader audit's, which names the shadow
// of each event.
const (
	tableHeader = "TIME                            SEQ       EVENT                 OPERATION                             OP      ATT  REQUEST           OUTCOME"
	auditHeader = "TIME                            SEQ       RESOURCE     SHADOW                                EVENT                 OPERATION                             OP      ATT  REQUEST           OUTCOME"
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
	return fmt.Sprintf("%-31s %-9d %s%-21s %-37s %-7s %-4s %-17s %s\n", r.Time.UTC().Format(time.RFC3339Nano), r.Seq, r.shadow, r.Type,
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
		out = "due " + x.At.UTC().Format(time.RFC3339Nano)
	}
	return out
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
