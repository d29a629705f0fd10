// Package natstest starts an embedded nats-server with JetStream for a test: random port, the
// test's temp dir, shut down when the test ends.
package natstest

import (
	"net"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
