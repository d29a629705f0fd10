// Command shadowbridge is the event-sourced provisioning service and its client.
//
//	shadowbridge dev [--data DIR] [--nats 127.0.0.1:4222] [--http 127.0.0.1:8080] [--config FILE]
//	shadowbridge serve --config FILE
//	shadowbridge add|modify|delete|refresh|confirm|get|pending|history ...
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shadowbridge:", oneLine(err))
		os.Exit(1)
	}
}

const usage = `usage: shadowbridge <command> [flags]

service:
  dev      run everything on this machine (embedded NATS, service, sample target system)
  serve    run the service against an external NATS (--config FILE)
  rebuild  rebuild the projections from the event stream

client (over NATS; --server URL, env NATS_URL):
  add RESOURCE attr=value attr:=<json> ...        request an account
  modify RESOURCE (SHADOW | --id attr=value) attr=value attr+=value attr-=value ...
  delete RESOURCE (SHADOW | --id attr=value)
  refresh RESOURCE [SHADOW] [--force]
  confirm RESOURCE OPERATION --result success [--message M] [--primary uid=value]
  cancel RESOURCE OPERATION                       end an operation postponed for retry
  maintenance RESOURCE on|off [--reason TEXT]     hold every operation (no attempts counted), or release them
  resource RESOURCE                               availability, maintenance and their recent changes
  get SHADOW [--as-of TIME]
  pending [--resource R]
  history SHADOW [--json]
  explain SHADOW [--json]                         why the shadow is in its state, and what happens next
  audit [--resource R] [--object-class C] [--operation add|modify|delete] [--result R]
        [--since T] [--until T] [--request-id ID] [--json]   replay the event log for auditors
  verify [--full] [--config FILE] [--json]        check the log against the projection, the index
                                                  and the timers (read-only; non-zero exit on a violation)

Run 'shadowbridge <command> --help' for the flags of a command.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	if err := installFault(getenv); err != nil {
		return err
	}
	switch cmd {
	case "dev":
		return runDev(ctx, rest, getenv, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "rebuild":
		return runRebuild(ctx, rest, getenv, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, getenv, stdout, stderr)
	case "add", "modify", "delete", "refresh", "confirm", "cancel", "maintenance", "resource", "get", "pending", "history", "explain":
		return runClient(ctx, cmd, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func oneLine(err error) string {
	s := err.Error()
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\n' {
			r = ';'
		}
		out = append(out, r)
	}
	return string(out)
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
