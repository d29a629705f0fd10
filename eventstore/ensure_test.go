package eventstore_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
)

// A stream or bucket that already has what is asked is left alone (not updated: instances
// starting together would otherwise all update it); one that differs where the caller sets a
// field is updated; a missing one is created.
func TestEnsureUpdatesOnlyWhatDiffers(t *testing.T) {
	ctx := t.Context()
	nc := natstest.Start(t).Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.ENSURE")
	if err != nil {
		t.Fatal(err)
	}
	updated := func() int {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		n, _, _ := updates.Pending()
		return n
	}
	want := jetstream.StreamConfig{Name: "ENSURE", Subjects: []string{"ensure.>"}, Description: "first", Duplicates: time.Minute, AllowDirect: true, MaxMsgSize: -1}
	s1, err := eventstore.EnsureStream(ctx, js, want)
	if err != nil {
		t.Fatal(err)
	}
	created := s1.CachedInfo().Created
	time.Sleep(10 * time.Millisecond)
	s2, err := eventstore.EnsureStream(ctx, js, want)
	if err != nil || s2.CachedInfo().Config.Description != "first" || !s2.CachedInfo().Created.Equal(created) {
		t.Fatalf("second ensure: %v %+v", err, s2.CachedInfo().Config)
	}
	if n := updated(); n != 0 {
		t.Fatalf("the same stream was updated %d time(s)", n)
	}
	want.Description = "second"
	s3, err := eventstore.EnsureStream(ctx, js, want)
	if err != nil || s3.CachedInfo().Config.Description != "second" || updated() != 1 {
		t.Fatalf("a changed field was not updated: %v", err)
	}
	kvWant := jetstream.KeyValueConfig{Bucket: "ENSUREKV", History: 1, Description: "kv"}
	if _, err := eventstore.EnsureKeyValue(ctx, js, kvWant); err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.EnsureKeyValue(ctx, js, kvWant); err != nil {
		t.Fatal(err)
	}
	kvWant.History = 3
	if _, err := eventstore.EnsureKeyValue(ctx, js, kvWant); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_ENSUREKV")
	if err != nil || st.CachedInfo().Config.MaxMsgsPerSubject != 3 {
		t.Fatalf("the bucket's history was not updated: %v", err)
	}
}
