package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/cli"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// runReconcile starts a reconciliation run of a resource (or joins the one going) and, with
// --wait, follows it to its end: progress on stderr, the counts on stdout, exit 0 when it
// finished, an error when it failed.
func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "reconcile", stdout, stderr)
	wait := fs.Bool("wait", false, "follow the run to its end and print its counts")
	requestID := fs.String("request-id", "", "idempotency key: a re-send with the same key gets the first reply (the same run)")
	out := cli.OutputFlags(fs)
	cf := clientFlags(fs, getenv)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("reconcile: want RESOURCE")
	}
	resource := pos[0]
	nc, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	var started service.ReconcileReply
	if err := request(ctx, nc, *cf.timeout, *cf.prefix+".cmd."+resource+".reconcile", api.ReconcileBody{RequestID: *requestID}, &started); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if !*wait {
		if *out == cli.JSON {
			return cli.PrintJSON(stdout, started)
		}
		_, err := fmt.Fprintf(stdout, "reconciliation %s of %s: %s (--wait follows it)\n", started.ReconciliationID, resource, started.State)
		return err
	}
	fmt.Fprintf(stderr, "reconciliation %s of %s\n", started.ReconciliationID, resource)
	for pages := -1; ; {
		var res domain.ResourceData
		if err := request(ctx, nc, *cf.timeout, *cf.prefix+".query.resource", api.ResourceQuery{Resource: resource}, &res); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		run := res.Reconciliation
		if run == nil || run.ID != started.ReconciliationID {
			return fmt.Errorf("reconcile: run %s was replaced by another", started.ReconciliationID)
		}
		if run.Pages != pages {
			pages = run.Pages
			fmt.Fprintf(stderr, "  %d page(s), %d account(s)\n", run.Pages, run.Counts.Accounts)
		}
		switch run.State {
		case domain.RunFinished:
			return printRun(stdout, run, *out)
		case domain.RunFailed:
			_ = printRun(stdout, run, *out)
			return fmt.Errorf("reconcile: run %s failed: %s", run.ID, run.Reason)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// request sends a typed body and decodes the reply into out; the service's errors come back as
// one line with their status.
func request(ctx context.Context, nc *nats.Conn, timeout time.Duration, subject string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reply, err := nc.RequestWithContext(rctx, subject, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no shadowbridge service answers on %s (is it running?)", subject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
		return fmt.Errorf("%s (status %s)", reply.Header.Get("Nats-Service-Error"), code)
	}
	return json.Unmarshal(reply.Data, out)
}

func printRun(w io.Writer, run *domain.ReconciliationRun, out cli.Output) error {
	if out == cli.JSON {
		return cli.PrintJSON(w, run)
	}
	return cli.PrintRun(w, run)
}
