package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/cli"
	"shadowbridge/eventstore/embedded"
	"shadowbridge/projections"
)

// newLogger logs at SHADOWBRIDGE_LOG (debug, info (default), warn or error), as text or, with
// SHADOWBRIDGE_LOG_FORMAT=json, as JSON lines.
func newLogger(stderr io.Writer, getenv func(string) string) *slog.Logger {
	level := slog.LevelInfo
	switch getenv("SHADOWBRIDGE_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	o := &slog.HandlerOptions{Level: level}
	if getenv("SHADOWBRIDGE_LOG_FORMAT") == "json" {
		return slog.New(slog.NewJSONHandler(stderr, o))
	}
	return slog.New(slog.NewTextHandler(stderr, o))
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "dev", stdout, stderr)
	data := fs.String("data", "./.shadowbridge", "directory for JetStream's files (state survives restarts; default: the config's nats.embedded.storeDir, else ./.shadowbridge)")
	listen := fs.String("nats", "127.0.0.1:4222", "address of the embedded NATS server")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the dashboard")
	cfgFile := fs.String("config", "", "YAML configuration (default: the demo resource on the sample target system)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := app.DefaultConfig()
	if *cfgFile != "" {
		var err error
		if cfg, err = app.Load(*cfgFile); err != nil {
			return err
		}
	}
	cfg.HTTP.Listen = *httpAddr
	if err := cfg.LoadSecrets(getenv); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(stderr, getenv)
	dataDir := *data
	if set := flagSet(fs, "data"); !set && cfg.NATS.Embedded.StoreDir != "" {
		dataDir = cfg.NATS.Embedded.StoreDir // the configuration's, unless --data says otherwise
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	users, servicePassword := devUsers(cfg.Prefix)
	srv, err := embedded.Start(embedded.Options{Listen: *listen, StoreDir: filepath.Join(dir, "jetstream"), Users: users, NoAuthUser: "client"})
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL(), nats.Name("shadowbridge dev"), nats.UserInfo(devServiceUser, servicePassword))
	if err != nil {
		return err
	}
	defer nc.Close()
	err = runApp(ctx, nc, cfg, cfg.HTTP.Listen, log, getenv, nil, func(httpAddr string) {
		fmt.Fprintf(stdout, "shadowbridge dev is running\n  NATS:      %s\n  dashboard: http://%s/\n  data:      %s\n  resources:", srv.ClientURL(), httpAddr, dir)
		for _, r := range cfg.Resources {
			fmt.Fprintf(stdout, " %s", r.Name)
		}
		fmt.Fprintf(stdout, "\nTry: shadowbridge add demo login=jack fullName=\"Jack Sparrow\"\nStop with Ctrl-C.\n")
	})
	if err == nil {
		fmt.Fprintln(stdout, "shutting down")
	}
	return err
}

// runApp starts shadowbridge and its HTTP listener on nc, calls ready, and runs until ctx ends.
// When ctx ends (SIGTERM, SIGINT) it stops gracefully (see app.App.Close) within shutdownGrace;
// past that it returns an error and the process exits with what it has not stored left
// unacknowledged, for another instance or the next start.
// runApp runs the service on nc until ctx ends. With a waiter (serve), starting it is retried
// while NATS is not ready (JetStream still electing, say), and the waiter's HTTP address is
// taken over once it runs.
func runApp(ctx context.Context, nc *nats.Conn, cfg app.Config, httpAddr string, log *slog.Logger, getenv func(string) string, w *waiter, ready func(httpAddr string)) error {
	tp, shutdownTracing, err := tracerProvider(ctx, getenv)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("tracing: spans not exported at shutdown", "err", err)
		}
	}()
	// Not ctx: the signal must not cancel requests in flight; Close ends everything in order.
	a, err := until(ctx, w, "start the service", startTransient, func() (*app.App, error) {
		return app.Start(context.WithoutCancel(ctx), nc, cfg, app.Options{TracerProvider: tp}, log)
	})
	if err != nil {
		return err
	}
	if addr := w.addr(); addr != "" {
		httpAddr = addr // the port the waiter answered on (a ":0" address was resolved)
	}
	w.close()
	hs, err := startHTTP(httpAddr, a)
	if err != nil {
		a.Close()
		return err
	}
	ready(hs.Addr())
	<-ctx.Done()
	done := make(chan struct{})
	go func() { _ = hs.Close(); a.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(shutdownGrace):
		// What is still running, for the operator (and the bug report): every goroutine, then
		// (last, where a truncated log still shows it) those of the components not stopped.
		running := a.Running()
		var dump bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
		os.Stderr.Write(dump.Bytes())
		fmt.Fprint(os.Stderr, stuckStacks(dump.String(), running))
		return fmt.Errorf("shutdown took longer than %s (still running: %s); exiting with the rest unacknowledged",
			shutdownGrace, strings.Join(running, ", "))
	}
}

// stuckStacks picks from a goroutine dump (pprof's debug=1 form) the stacks labelled with one of
// the components still running, each shortened to its innermost frame and shadowbridge's own
// frames.
func stuckStacks(dump string, running []string) string {
	var b strings.Builder
	for _, group := range strings.Split(dump, "\n\n") {
		lines := strings.Split(group, "\n")
		if len(lines) < 2 || !slices.ContainsFunc(running, func(c string) bool {
			return strings.Contains(group, fmt.Sprintf("%q:%q", app.ComponentLabel, c))
		}) {
			continue
		}
		count, _, _ := strings.Cut(lines[0], " @")
		fmt.Fprintf(&b, "stuck: %s goroutine(s)\n", count)
		for i, l := range lines[1:] {
			if strings.HasPrefix(l, "# labels") || (strings.HasPrefix(l, "#\t") && (i == 1 || strings.Contains(l, "shadowbridge/"))) {
				fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
			}
		}
	}
	return b.String()
}

// shutdownGrace bounds a graceful stop.
const shutdownGrace = 20 * time.Second

// connect dials NATS with the configured auth and TLS.
func connect(c app.NATSConfig, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CA))
	}
	if c.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(c.TLS.Cert, c.TLS.Key))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", bridge.RedactURL(c.URL), err)
	}
	return nc, nil
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "serve", stdout, stderr)
	cfgFile := fs.String("config", "", "YAML configuration (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgFile == "" {
		return errors.New("serve: --config FILE is required")
	}
	cfg, err := app.Load(*cfgFile)
	if err != nil {
		return err
	}
	if u := getenv("NATS_URL"); u != "" && cfg.NATS.URL == app.DefaultConfig().NATS.URL {
		cfg.NATS.URL = u
	}
	if err := cfg.LoadSecrets(getenv); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(stderr, getenv)
	// NATS may not be up yet (or a cluster still forming): serve waits for it, /readyz false.
	w, err := newWaiter(cfg.HTTP.Listen, log)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer w.close()
	nc, err := until(ctx, w, "connect to NATS at "+bridge.RedactURL(cfg.NATS.URL), anyError, func() (*nats.Conn, error) {
		return connect(cfg.NATS, "shadowbridge")
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	return runApp(ctx, nc, cfg, cfg.HTTP.Listen, log, getenv, w, func(httpAddr string) {
		log.Info("serving", "nats", nc.ConnectedUrlRedacted(), "http", httpAddr)
	})
}

func runRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "rebuild", stdout, stderr)
	progress := fs.Bool("progress", cli.IsTerminal(stderr), "show a progress bar on stderr (default: when stderr is a terminal)")
	out := cli.OutputFlags(fs) // json: shadows, lastSequence, seconds
	cf := clientFlags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, closeConn, err := cf.attach(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	pcfg := projections.DefaultConfig()
	pcfg.Attach = true
	p, err := projections.NewProjector(ctx, store.JetStream(), store, pcfg, newLogger(stderr, getenv))
	if err != nil {
		return err
	}
	total, err := store.LastSeq(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	var show func(projections.Progress)
	if *progress {
		show = func(pr projections.Progress) { fmt.Fprint(stderr, "\r"+progressBar(pr, total, time.Since(start))) }
	}
	pr, err := p.Rebuild(ctx, show)
	if *progress {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	took := time.Since(start)
	if *out == cli.JSON {
		return cli.PrintJSON(stdout, map[string]any{"shadows": pr.Shadows, "lastSequence": pr.Last, "seconds": took.Seconds()})
	}
	fmt.Fprintf(stdout, "rebuilt %s, covering the log up to sequence %d, in %s\n", plural(pr.Shadows, "shadow"), pr.Last, took.Round(time.Millisecond))
	return nil
}

// progressBar renders a rebuild's progress: how much of the log the projection covers, the rate
// in events of the log covered per second, and the time left.
func progressBar(pr projections.Progress, total uint64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = min(float64(pr.Seq)/float64(total), 1)
	}
	filled := int(frac * width)
	rate := float64(pr.Seq) / max(elapsed.Seconds(), 1e-6)
	eta := time.Duration(0)
	if rate > 0 && pr.Seq < total {
		eta = time.Duration(float64(total-pr.Seq) / rate * float64(time.Second))
	}
	return fmt.Sprintf("[%s%s] %3.0f%% %d shadows, %.0f events/s, ETA %s ", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		100*frac, pr.Shadows, rate, eta.Round(time.Second))
}

// httpServer is the ops and dashboard listener.
type httpServer struct {
	ln  net.Listener
	srv *http.Server
}

func startHTTP(addr string, a *app.App) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &httpServer{ln: ln, srv: srv}, nil
}

func (h *httpServer) Addr() string { return h.ln.Addr().String() }
func (h *httpServer) Close() error { return h.srv.Close() }

// plural returns "1 shadow", "2 shadows".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
