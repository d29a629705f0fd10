// Command shadowbridge is the event-sourced provisioning service and its client.
//
//	shadowbridge dev [--data DIR] [--nats 127.0.0.1:4222] [--http 127.0.0.1:8080] [--config FILE]
//	shadowbridge serve --config FILE
//	shadowbridge add|modify|delete|refresh|confirm|get|pending|history ...
//
// Run 'shadowbridge help' for every verb, 'shadowbridge VERB --help' for one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/buildinfo"
	"shadowbridge/cmd/internal/cli"
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

type runner func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// verb is one command of the binary: its usage line, what it does, and how it runs. Help,
// "did you mean" and shell completion all read this table, so they cannot drift from it.
type verb struct {
	name, args, summary string
	client              bool // talks to a running service over NATS (connection flags apply)
	run                 runner
}

func clientVerb(name string) runner {
	return func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
		return runClient(ctx, name, args, getenv, stdout, stderr)
	}
}

// verbTable is the binary's verbs, in the order help lists them (a function: the runners refer
// back to it through help).
func verbTable() []verb {
	return []verb{
		{name: "dev", args: "[--data DIR] [--nats ADDR] [--http ADDR] [--config FILE]", summary: "run everything on this machine (embedded NATS, service, sample target system)", run: runDev},
		{name: "serve", args: "--config FILE", summary: "run the service against an external NATS", run: runServe},
		{name: "rebuild", summary: "rebuild the projections from the event stream", client: true, run: runRebuild},
		{name: "add", args: "RESOURCE attr=value attr:=<json> ...", summary: "request an account", client: true, run: clientVerb("add")},
		{name: "modify", args: "RESOURCE (SHADOW | --id attr=value) attr=value attr+=value attr-=value ...", summary: "change an account's attributes (= replace, += add, -= delete a value)", client: true, run: clientVerb("modify")},
		{name: "delete", args: "RESOURCE (SHADOW | --id attr=value)", summary: "delete an account", client: true, run: clientVerb("delete")},
		{name: "refresh", args: "RESOURCE [SHADOW]", summary: "retry what is due (one shadow, or the whole resource)", client: true, run: clientVerb("refresh")},
		{name: "confirm", args: "RESOURCE OPERATION", summary: "record the target system's answer to an operation", client: true, run: clientVerb("confirm")},
		{name: "cancel", args: "RESOURCE OPERATION", summary: "end an operation postponed for retry", client: true, run: clientVerb("cancel")},
		{name: "maintenance", args: "RESOURCE on|off", summary: "hold every operation (no attempts counted), or release them", client: true, run: clientVerb("maintenance")},
		{name: "resource", args: "RESOURCE", summary: "availability, maintenance and their recent changes", client: true, run: clientVerb("resource")},
		{name: "reconcile", args: "RESOURCE [--wait]", summary: "compare every account on the target with its shadow (the target lists them)", client: true, run: runReconcile},
		{name: "get", args: "SHADOW", summary: "a shadow, now or as it was at a time", client: true, run: clientVerb("get")},
		{name: "pending", summary: "shadows with unfinished operations (a table; --output json for the shadows)", client: true, run: clientVerb("pending")},
		{name: "history", args: "SHADOW", summary: "a shadow's events, oldest first", client: true, run: clientVerb("history")},
		{name: "explain", args: "SHADOW", summary: "why the shadow is in its state, and what happens next", client: true, run: clientVerb("explain")},
		{name: "audit", summary: "replay the event log for auditors, filtered", client: true, run: runAudit},
		{name: "verify", summary: "check the log against the projection, the index and the timers (read-only; non-zero exit on a violation)", client: true, run: runVerify},
		{name: "completion", args: "bash|zsh", summary: "print a shell completion script (source it, or install it as the shell expects)", run: runCompletion},
		{name: "version", args: "[--output json]", summary: "which shadowbridge this is (release, commit, Go version)", run: runVersion},
		{name: "health", args: "[--url URL]", summary: "exit 0 if a running service answers its health check (a container's HEALTHCHECK)", run: runHealth},
		{name: "help", args: "[VERB]", summary: "this list, or one verb's usage", run: runHelp},
	}
}

func lookupVerb(name string) (verb, bool) {
	for _, v := range verbTable() {
		if v.name == name {
			return v, true
		}
	}
	return verb{}, false
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: shadowbridge <command> [arguments] [flags]\n\nservice:\n")
	for _, v := range verbTable() {
		if !v.client && !slices.Contains([]string{"completion", "version", "health", "help"}, v.name) {
			fmt.Fprintf(&b, "  %-12s %s\n", v.name, v.summary)
		}
	}
	b.WriteString("\nclient (over NATS; --server URL, env NATS_URL):\n")
	for _, v := range verbTable() {
		if v.client {
			fmt.Fprintf(&b, "  %-12s %s\n", v.name, v.summary)
		}
	}
	b.WriteString("\nother:\n")
	for _, name := range []string{"completion", "version", "health", "help"} {
		v, _ := lookupVerb(name)
		fmt.Fprintf(&b, "  %-12s %s\n", v.name, v.summary)
	}
	b.WriteString("\nRun 'shadowbridge <command> --help' for a command's arguments and flags.\n")
	return b.String()
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return errors.New("no command given")
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		name = "help"
	case "--version", "-version":
		name = "version"
	}
	v, ok := lookupVerb(name)
	if !ok {
		if s := suggest(name); s != "" {
			return fmt.Errorf("unknown command %q: did you mean %s? (shadowbridge help lists them all)", name, s)
		}
		return fmt.Errorf("unknown command %q (shadowbridge help lists them all)", name)
	}
	if err := installFault(getenv); err != nil {
		return err
	}
	if wantsHelp(rest) {
		ctx = context.WithValue(ctx, helpKey{}, true)
	}
	var sets []*flag.FlagSet
	err := v.run(context.WithValue(ctx, collectKey{}, &sets), rest, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag set printed the verb's usage to stdout
	}
	return verbError(name, err, sets)
}

// flagErrors rewrite the flag package's messages the way the usage spells flags (--name).
var flagErrors = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`^flag provided but not defined: -+(\S+)$`), "unknown flag --$1"},
	{regexp.MustCompile(`^invalid (boolean )?value (".*") for (flag )?-+([^:\s]+): `), "invalid value $2 for --$4: "},
	{regexp.MustCompile(`^flag needs an argument: -+(\S+)$`), "--$1 needs a value"},
}

// shortFlag finds a one-letter flag spelled with two dashes (-o is spelled -o).
var shortFlag = regexp.MustCompile(`(^|\s)--([A-Za-z])([\s:]|$)`)

// verbError gives every error of a verb one form: "VERB: message", a flag spelled --name (with
// the closest flag of the verb suggested for an unknown one).
func verbError(verb string, err error, sets []*flag.FlagSet) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, f := range flagErrors {
		if f.re.MatchString(msg) {
			msg = shortFlag.ReplaceAllString(f.re.ReplaceAllString(msg, f.with), "$1-$2$3")
			if name, ok := strings.CutPrefix(msg, "unknown flag --"); ok {
				if s := closestFlag(name, sets); s != "" {
					msg += " (did you mean --" + s + "?)"
				}
			}
			return fmt.Errorf("%s: %s", verb, msg)
		}
	}
	if strings.HasPrefix(msg, verb+":") || strings.HasPrefix(msg, verb+" ") {
		return err
	}
	return fmt.Errorf("%s: %w", verb, err)
}

// closestFlag returns the flag of sets nearest to name (api.Suggest), or "".
func closestFlag(name string, sets []*flag.FlagSet) string {
	var names []string
	for _, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	}
	return api.Suggest(name, names)
}

// helpKey marks a context whose verb was asked for --help: its flag set prints the usage to
// stdout (an answer, exit 0) instead of stderr (a complaint).
type helpKey struct{}

// collectKey carries a *[]*flag.FlagSet that newFlagSet appends to (for shell completion).
type collectKey struct{}

// wantsHelp reports whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// newFlagSet returns the flag set of a verb: parse errors go to stderr with a hint, --help prints
// the verb's usage line, what it does and only its flags to stdout.
func newFlagSet(ctx context.Context, name string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	out := stderr
	if ctx.Value(helpKey{}) != nil {
		out = stdout
	}
	// The flag package's own error line spells flags -name: run prints the error (verbError),
	// the flag set only the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		v, _ := lookupVerb(name)
		fmt.Fprintf(out, "usage: shadowbridge %s %s\n\n%s.\n", name, v.args, v.summary)
		var own, conn bool
		fs.VisitAll(func(f *flag.Flag) {
			if connFlags[f.Name] {
				conn = true
			} else {
				own = true
			}
		})
		print := func(wantConn bool) {
			fs.VisitAll(func(f *flag.Flag) {
				if connFlags[f.Name] != wantConn {
					return
				}
				typ, help := flag.UnquoteUsage(f)
				line := "  --" + f.Name
				if typ != "" {
					line += " " + typ
				}
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" && f.DefValue != "[]" {
					help += fmt.Sprintf(" (default %s)", f.DefValue)
				}
				fmt.Fprintf(out, "%-28s %s\n", line, help)
			})
		}
		if own {
			fmt.Fprint(out, "\nflags:\n")
			print(false)
		}
		if conn {
			fmt.Fprint(out, "\nconnection flags:\n")
			print(true)
		}
	}
	if c, ok := ctx.Value(collectKey{}).(*[]*flag.FlagSet); ok {
		*c = append(*c, fs)
	}
	return fs
}

// suggest returns the verb closest to name (a prefix, or at most two edits away), or "".
func suggest(name string) string {
	best, bestD := "", 3
	for _, v := range verbTable() {
		if strings.HasPrefix(v.name, name) && len(name) >= 2 {
			return v.name
		}
		if d := api.EditDistance(name, v.name); d < bestD {
			best, bestD = v.name, d
		}
	}
	return best
}

func runHelp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || wantsHelp(args) {
		fmt.Fprint(stdout, usage())
		return nil
	}
	if _, ok := lookupVerb(args[0]); !ok {
		return run(ctx, args[:1], getenv, stdout, stderr) // the unknown-command answer
	}
	return run(ctx, []string{args[0], "--help"}, getenv, stdout, stderr)
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// runVersion prints the binary's build (buildinfo.Read): one line, or JSON with --json.
func runVersion(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "version", stdout, stderr)
	out := cli.OutputFlags(fs) // json: version, revision, time, modified, goVersion
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	i := buildinfo.Read()
	if *out == cli.JSON {
		return cli.PrintJSON(stdout, i)
	}
	fmt.Fprintln(stdout, i)
	return nil
}

// runHealth asks a running service's /healthz (or the URL given): exit 0 on 200. It is the
// container image's HEALTHCHECK, where no shell or curl exists.
func runHealth(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "health", stdout, stderr)
	def := getenv("SHADOWBRIDGE_HEALTH_URL")
	if def == "" {
		def = "http://127.0.0.1:8080/healthz"
	}
	url := fs.String("url", def, "the health endpoint (env SHADOWBRIDGE_HEALTH_URL)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", *url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", *url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
