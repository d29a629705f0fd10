package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/cli"
	"shadowbridge/eventstore"
)

type cflags struct {
	fs                                                    *flag.FlagSet
	context, server, creds, user, password, tlsCA, prefix *string
	timeout                                               *time.Duration
}

// connFlags are the connection flags every client verb takes (help lists them apart).
var connFlags = map[string]bool{"context": true, "server": true, "creds": true, "user": true, "password": true, "tls-ca": true, "prefix": true, "timeout": true}

func clientFlags(fs *flag.FlagSet, getenv func(string) string) *cflags {
	def := getenv("NATS_URL")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	return &cflags{
		fs:       fs,
		context:  fs.String("context", getenv("NATS_CONTEXT"), "a nats CLI context: its server, credentials and TLS (env NATS_CONTEXT; the flags below override it)"),
		server:   fs.String("server", def, "NATS URL (env NATS_URL)"),
		creds:    fs.String("creds", "", "NATS credentials file"),
		user:     fs.String("user", "", "NATS user"),
		password: fs.String("password", "", "NATS password"),
		tlsCA:    fs.String("tls-ca", "", "CA certificate (PEM) to verify the NATS server"),
		prefix:   fs.String("prefix", "prov", "subject prefix"),
		timeout:  fs.Duration("timeout", 10*time.Second, "request timeout"),
	}
}

func (c *cflags) connect() (*nats.Conn, error) {
	if *c.context != "" {
		return c.connectContext()
	}
	return connect(app.NATSConfig{URL: *c.server, Creds: *c.creds, User: *c.user, Password: *c.password,
		TLS: app.TLSConfig{CA: *c.tlsCA}}, "shadowbridge client")
}

// connectContext connects with a nats CLI context (natscontext, as the nats CLI reads it: the
// server, credentials, TLS), the connection flags given on the command line overriding it.
func (c *cflags) connectContext() (*nats.Conn, error) {
	nctx, err := natscontext.New(*c.context, true)
	if err != nil {
		return nil, fmt.Errorf("nats context %q: %w", *c.context, err)
	}
	set := func(name string) bool { return flagSet(c.fs, name) }
	opts := []nats.Option{nats.Name("shadowbridge client"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	if set("creds") {
		opts = append(opts, nats.UserCredentials(*c.creds))
	}
	if set("user") || set("password") {
		opts = append(opts, nats.UserInfo(*c.user, *c.password))
	}
	if set("tls-ca") {
		opts = append(opts, nats.RootCAs(*c.tlsCA))
	}
	all, err := nctx.NATSOptions(opts...) // the context's first, ours after: ours win
	if err != nil {
		return nil, fmt.Errorf("nats context %q: %w", *c.context, err)
	}
	url := nctx.ServerURL()
	if set("server") {
		url = *c.server
	}
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s (context %q): %w", bridge.RedactURL(url), *c.context, err)
	}
	return nc, nil
}

// attach connects and attaches to the event store the service made (client verbs never
// create or change it); closeConn closes the connection.
func (c *cflags) attach(ctx context.Context) (store *eventstore.Store, closeConn func(), err error) {
	nc, err := c.connect()
	if err != nil {
		return nil, nil, err
	}
	if store, err = openStore(ctx, nc, *c.prefix); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return store, nc.Close, nil
}

func openStore(ctx context.Context, nc *nats.Conn, prefix string) (*eventstore.Store, error) {
	cfg := eventstore.DefaultConfig()
	cfg.Prefix = prefix
	return eventstore.Attach(ctx, nc, cfg)
}

func runClient(ctx context.Context, verb string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, verb, stdout, stderr)
	a := cli.NewArgs(verb)
	a.Bind(fs)
	cf := clientFlags(fs, getenv)
	var err error
	if a.Pos, err = parseInterleaved(fs, args); err != nil {
		return err
	}
	subject, body, err := cli.Builders[verb](a)
	if err != nil {
		return err
	}
	nc, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ask := func(body any) ([]byte, error) {
		var raw json.RawMessage
		err := request(ctx, nc, *cf.timeout, *cf.prefix+"."+subject, body, &raw)
		return raw, err
	}
	if verb == "pending" {
		return cli.ListPending(ask, body.(api.PendingQuery), *a.Output, stdout)
	}
	data, err := ask(body)
	if err != nil {
		return err
	}
	switch {
	case verb == "history":
		return cli.PrintHistory(data, *a.Output, stdout)
	case verb == "explain" && *a.Output == cli.Table:
		return cli.PrintExplanation(data, stdout)
	}
	return cli.PrintReply(verb, data, *a.Output, stdout)
}

// parseInterleaved parses flags anywhere among the positional arguments ("--" ends flags).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
