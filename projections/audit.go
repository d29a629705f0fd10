package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"shadowbridge/eventstore"
)

// Scanner is what an audit reads: the event log, in order.
type Scanner interface {
	LastSeq(ctx context.Context) (uint64, error)
	Scan(ctx context.Context, o eventstore.ScanOptions, fn func(*eventstore.Record) error) (uint64, error)
}

var _ Scanner = (*eventstore.Store)(nil)

// AuditProgress is how far an audit is: records read, events shown, the sequence reached and the
// log's last sequence when it started.
type AuditProgress struct {
	Records, Shown int
	// Skipped lists the records passed over because they cannot be decoded (not written by
	// shadowbridge): an audit reports them and goes on.
	Skipped   []uint64
	Seq, Last uint64
	Elapsed   time.Duration
}

// Audit streams the history events of the log's records selected by o and keep to w, each
// appended to the output by format, in log order, and returns how far it got. progress, if not
// nil, is called after each batch written (on one goroutine).
//
// Records are read on one goroutine and decoded and formatted in batches on every core; the
// batches are written in log order: decoding and formatting, not reading, bound an audit, and a
// single goroutine left the second core to the NATS server alone. Memory stays bounded by the
// batches in flight, whatever the log's length. A write error stops the audit and is returned.
func Audit(ctx context.Context, log Scanner, o eventstore.ScanOptions, keep func(HistoryEvent) bool,
	format func(*bytes.Buffer, HistoryEvent) error, w io.Writer, progress func(AuditProgress)) (AuditProgress, error) {
	return audit(ctx, log, o, keep, format, w, progress, true)
}

// AuditJSON is Audit writing each event kept as one line of JSON (HistoryEvent.AppendJSON),
// without decoding the events: keep sees each event's envelope (every field but Event, which is
// nil), and the event's JSON is written from its stored bytes, byte for byte what json.Marshal
// of the decoded event writes. Decoding every event into its struct and reflecting over it was
// most of a JSON audit's own work.
func AuditJSON(ctx context.Context, log Scanner, o eventstore.ScanOptions, keep func(HistoryEvent) bool,
	w io.Writer, progress func(AuditProgress)) (AuditProgress, error) {
	line := func(b *bytes.Buffer, h HistoryEvent) error {
		out, err := h.AppendJSON(b.AvailableBuffer())
		if err != nil {
			return err
		}
		b.Write(append(out, '\n'))
		return nil
	}
	return audit(ctx, log, o, keep, line, w, progress, false)
}

func audit(ctx context.Context, log Scanner, o eventstore.ScanOptions, keep func(HistoryEvent) bool,
	format func(*bytes.Buffer, HistoryEvent) error, w io.Writer, progress func(AuditProgress), decode bool) (AuditProgress, error) {
	start := time.Now()
	var p AuditProgress
	var err error
	if p.Last, err = log.LastSeq(ctx); err != nil {
		return p, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *auditBatch, 4*workers)
	order := make(chan *auditBatch, 8*workers) // formatted or being formatted, in log order
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for b := range work {
				b.format(keep, format, decode)
				close(b.done)
			}
		})
	}
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
			p.Records += len(b.recs)
			p.Shown += b.shown
			p.Skipped = append(p.Skipped, b.skipped...)
			p.Seq = b.recs[len(b.recs)-1].Seq
			batches.Put(b)
			if progress != nil {
				p.Elapsed = time.Since(start)
				progress(p)
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
	_, err = log.Scan(ctx, o, func(r *eventstore.Record) error {
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
	p.Elapsed = time.Since(start)
	return p, err
}

// auditBatch is a run of consecutive records and their formatted output.
type auditBatch struct {
	recs    []*eventstore.Record
	sc      historyScratch
	out     bytes.Buffer
	shown   int
	skipped []uint64
	err     error
	done    chan struct{} // closed when out (or err) is ready
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
	*b = auditBatch{recs: b.recs[:0], sc: b.sc, out: b.out, skipped: b.skipped[:0], done: make(chan struct{})}
	b.out.Reset()
	return b
}

func (b *auditBatch) format(keep func(HistoryEvent) bool, format func(*bytes.Buffer, HistoryEvent) error, decode bool) {
	for _, r := range b.recs {
		hs, err := b.sc.historyOf(r, decode)
		if errors.Is(err, eventstore.ErrCorrupt) {
			b.skipped = append(b.skipped, r.Seq)
			continue
		}
		if err != nil {
			b.err = fmt.Errorf("record %d: %w", r.Seq, err)
			return
		}
		for _, h := range hs {
			if !keep(h) {
				continue
			}
			b.shown++
			if err := format(&b.out, h); err != nil {
				b.err = err
				return
			}
		}
	}
}
