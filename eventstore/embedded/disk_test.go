//go:build linux

package embedded_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/eventstore/embedded"
)

// smallDisk mounts a tmpfs of size (e.g. "20m") and returns its directory and a function that
// resizes it. It needs root (CI and the project's machines run as root).
func smallDisk(t *testing.T, size string) (string, func(string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("SHADOWBRIDGE_REQUIRE_ROOT") != "" {
			t.Fatal("mounting a small filesystem needs root")
		}
		t.Skip("mounting a small filesystem needs root")
	}
	dir := t.TempDir()
	mount := func(args ...string) {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	mount("-t", "tmpfs", "-o", "size="+size, "tmpfs", dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir, func(size string) { mount("-o", "remount,size="+size, dir) }
}

// storeOnSmallDisk starts a server whose store is on a fresh tmpfs of size, with a stream S, and
// returns a function writing 64 KiB to it, the JetStream context, the disk's directory and a
// function resizing it.
func storeOnSmallDisk(t *testing.T, size string) (put func() error, js jetstream.JetStream, disk string, resize func(string)) {
	t.Helper()
	disk, resize = smallDisk(t, size)
	srv, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(disk, "jetstream"), DiskCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ = jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 64<<10)
	return func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := js.Publish(ctx, "s.a", payload)
		return err
	}, js, disk, resize
}

// A full disk needs no restart (issue 23): writes refused while the store's filesystem is full
// are accepted again once it has room, by themselves.
func TestWritesResumeWhenTheDiskHasRoomAgain(t *testing.T) {
	put, _, _, resize := storeOnSmallDisk(t, "20m")
	stored := 0
	var refused error
	for range 1000 {
		if refused = put(); refused != nil {
			break
		}
		stored++
	}
	if refused == nil || stored == 0 {
		t.Fatalf("a 20 MB disk took %d writes of 64 KiB without refusing (%v)", stored, refused)
	}
	t.Logf("refused after %d writes: %v", stored, refused)
	resize("300m")
	deadline := time.Now().Add(30 * time.Second)
	for put() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused 30 s after the disk grew: %v", put())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Well beyond what the small disk held. A write may still meet JetStream being restarted
	// once: a write error nats-server reports late (a block flushed after the refusal) makes
	// the watcher reload the store, as it must (see watchDisk); a refusal that lasts is the bug.
	for i := range 100 {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			err := put()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %d after the disk grew still refused after 10 s: %v", i, err)
			}
		}
	}
}

// The same when something else fills the disk under the store: JetStream runs out of real space
// (nats-server then stops JetStream), and once the room is back writes are accepted again.
func TestWritesResumeAfterTheDiskRanOut(t *testing.T) {
	put, js, disk, _ := storeOnSmallDisk(t, "20m")
	ctx := t.Context()
	filler := filepath.Join(disk, "filler")
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M", "count=12").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, out)
	}
	var refused error
	stored := uint64(0)
	for range 1000 {
		if refused = put(); refused != nil {
			break
		}
		stored++
	}
	if refused == nil {
		t.Fatal("a full disk took every write")
	}
	t.Logf("refused: %v", refused)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for put() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused 30 s after the disk had room again: %v", put())
		}
		time.Sleep(100 * time.Millisecond)
	}
	stream, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs < stored+1 {
		t.Fatalf("after the restart the stream holds %v messages (%v), want the %d stored before and the new one", info, err, stored)
	}
}
