// Package natstest starts an embedded nats-server with JetStream for a test: random port, the
// test's temp dir, shut down when the test ends.
package natstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/eventstore/embedded"
)

// Server is a running test server.
type Server struct {
	*server.Server
	Dir string
}

// Start starts a server in a fresh temp dir.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartIn(t, t.TempDir())
}

// StartWith starts a server with the given options (Listen and StoreDir default to a random
// port and a fresh temp dir): a smaller MaxPayload, say.
func StartWith(t testing.TB, o embedded.Options) *Server {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	s, err := embedded.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return &Server{Server: s, Dir: o.StoreDir}
}

// StartIn starts a server storing in dir (restart a server on the same dir to test recovery).
func StartIn(t testing.TB, dir string) *Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return &Server{Server: s, Dir: dir}
}

// Connect returns a client connection closed at the end of the test.
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// StartAt starts a server on a fixed address (restart on the same address and dir to test
// client reconnection after an outage). Use FreeAddr for the address.
func StartAt(t testing.TB, dir, addr string) *Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Listen: addr, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return &Server{Server: s, Dir: dir}
}

// processEnv carries a child server's options (embedded.Options as JSON) to ServeIfAsked.
const processEnv = "SHADOWBRIDGE_NATSTEST_PROCESS"

// Process is a NATS server running in a child process of the test binary: a benchmark that
// measures its own process's memory or CPU does not count the server's.
type Process struct {
	URL, Dir string
}

// StartProcess starts a NATS server with JetStream (random port, fresh temp dir) in a child
// process of this test binary, stopped when the test ends. The package's TestMain must call
// ServeIfAsked first.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	o := embedded.Options{Listen: FreeAddr(t), StoreDir: t.TempDir()}
	cmd := Command(o)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	p := &Process{URL: "nats://" + o.Listen, Dir: o.StoreDir}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		nc, err := nats.Connect(p.URL)
		if err == nil {
			nc.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS server process did not come up: %v", err)
		}
	}
}

// Command is the command that runs a NATS server with o in a child process of this test binary
// (ServeIfAsked serves it; SIGTERM stops it, SIGKILL kills it): for a test that kills and
// restarts its server on the same directory and ports.
func Command(o embedded.Options) *exec.Cmd {
	spec, _ := json.Marshal(o)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), processEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	return cmd
}

// Connect returns a client connection closed at the end of the test.
func (p *Process) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(p.URL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ServeIfAsked, called first in a TestMain, makes this test binary the NATS server StartProcess
// asked for (it serves until SIGTERM or SIGINT, then exits); otherwise it returns at once.
func ServeIfAsked() {
	spec := os.Getenv(processEnv)
	if spec == "" {
		return
	}
	var o embedded.Options
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		fmt.Fprintln(os.Stderr, "natstest:", err)
		os.Exit(2)
	}
	srv, err := embedded.Start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "natstest:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop()
	srv.Shutdown()
	srv.WaitForShutdown()
	os.Exit(0)
}

// FreeAddr returns a loopback address with a port that was free a moment ago, chosen below the
// kernel's ephemeral range: a port the kernel handed out for ":0" can be handed out again, as
// the local port of any outgoing connection, before the server that was to listen on it binds
// (a cluster node then never became ready, once under a benchmark's connection churn).
func FreeAddr(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", fmt.Sprint("127.0.0.1:", port))
		if err != nil {
			continue // taken
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Fatal("natstest: no free port below the ephemeral range")
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 where it cannot be read:
// the Linux default, and IANA's range starts above it).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	var low int
	if err != nil || len(strings.Fields(string(data))) != 2 {
		return 32768
	}
	if _, err := fmt.Sscan(strings.Fields(string(data))[0], &low); err != nil || low <= 11000 {
		return 32768
	}
	return low
}

// Node is the address plan of one node of a test cluster: restart it with StartNode on the
// same plan (same dir, ports and routes) after a shutdown.
type Node struct {
	Name, Dir, Client, Route string
	Routes                   []string
}

// ClusterPlan returns the address plan of an n-node JetStream cluster on loopback.
func ClusterPlan(t testing.TB, n int) []Node {
	t.Helper()
	nodes := make([]Node, n)
	var routes []string
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprint("n", i+1), Dir: t.TempDir(), Client: FreeAddr(t), Route: FreeAddr(t)}
		routes = append(routes, nodes[i].Route)
	}
	for i := range nodes {
		nodes[i].Routes = routes
	}
	return nodes
}

// Options returns the embedded server options of the node.
func (n Node) Options() embedded.Options {
	return embedded.Options{Listen: n.Client, StoreDir: n.Dir, ServerName: n.Name,
		Cluster: embedded.ClusterOptions{Name: "shadowbridge-test", Listen: n.Route, Routes: n.Routes}}
}

// StartNode starts one node of a cluster plan in this process (stopped when the test ends).
func StartNode(t testing.TB, n Node) *Server {
	t.Helper()
	s, err := embedded.Start(n.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return &Server{Server: s, Dir: n.Dir}
}

// StartCluster starts an n-node JetStream cluster on loopback (file storage, routes between all
// nodes) and waits until it has elected its meta leader, so that R3 streams can be created.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	plan := ClusterPlan(t, n)
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, node := range plan {
		wg.Go(func() {
			// Started at once (a node waits for its routes), failing here: t.Fatal belongs to
			// the test's goroutine.
			s, err := embedded.Start(node.Options())
			if err != nil {
				errs[i] = fmt.Errorf("node %s: %w", node.Name, err)
				return
			}
			servers[i] = &Server{Server: s, Dir: node.Dir}
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	WaitClusterReady(t, URLs(plan))
	return servers
}

// URLs is the client URL list of a plan ("nats://a,nats://b,...").
func URLs(plan []Node) string {
	var urls []string
	for _, n := range plan {
		urls = append(urls, "nats://"+n.Client)
	}
	return strings.Join(urls, ",")
}

// WaitClusterReady waits until JetStream answers on the cluster at urls (a meta leader exists).
func WaitClusterReady(t testing.TB, urls string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(urls)
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
