package embedded_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"shadowbridge/eventstore/embedded"
)

// One JetStream directory, one server: a second one is refused clearly, and the directory is
// free again once the first has stopped.
func TestStoreDirIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if !errors.Is(err, embedded.ErrDirInUse) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("second server on %s: %v, want ErrDirInUse naming the directory and --data", dir, err)
	}
	first.Shutdown()
	first.WaitForShutdown()
	again, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	again.Shutdown()
}

func TestBusyPortFailsAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = embedded.Start(embedded.Options{Listen: l.Addr().String(), StoreDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("busy port: %v, want address already in use", err)
	}
}
