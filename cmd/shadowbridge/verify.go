package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/cli"
	"shadowbridge/domain"
	"shadowbridge/projections"
)

// runVerify checks the log against the projection, the index and the timers (read-only) and
// fails when it finds a violation.
func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "verify", stdout, stderr)
	cf := clientFlags(fs, getenv)
	full := fs.Bool("full", false, "fold every shadow's events (default: one shadow in 16)")
	cfgFile := fs.String("config", "", "the service's YAML configuration, for each resource's consistency settings (default: midPoint's defaults)")
	out := cli.OutputFlags(fs) // json: the report (counts, violations, notices, findings)
	progress := fs.Bool("progress", cli.IsTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	recheck := fs.Duration("recheck", 3*time.Second, "how long a running service gets to fix a finding before it is reported")
	if err := fs.Parse(args); err != nil {
		return err
	}
	consistency := func(string) domain.Consistency { return domain.DefaultConsistency() }
	if *cfgFile != "" {
		cfg, err := app.Load(*cfgFile)
		if err != nil {
			return err
		}
		cat, err := cfg.Catalog()
		if err != nil {
			return err
		}
		consistency = func(resource string) domain.Consistency {
			if r, err := cat.Lookup(resource); err == nil {
				return r.Consistency()
			}
			return domain.DefaultConsistency()
		}
	}
	store, closeConn, err := cf.attach(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	pcfg := projections.DefaultConfig()
	pcfg.Attach = true
	kv, err := projections.OpenBucket(ctx, store.JetStream(), pcfg)
	if err != nil {
		return err
	}
	start := time.Now()
	o := projections.VerifyOptions{Full: *full, Consistency: consistency, Recheck: *recheck}
	if *progress {
		o.Progress = func(read, last uint64) { fmt.Fprintf(stderr, "\rverify: record %d", read) }
	}
	rep, err := projections.Verify(ctx, store, kv, o)
	if *progress {
		fmt.Fprint(stderr, "\r")
	}
	if err != nil {
		return err
	}
	if *out == cli.JSON {
		if err := cli.PrintJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		for _, f := range rep.Findings {
			fmt.Fprintln(stdout, f)
		}
		fmt.Fprintf(stdout, "verified %d records (up to sequence %d) of %d shadows in %s: %d operations, %d index entries, %d folded; %d violations, %d notices\n",
			rep.Records, rep.LastSeq, rep.Shadows, time.Since(start).Round(time.Millisecond), rep.Operations, rep.IndexEntries, rep.Folded,
			rep.Violations(), len(rep.Findings)-rep.Violations())
	}
	if n := rep.Violations(); n > 0 {
		return fmt.Errorf("verify: %d violations", n)
	}
	return nil
}
