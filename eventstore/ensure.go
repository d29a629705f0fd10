package eventstore

import (
	"context"
	"errors"
	"reflect"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream makes sure the stream exists with what want sets: it creates it, or updates it
// when a field want sets (non-zero) differs, and otherwise leaves it alone. Instances starting
// together then do not all update the same stream: nats-server 2.15 races a stream's update
// against a consumer being created on it (its file store's config, seen by the race detector
// while two instances started at once).
func EnsureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	if err == nil && sameWhereSet(want, s.CachedInfo().Config) {
		return s, nil
	}
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, err
	}
	return js.CreateOrUpdateStream(ctx, want)
}

// EnsureKeyValue is EnsureStream for a KV bucket: its history, TTL, storage, replicas and
// description are compared with the bucket's stream.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, want.Bucket)
	if err == nil {
		if st, serr := js.Stream(ctx, "KV_"+want.Bucket); serr == nil {
			c := st.CachedInfo().Config
			history := int64(max(want.History, 1))
			if c.MaxMsgsPerSubject == history && c.MaxAge == want.TTL && c.Storage == want.Storage &&
				c.Replicas == max(want.Replicas, 1) && c.Description == want.Description {
				return kv, nil
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	return js.CreateOrUpdateKeyValue(ctx, want)
}

// sameWhereSet reports whether every field want sets (non-zero) equals have's.
func sameWhereSet(want, have jetstream.StreamConfig) bool {
	w, h := reflect.ValueOf(want), reflect.ValueOf(have)
	for i := range w.NumField() {
		if f := w.Field(i); !f.IsZero() && !reflect.DeepEqual(f.Interface(), h.Field(i).Interface()) {
			return false
		}
	}
	return true
}
